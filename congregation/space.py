"""A full data dir: told apart from other failures, refused to a client, waited out inside.

A write that meets a full file system (ENOSPC, EDQUOT, SQLite's SQLITE_FULL) keeps nothing of
itself (its transaction rolls back, its bytes are cut off again) and raises `NoSpace`. What a
client asked for is refused with it; what the congregation writes for itself (a sink's batches,
a Jah's state) waits for space instead, so a full disk pauses the work and never stops it.
"""
from __future__ import annotations

import errno
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import structlog
import trio

from hallelujah.errors import NoSpace

log = structlog.get_logger("hallelujah.space")
T = TypeVar("T")
RETRY_EVERY = 0.5        # seconds between tries of a write that waits for space
_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_no_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _FULL
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return False


def no_space(data_dir: Path, exc: BaseException) -> NoSpace:
    """The error a full disk gives, naming the data dir and what the system said."""
    said = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return NoSpace(f"no space left on the congregation's data dir {data_dir} ({said}); "
                   f"nothing of this write was kept: free space and try again")


async def waiting_for_space(write: Callable[[], Awaitable[T]], what: str) -> T:
    """`write()`, tried again every RETRY_EVERY seconds while the disk is full (one log line)."""
    warned = False
    while True:
        try:
            result = await write()
        except NoSpace as exc:
            if not warned:
                log.warning("no_space_waiting", write=what, error=str(exc))
                warned = True
            await trio.sleep(RETRY_EVERY)
            continue
        if warned:
            log.info("no_space_resumed", write=what)
        return result
