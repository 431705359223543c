"""A real cluster on loopback: three etcd members and three congregations, each on an address
of its own in 127.0.0.0/8 (the test's; nothing leaves the host). `.ci/run` installs etcd-server."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

import hallelujah
from tests.conftest import Daemon, sandbox

NAMES = ("a", "b", "c")
START_TIMEOUT = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Etcd:
    """Three etcd members on 127.0.0.1, each with its own data dir under `root`."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            pytest.fail("etcd is not installed: `apt-get install -y etcd-server` (.ci/run does)")
        ports = {name: (free_port(), free_port()) for name in NAMES}
        initial = ",".join(f"{n}=http://127.0.0.1:{peer}" for n, (_, peer) in ports.items())
        self.urls = [f"http://127.0.0.1:{client}" for client, _ in ports.values()]
        self.procs: list[subprocess.Popen[bytes]] = []
        for name, (client, peer) in ports.items():
            log = open(root / f"etcd-{name}.log", "wb")
            self.procs.append(subprocess.Popen(
                [binary, "--name", name, "--data-dir", str(root / f"etcd-{name}"),
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--heartbeat-interval", "100", "--election-timeout", "1000", "--pre-vote=true",
                 "--log-level", "error"],
                stdout=log, stderr=subprocess.STDOUT))
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        for url in self.urls:
            while not _healthy(url):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"etcd at {url} did not become healthy in {START_TIMEOUT:g} s")
                time.sleep(0.05)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
            return b'"true"' in reply.read()
    except OSError:
        return False


class Cluster:
    """Three congregations `a`, `b`, `c` on 127.0.0.2-4, members of one etcd cluster."""

    def __init__(self, root: Path, etcd: Etcd, workers: int = 1) -> None:
        self.root, self.etcd, self.workers = root, etcd, workers
        self.members: dict[str, Daemon] = {}
        for i, name in enumerate(NAMES):
            self.start(name, f"127.0.0.{i + 2}")

    def start(self, name: str, host: str | None = None) -> Daemon:
        """Start a member; started again, it listens where it did (its clients know it there)."""
        listen = f"{host}:0" if host else self.members[name].address
        daemon = Daemon(self.root / f"data-{name}", self.workers, listen=listen, extra=[
            *sandbox(self.root), "--name", name, "--etcd", ",".join(self.etcd.urls), "--lease-ttl", "2",
            "--checkpoint-every", "0"]).start()
        self.members[name] = daemon
        return daemon

    def signal(self, name: str, sig: int) -> None:
        """Send `sig` to a member's whole process group (the congregation and its workers)."""
        proc = self.members[name].proc
        assert proc is not None
        os.killpg(proc.pid, sig)

    def db(self, *names: str) -> hallelujah.Database:
        """A client of the named members, in that order (all of them by default)."""
        return hallelujah.Database([self.members[n].address for n in names or NAMES])

    def stop(self) -> None:
        for name, daemon in self.members.items():
            if daemon.proc is not None and daemon.proc.poll() is None:
                os.killpg(daemon.proc.pid, signal.SIGCONT)   # (one a test left stopped)
            daemon.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    etcd = Etcd(tmp_path)
    try:
        members = Cluster(tmp_path, etcd)
        try:
            yield members
        finally:
            members.stop()
    finally:
        etcd.stop()
