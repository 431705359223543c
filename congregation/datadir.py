"""One congregation per data dir: an advisory lock held for the life of the process.

Two congregations on one data dir would both append to its logs and catalog (an acknowledged
batch lost, another doubled). The lock is `fcntl.flock` on `DIR/lock`, which holds the owner's
pid for the message the second one gives; the kernel releases it when the process ends, however.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from hallelujah.errors import HallelujahError

LOCK_FILE = "lock"


class DataDirInUse(HallelujahError):
    """Another process holds the data dir's lock."""

    exit_code = 2


@contextlib.contextmanager
def locked_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold `data_dir`'s lock (creating the dir) until the block ends; DataDirInUse if another
    process holds it. A process forked meanwhile would hold it too: take it after the zygote."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DataDirInUse(f"--data-dir {data_dir}: in use by another congregation (pid {holder}, "
                               f"which holds {path}); one data dir serves one congregation at a "
                               f"time") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
