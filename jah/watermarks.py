"""Event time: watermarks made at a source, combined across datastreams, and the late-row test.

A `stream` with `time` sends a watermark marker after each batch: the most event time seen so far
minus its `lateness`, so a consumer may treat everything before it as complete. Where several
datastreams meet (parallel parts of one stream, or two streams of a join) the combined watermark is
the least of theirs; a stream that has ended no longer holds it back (its end is the end of time).
Watermarks are int64 microseconds since the epoch; an integer time field is read as microseconds.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hallelujah.durations import parse_duration

END_OF_TIME = np.iinfo(np.int64).max
BEFORE_TIME = np.iinfo(np.int64).min
_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0}
LATE = "late: event time is before the watermark"


def event_micros(column: pa.Array | pa.ChunkedArray, null: int = BEFORE_TIME,
                 ints: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Event times as int64 microseconds since the epoch, and which are valid (None: all).

    Timestamps of any unit and zone (ns floored); integers are read as microseconds, or refused
    with TypeError where `ints` is false. A null reads as `null`: by default the earliest time,
    which is late everywhere and evicted first.
    """
    t = column.type
    if not (pa.types.is_timestamp(t) or (ints and pa.types.is_integer(t))):
        allowed = "a timestamp or an integer (µs)" if ints else "a timestamp"
        raise TypeError(f"an event time must be {allowed}, not {t}")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
    values = column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    per = _PER_UNIT[t.unit] if pa.types.is_timestamp(t) else 1
    values = values // 1_000 if per == 0 else (values * per if per != 1 else values)
    if valid is not None:
        values = values.copy() if not values.flags.writeable else values
        values[~valid] = null
    return values, valid


def micros(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Event times as int64 microseconds (nulls read as the earliest time, hence late)."""
    return event_micros(column)[0]


def micros_of(value: Any) -> int:
    """One timestamp scalar (or int) as microseconds."""
    return int(micros(pa.array([value]))[0])


class WatermarkMaker:
    """What a source with `time` and `lateness` says after each batch."""

    def __init__(self, analytic: dict[str, Any]) -> None:
        self.field = analytic.get("time")
        self.lateness = round(parse_duration(analytic.get("lateness", "0s"), "lateness") * 1_000_000)
        self.current = BEFORE_TIME

    def after(self, batch: pa.RecordBatch) -> int | None:
        """The new watermark if this batch moved it, else None."""
        if self.field is None or batch.num_rows == 0:
            return None
        top = pc.max(batch.column(self.field)).as_py()
        if top is None:
            return None
        mark = micros_of(top) - self.lateness
        if mark <= self.current:
            return None
        self.current = mark
        return mark


class Combined:
    """The least watermark over several datastreams; one that ended counts as the end of time."""

    def __init__(self, streams: int) -> None:
        self.marks = [BEFORE_TIME] * streams
        self.current = BEFORE_TIME

    def add(self) -> None:
        """One more datastream, joining at the current watermark (it relieves one already counted)."""
        self.marks.append(self.current)

    def update(self, stream: int, mark: int) -> int | None:
        """Record a stream's watermark (or END_OF_TIME at its end); the combined one if it advanced."""
        self.marks[stream] = max(self.marks[stream], mark)
        low = min(self.marks) if self.marks else END_OF_TIME
        if low <= self.current:
            return None
        self.current = low
        return low


def late_rows(times_us: np.ndarray, watermark: int) -> np.ndarray:
    """Rows whose event time is before the watermark already passed: they arrive too late."""
    return times_us < watermark
