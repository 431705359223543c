"""The congregation process: its refusals, its ready line, a clean stop on SIGTERM."""
from __future__ import annotations

import signal
import subprocess
import sys

import psutil
import pytest

from tests.conftest import Daemon


@pytest.mark.parametrize("args, says", [
    (["--listen", "0.0.0.0:7999"], "only loopback"),
    (["--peer", "10.1.2.3:7077"], "--peer"),
    (["--workers", "0"], "--workers 0"),
])
def test_what_it_cannot_do_safely_is_refused_before_starting(tmp_path, args, says):
    done = subprocess.run([sys.executable, "-m", "congregation", "--data-dir", str(tmp_path / "d"), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()


def test_sigterm_stops_the_daemon_its_zygote_and_its_workers(tmp_path):
    daemon = Daemon(tmp_path / "data").start()
    assert daemon.proc is not None
    family = [daemon.proc.pid] + [p.pid for p in psutil.Process(daemon.proc.pid).children(recursive=True)]
    assert len(family) == 4                     # daemon, zygote, two workers
    try:
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=20) == 0
        _, alive = psutil.wait_procs([psutil.Process(p) for p in family[1:] if psutil.pid_exists(p)],
                                     timeout=10)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        daemon.stop()
