"""Durations as a tradecraft writes them: ``"500ms"``, ``"2s"``, ``"1m"``, ``"1h"``, ``"1d"``, ``"1h30m"``.

One parser for every duration in a document (``every``, ``lateness``, ``window``, ``hop``,
``session``, ``congestion.for``), so they all read the same way and fail with the same message.
"""
from __future__ import annotations

import json
import re

from hallelujah.errors import TradecraftError

UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# "ms" before "m" so that "500ms" is not read as 500 minutes and a stray "s".
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(text: str, path: str) -> float:
    """Return the duration `text` in seconds (``"1h30m"`` → 5400.0).

    Raises TradecraftError(path, ...) naming the value when it is not a string made of
    number-and-unit parts (units ms, s, m, h, d). Zero is accepted; callers that need a
    positive duration check that themselves, since only they know why.
    """
    if not isinstance(text, str) or isinstance(text, bool):
        raise TradecraftError(path, f'{_show(text)} is not a duration (expected a string such as "2s" or "1h30m")')
    if not _WHOLE.fullmatch(text):  # strict, as the JSON Schema's pattern is: no spaces, no signs
        raise TradecraftError(path, f"{_show(text)} is not a duration (expected numbers with units ms, s, m, h "
                                    'or d, such as "500ms", "2s", "1h30m")')
    return sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Write `seconds` back in the shortest document form (5400 → ``"1h30m"``), for messages and ``describe``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _show(value: object) -> str:
    """Render a JSON value for a message, short enough for one line."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
