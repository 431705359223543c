"""End to end in a real terminal: `python -m sheets.wi --at ADDR` in tmux, driven with send-keys
and read with capture-pane: open a tradecraft (with Enter, and with the `:` command line),
follow its output, cancel it, quit."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install -y tmux)")
ROOT = Path(__file__).resolve().parents[2]


class Tmux:
    """One tmux server of our own (its own socket), so nothing else's sessions are touched."""

    def __init__(self) -> None:
        self.socket = f"wi-test-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True, timeout=10).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "wi")

    def until(self, what: str, timeout: float = 20) -> str:
        deadline, shown = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            shown = self.screen()
            if what in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"tmux never showed {what!r} in {timeout}s; last screen:\n{shown}")

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "wi", *keys)


async def started(congregation) -> None:
    db = congregation.db()
    await db.submit({"tradecraft": "tc", "analytics": [
        {"name": "x", "kind": "stream", "schema": {"id": "int64"}},
        {"name": "y", "kind": "transform", "input": "x", "where": "id % 3 == 0"}]})
    await db.publish("tc/x", pa.table({"id": pa.array(range(300), pa.int64())}))


@contextmanager
def wi_in_tmux(address: str, tmp_path: Path, *args: str) -> Iterator[Tmux]:
    """`python -m sheets.wi` in a 100x30 tmux pane; its exit code lands in tmp_path/exit, its log
    lines in tmp_path/wi.log."""
    command = f"cd {ROOT} && {sys.executable} -m sheets.wi --at {address} {' '.join(args)}; echo $? > {tmp_path / 'exit'}"
    tmux = Tmux()
    env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HALLELUJAH_WI_LOG": str(tmp_path / "wi.log")}
    subprocess.run(["tmux", "-L", tmux.socket, "new-session", "-d", "-s", "wi", "-x", "100", "-y", "30",
                    "sh", "-c", command], check=True, timeout=10, env=env)
    try:
        yield tmux
    finally:
        subprocess.run(["tmux", "-L", tmux.socket, "kill-server"], capture_output=True, timeout=10, check=False)


def quit_with_q(tmux: Tmux, tmp_path: Path) -> None:
    tmux.keys("q")
    deadline = time.monotonic() + 10
    while not (tmp_path / "exit").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "exit").exists(), f"wi did not quit on q; last screen:\n{tmux.screen()}"
    assert (tmp_path / "exit").read_text().strip() == "0"


async def test_wi_in_tmux_opens_follows_cancels_and_quits(congregation, tmp_path):
    await started(congregation)
    with wi_in_tmux(congregation.address, tmp_path) as tmux:
        shown = tmux.until(" 100 ")           # 100 of the 300 ids are kept (id % 3 == 0)
        assert "tc" in shown and "running" in shown and "300" in shown
        tmux.keys("Enter")
        shown = tmux.until("logsource")
        assert "tradecrafts > tc" in shown
        tmux.keys("G", "Enter")                 # y's output, followed while rows come
        tmux.until("(10 of 100, following)")
        assert "297" in tmux.screen()           # the last id kept so far
        await congregation.db().publish("tc/x", pa.table({"id": pa.array(range(300, 330), pa.int64())}))
        shown = tmux.until("(10 of 110, following)")
        assert "327" in shown and "297" not in shown.split("last rows")[1]
        tmux.keys("Escape")                     # back to tc, and to the list, then into tc again
        tmux.until("logsource")
        tmux.keys("Escape")
        tmux.until("stalled / error")
        tmux.keys(":tc t", "Tab")               # by the command line, the name completed
        tmux.until(":tc tc")
        tmux.keys("Enter")
        tmux.until("logsource")
        tmux.keys("c")
        tmux.until("Cancel tradecraft tc?")
        tmux.keys("y")
        tmux.until("cancelled tc")
        assert [t for t in await congregation.db().list() if t["state"] == "running"] == []
        quit_with_q(tmux, tmp_path)


async def test_wi_in_tmux_read_only_refuses_cancel_and_logs_it_off_screen(congregation, tmp_path):
    await started(congregation)
    with wi_in_tmux(congregation.address, tmp_path, "--read-only") as tmux:
        tmux.until(" 100 ")
        tmux.keys("c")
        shown = tmux.until("read-only: cancel of tc refused")
        assert "Cancel tradecraft" not in shown and "wi_refused" not in shown
        tmux.keys("y")
        quit_with_q(tmux, tmp_path)
    assert {t["name"]: t["state"] for t in await congregation.db().list()} == {"tc": "running"}
    lines = [json.loads(line) for line in (tmp_path / "wi.log").read_text().splitlines()]
    assert [(e["event"], e["tradecraft"], e["reason"]) for e in lines] == [("wi_refused", "tc", "read-only")]
