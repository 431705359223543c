"""Worker processes: forked from a warm zygote, watched, replaced, and chosen by load.

The zygote is forked before any trio loop runs, after every import and Numba kernel is loaded;
it forks each worker on request, so a worker starts in milliseconds (LIMITS.md fact 5) and a
crashed one is replaced just as fast.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from congregation.logs import Logs, Notices
from congregation.rpc import Peer
from hallelujah.errors import Unavailable, collapsed
from hallelujah.frames import connect
from jah.runtime import Runtime

log = structlog.get_logger("hallelujah.workers")
STATS_EVERY = 0.5


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """No garbage collection while loading modules, then the loaded heap frozen.

    Importing NumPy, pyarrow, Numba and the kernels makes hundreds of thousands of objects and
    no garbage: collecting meanwhile costs ~0.15 s of the start. Frozen, those objects are never
    scanned again, and forked workers keep sharing their pages instead of copying them when a
    collection touches them.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class Zygote:
    """A pre-warmed process that forks workers. Create it before trio.run().

    `secret`, made before the fork, is inherited by every worker, which proves with it in its
    `hello` that the congregation forked it (run_dir, where the sockets live, is the user's alone).
    """

    def __init__(self, daemon_address: str, run_dir: str, prepare: Callable[[], None] = lambda: None) -> None:
        self.daemon_address = daemon_address
        self.run_dir = run_dir
        self.prepare = prepare
        self.secret = secrets.token_bytes(32)
        cmd_r, cmd_w = os.pipe()
        pid_r, pid_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(cmd_w)
            os.close(pid_r)
            self._serve(cmd_r, pid_w)
        os.close(cmd_r)
        os.close(pid_w)
        self._cmd = os.fdopen(cmd_w, "w", buffering=1)
        self._pids = os.fdopen(pid_r, "r")
        self._one_at_a_time = trio.CapacityLimiter(1)   # one request line, one pid line

    def _serve(self, cmd_r: int, pid_w: int) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # workers are reaped automatically
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)     # the congregation asks each worker for its dump
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            with settled_heap():
                self.prepare()       # imports and kernels, once, for every worker it forks
        except BaseException:        # noqa: BLE001 - say why, then let spawn() see the pipe close
            log.exception("zygote_failed")
            os._exit(1)
        commands = os.fdopen(cmd_r, "r")
        for line in commands:
            index, data_dir = json.loads(line)
            pid = os.fork()
            if pid == 0:
                commands.close()
                os.close(pid_w)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                code = 0
                try:
                    with collapsed():
                        trio.run(serve_worker, index, self.daemon_address, self.run_dir, self.secret,
                                 Path(data_dir))
                except Unavailable:     # its congregation has gone (it stopped): nothing to serve
                    pass
                except BaseException:   # noqa: BLE001 - the worker's last word, then exit
                    code = 1
                    log.exception("worker_failed", worker=index)
                finally:
                    sys.stdout.flush()
                    os._exit(code)
            os.write(pid_w, f"{pid}\n".encode())
        os._exit(0)

    async def spawn(self, index: int, data_dir: Path) -> int:
        """Fork worker `index`, which opens the logs in `data_dir`; returns its pid (it connects
        back to the congregation)."""
        def ask() -> int:
            try:
                self._cmd.write(json.dumps([index, str(data_dir)]) + "\n")
                line = self._pids.readline()
            except BrokenPipeError:
                line = ""
            if not line:
                raise Unavailable("the worker zygote has exited (see the log above)")
            return int(line)
        return await trio.to_thread.run_sync(ask, limiter=self._one_at_a_time)

    def close(self) -> None:
        """Stop the zygote, warm or still warming (its workers are on their own)."""
        try:
            self._cmd.close()
            self._pids.close()
        except OSError:
            pass
        try:
            os.kill(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass
        shutil.rmtree(self.run_dir, ignore_errors=True)


def prepare_zygote(warm_kernels: bool = True) -> None:
    """Import every Jah kind and load the kernels, so forked workers start warm.

    Runs in the zygote, while the congregation starts up beside it: the ~0.5 s of Numba kernel
    loading (skipped by `run` for documents that need no kernel) overlaps the congregation's own.
    """
    import jah.aggregate  # noqa: F401
    import jah.director  # noqa: F401
    import jah.exchange  # noqa: F401
    import jah.ingest  # noqa: F401
    import jah.join  # noqa: F401
    import jah.logsource  # noqa: F401
    import jah.manager  # noqa: F401
    import jah.merge  # noqa: F401
    import jah.postjoin  # noqa: F401
    import jah.prejoin  # noqa: F401
    import jah.sink  # noqa: F401
    import jah.source  # noqa: F401
    import jah.stream_join  # noqa: F401
    import jah.transform  # noqa: F401
    if warm_kernels:
        from jah.kernels.warm import warm_up
        warm_up()


def make_zygote(warm_kernels: bool = True) -> Zygote:
    """Fork the zygote, which warms itself (call before any trio loop).

    Fork it as early as the process can: whatever the zygote alone needs (Numba, the Jah kinds,
    the kernels) then loads while this process imports and opens the rest.
    """
    run_dir = tempfile.mkdtemp(prefix="hj-")
    os.chmod(run_dir, 0o700)      # (mkdtemp's mode already) its sockets are this user's alone
    return Zygote(os.path.join(run_dir, "congregation.sock"), run_dir,
                  functools.partial(prepare_zygote, warm_kernels))


async def serve_worker(index: int, daemon_address: str, run_dir: str, secret: bytes, data_dir: Path) -> None:
    """A worker's life: host Jahs for the congregation until its connection closes."""
    conn = await connect(daemon_address)
    events_send, events_receive = trio.open_memory_channel[tuple[str, str, str]](1000)

    def report(jah: str, event: str, detail: str = "") -> None:
        events_send.send_nowait((jah, event, detail))

    written = Notices()
    logs = Logs(data_dir, tell=written.add)
    runtime = Runtime(f"worker-{index}", os.path.join(run_dir, f"w{index}-{os.getpid()}.sock"), report,
                      {"logs": logs})
    peer = Peer(conn, runtime.handlers(), notices={"logChanged": lambda f: logs.changed(f["log"])})
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.serve)
        await conn.send("hello", {"worker": index, "pid": os.getpid(), "address": runtime.address,
                                  "secret": secret})

        async def forward_events() -> None:
            async for jah, event, detail in events_receive:
                await conn.send("jahEvent", {"jah": jah, "event": event, "detail": detail})

        async def send_stats() -> None:
            while True:
                await trio.sleep(STATS_EVERY)
                await conn.send("stats", {"jahs": json.dumps(runtime.statistics())})

        nursery.start_soon(forward_events)
        nursery.start_soon(send_stats)
        nursery.start_soon(written.forward, lambda name: conn.send("logChanged", {"log": name}))
        try:
            await peer.serve()
        finally:
            nursery.cancel_scope.cancel()
            logs.close()


@dataclass
class WorkerHost:
    """The congregation's handle on one worker process."""

    index: int
    pid: int
    address: str
    peer: Peer
    started: float = field(default_factory=time.time)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    placed: int = 0

    async def request(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        return await self.peer.request(kind, fields)

    async def tell(self, kind: str, fields: dict[str, Any]) -> None:
        """A notice, which needs no answer (a worker that has gone hears nothing)."""
        with contextlib.suppress(Unavailable):
            await self.peer.conn.send(kind, fields)

    def load(self) -> float:
        return self.placed + sum(s.get("busy", 0.0) for s in self.stats.values())
