"""CPU time and resident memory of a process, read from /proc (Linux), for describe's workers
and the congregation itself (the Window Interface's congregations screen shows them). Not
called yet: describe.py would add `**usage(h.pid)` to each worker and `"usage": {"pid":
os.getpid(), **usage(os.getpid())}` to its answer."""
from __future__ import annotations

import os

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def usage(pid: int) -> dict[str, float | int]:
    """{"cpu_seconds": user + system, "rss_bytes": resident} of `pid`; {} when it cannot be read
    (gone, not Linux): unknown, never a made-up 0."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read(4096)
        with open(f"/proc/{int(pid)}/statm", "rb") as f:
            statm = f.read(256)
        # the command name (field 2) may hold spaces and parentheses: fields follow its last ")"
        fields = stat[stat.rindex(b")") + 2:].split()
        return {"cpu_seconds": round((int(fields[11]) + int(fields[12])) / TICKS, 2),
                "rss_bytes": int(statm.split()[1]) * PAGE}
    except (OSError, ValueError, IndexError):
        return {}
