"""Fixtures that start real congregation daemons on loopback ports with temp data dirs."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import hallelujah

READY = re.compile(r"ready at (\S+)")


class Daemon:
    """A `congregation` process: start, kill, restart on the same data dir."""

    def __init__(self, data_dir: Path, workers: int = 2, extra: list[str] | None = None,
                 listen: str = "127.0.0.1:0") -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.extra = extra or []
        self.listen = listen
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""

    def start(self) -> "Daemon":
        env = {**os.environ, "HALLELUJAH_LOG_LEVEL": os.environ.get("HALLELUJAH_LOG_LEVEL", "warning")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "congregation", "--data-dir", str(self.data_dir),
             "--listen", self.listen, "--workers", str(self.workers), *self.extra],
            stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"congregation exited with {self.proc.wait()}")
            m = READY.search(line)
            if m:
                self.address = m.group(1)
                return self
        raise RuntimeError("congregation did not get ready")

    def kill(self) -> None:
        """SIGKILL the daemon and every process of its session (zygote, workers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.close()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            self.close()
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)   # leftovers, if any
        except ProcessLookupError:
            pass
        self.close()
        return code

    def close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def db(self) -> hallelujah.Database:
        return hallelujah.Database([self.address])


def sandbox(tmp_path: Path) -> list[str]:
    """The test's own dir is where its documents' sources and UDF modules lie (the data dir in it stays unreadable)."""
    return ["--source-root", str(tmp_path), "--udf-dir", str(tmp_path)]


@pytest.fixture
def congregation(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path / "data", extra=sandbox(tmp_path)).start()
    yield daemon
    daemon.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[type]:
    started: list[Daemon] = []

    def make(workers: int = 2, data_dir: Path | None = None) -> Daemon:
        d = Daemon(data_dir or tmp_path / "data", workers, extra=sandbox(tmp_path)).start()
        started.append(d)
        return d
    yield make  # type: ignore[misc]
    for d in started:
        d.stop()
