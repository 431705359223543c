"""congregation/usage.py reads a process's CPU time and memory as the kernel counts them:
checked against os.times() and /proc/self/status of this very process."""
from __future__ import annotations

import os
import subprocess
import sys

from congregation.usage import usage


def test_cpu_and_memory_of_this_process():
    before = os.times()
    x = 0
    for i in range(2_000_000):                  # some CPU time to see
        x += i
    got = usage(os.getpid())
    after = os.times()
    assert before.user + before.system - 0.02 <= got["cpu_seconds"] <= after.user + after.system + 0.02
    with open("/proc/self/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert abs(got["rss_bytes"] - rss_kib * 1024) <= 0.1 * rss_kib * 1024


def test_a_process_that_is_gone_is_unknown_not_zero():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert usage(child.pid) == {}
    assert usage(-1) == {}
