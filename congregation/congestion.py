"""Congestion: a Jah whose busy fraction or input backlog stays above its tradecraft's threshold.

Every Jah measures its busy fraction over a sliding window and its input backlog; its worker
reports them twice a second. A JOIN above `congestion.busy` (or with a full input) for
`congestion.for` is congested: the episode is recorded once, with the figures that caused it,
and ends when the Jah drops back below; a congested JOIN splits (`congregation/scaling.py`).
Idle is the other way round: under a quarter of `busy`, nothing waiting, for twice `for` (at least
STARTING_GRACE while no stream rows have come: a JOIN just created by a split may still be taking
over); the two JOINs of one split that are both idle merge back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jah.streams import CREDITS

WATCHED_ROLES = ("join", "aggregate")
FULL_BACKLOG = CREDITS        # batches waiting at the inputs that count as a full input
IDLE = 0.25                   # an idle JOIN is busy at most this fraction of the congestion threshold
STARTING_GRACE = 5.0          # seconds a JOIN without stream rows yet is given before it counts as idle


@dataclass
class CongestionWatch:
    """Per Jah: since when it has been over its threshold, and whether that was reported."""

    since: dict[str, float] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    def observe(self, jah: str, stats: dict[str, Any], busy: float, for_seconds: float,
                now: float) -> dict[str, Any] | None:
        """The congestion record when `jah` has just stayed over its threshold long enough."""
        return self.episode(jah, stats, stats.get("busy", 0.0) >= busy or stats.get("backlog", 0) >= FULL_BACKLOG,
                            busy, for_seconds, now)

    def idle(self, jah: str, stats: dict[str, Any], busy: float, for_seconds: float,
             now: float) -> dict[str, Any] | None:
        """The idle record when `jah` has stayed under a quarter of the busy threshold, with nothing
        waiting, for twice the congestion time: the rule by which a split pair merges back. A JOIN
        that has taken no stream rows yet may be starting (a split's handover under load): it
        counts as idle only after STARTING_GRACE."""
        calm = stats.get("busy", 0.0) <= busy * IDLE and not stats.get("backlog", 0)
        starting = stats.get("stream_rows", 1) == 0
        return self.episode(jah, stats, calm, busy * IDLE,
                            max(2 * for_seconds, STARTING_GRACE) if starting else 2 * for_seconds, now)

    def episode(self, jah: str, stats: dict[str, Any], over: bool, busy: float, for_seconds: float,
                now: float) -> dict[str, Any] | None:
        if not over:
            self.since.pop(jah, None)
            self.reported.discard(jah)
            return None
        start = self.since.setdefault(jah, now)
        if now - start < for_seconds or jah in self.reported:
            return None
        self.reported.add(jah)
        return {"jah": jah, "busy": stats.get("busy", 0.0), "backlog": stats.get("backlog", 0),
                "threshold_busy": busy, "for_seconds": for_seconds}
