"""The shared benchmark workloads (../shared/bench) as tradecrafts, and how to check their results."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc


def enrich_document(data: Path) -> dict[str, Any]:
    return {"tradecraft": "enrich", "analytics": [
        {"name": "gps_events", "kind": "stream", "source": {"path": str(data / "gps_events.parquet")}},
        {"name": "tiled", "kind": "transform", "input": "gps_events",
         "derive": {"tile": "cast(floor(lat + 90) * 360 + floor(lon + 180), 'int64')"},
         "select": ["ts", "device_id", "tile"]},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(data / "tiles.parquet")}},
        {"name": "enriched", "kind": "join", "stream": "tiled", "dataset": "tiles",
         "on": {"tile": "tile"}, "fields": ["country", "region"], "how": "inner"}]}


OUTPUT_FORMAT = "arrow"
"""What `hallelujah run` writes in the bench: Arrow IPC, the batches as they are (DuckDB's side
only counts and sums; Parquet encoding would add ~0.3 s of one core per 2 M rows)."""


def _output(out: Path, name: str) -> pa.Table:
    with pa.ipc.open_file(out / f"{name}.{OUTPUT_FORMAT}") as f:
        return f.read_all()


def enrich_result(out: Path) -> dict[str, int]:
    """rows and the sum of common.enrich_chk over the joined rows, vectorized."""
    t = _output(out, "enriched")
    country = pc.cast(pc.utf8_slice_codeunits(t["country"], 1), pa.int64())
    region = pc.cast(pc.utf8_slice_codeunits(t["region"], 1), pa.int64())
    weight = pc.multiply(pc.add(pc.multiply(t["device_id"], 31), t["tile"]), pc.add(country, 1))
    chk = pc.add(pc.add(_mod(t["ts"], 1_000_003), weight), region)
    return {"rows": t.num_rows, "chk": int(pc.sum(chk).as_py())}


def clicks_document(data: Path) -> dict[str, Any]:
    return {"tradecraft": "clicks", "analytics": [
        {"name": "clicks", "kind": "stream", "source": {"path": str(data / "clicks.parquet")}, "time": "ts",
         "schema": {"ts": "timestamp[s]", "user": "string", "action": "string"}},
        {"name": "hourly", "kind": "aggregate", "input": "clicks", "time": "ts", "window": "1h",
         "measures": {"users": "count_distinct(user)", "clicks": "count_if(action == 'click')",
                      "impressions": "count_if(action == 'impression')"}}]}


def clicks_result(out: Path) -> dict[str, Any]:
    """[[epoch hour, unique users, clicks, impressions], …] by hour."""
    t = _output(out, "hourly").sort_by("window_start")
    hours = pc.divide(t["window_start"].cast(pa.int64()), 3_600_000_000)
    return {"rows": [list(r) for r in zip(hours.to_pylist(), t["users"].to_pylist(), t["clicks"].to_pylist(),
                                          t["impressions"].to_pylist())]}


def reqresp_document(data: Path) -> dict[str, Any]:
    schema = {"ts": "timestamp[us]", "src": "int32", "dst": "int32", "msg_id": "int64"}
    return {"tradecraft": "reqresp", "analytics": [
        {"name": "requests", "kind": "stream", "source": {"path": str(data / "requests.parquet")}, "time": "ts",
         "schema": schema},
        {"name": "responses", "kind": "stream", "source": {"path": str(data / "responses.parquet")}, "time": "ts",
         "schema": schema},
        {"name": "trips", "kind": "join", "stream": "requests", "with": "responses",
         "on": {"src": "src", "dst": "dst", "msg_id": "msg_id"}, "time": {"stream": "ts", "with": "ts"},
         "window": "1s", "how": "inner"}]}


def reqresp_result(out: Path) -> dict[str, int]:
    """pairs and the sum of common.reqresp_chk over them, vectorized."""
    t = _output(out, "trips")
    latency = pc.subtract(t["responses.ts"].cast(pa.int64()), t["ts"].cast(pa.int64()))
    src, dst = t["src"].cast(pa.int64()), t["dst"].cast(pa.int64())
    chk = pc.add(pc.add(pc.multiply(_mod(t["msg_id"], 1_000_003), 7), latency),
                 pc.add(pc.multiply(src, 1000), dst))
    return {"rows": t.num_rows, "chk": int(pc.sum(chk).as_py())}


def _mod(a: Any, m: int) -> Any:
    return pc.subtract(a, pc.multiply(pc.divide(a, m), m))   # ints: divide truncates; ts >= 0


WORKLOADS: dict[str, tuple[Callable[[Path], dict[str, Any]], Callable[[Path], dict[str, Any]]]] = {
    "enrich": (enrich_document, enrich_result),
    "clicks": (clicks_document, clicks_result),
    "reqresp": (reqresp_document, reqresp_result),
}
OUTPUTS = {"enrich": "enriched", "clicks": "hourly", "reqresp": "trips"}   # whose rate is the steady state
EARLY_OUTPUT = {"enrich", "reqresp"}     # outputs that start with the first events (not at a window's end)
STREAMS = {"enrich": ("gps_events",), "clicks": ("clicks",), "reqresp": ("requests", "responses")}


def events_of(workload: str, meta: dict[str, Any]) -> int:
    """Stream events a run consumes (a dataset's rows do not count), as common.stream_events."""
    return sum(meta["rows"][s] for s in STREAMS[workload])
