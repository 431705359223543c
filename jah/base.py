"""The Jah: one running unit of an analytic, in one process, between its in- and out-ports."""
from __future__ import annotations

import collections
import contextlib
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, ClassVar, Iterator, Protocol

import pyarrow as pa
import structlog
import trio

from hallelujah.errors import NotFound
from hallelujah.frames import schema_of
from jah import checkpoint
from jah.checkpoint import SOURCE_ROLES
from jah.envelope import CHECKPOINT, NONE, WATERMARK, Envelope
from jah.streams import InPort, OutPort
from jah.watermarks import WatermarkMaker

log = structlog.get_logger("hallelujah.jah")
BUSY_WINDOW = 2.0   # seconds over which busy fraction is measured
STARTING = 10.0     # seconds a control request waits for a starting Jah (restoring its state)


class Host(Protocol):
    """What a Jah may ask of the process that runs it."""

    name: str
    context: dict[str, Any]

    def report(self, jah: str, event: str, detail: str = "") -> None: ...


@dataclass(frozen=True)
class JahStats:
    role: str
    rows_in: int
    rows_out: int
    busy: float
    backlog: int
    blocked: float
    state: str
    state_rows: int = 0
    stream_rows: int = 0     # rows taken on the stream input ("in"): none yet means still starting
    pending: bool = False    # work is waiting: input queued, a sender short of credits, a file unread
    in_flight: int = 0       # batches sent, not yet taken by their receivers (in a channel or on a socket)
    watermark: int | None = None     # the least of its inputs' (µs of event time), once one came
    datastreams: tuple[dict[str, Any], ...] = ()    # each datastream end's figures (hallelujah.datastream)
    position: int | None = None      # a source's: the last position it sent


class Jah:
    """Base of every Jah kind. A subclass sets `role` and implements `run`.

    The spec (from the Hallelu) names the ports and how many datastreams each has; the Jah starts
    once every stream is attached, so no batch is sent before its receiver exists.
    """

    role: ClassVar[str] = ""
    registry: ClassVar[dict[str, type["Jah"]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.role:
            Jah.registry[cls.role] = cls

    def __init__(self, jah_id: str, spec: dict[str, Any], host: Host) -> None:
        self.id = jah_id
        self.spec = spec
        self.host = host
        self.schemas = {k: schema_of(bytes.fromhex(v)) for k, v in spec.get("schemas", {}).items()}
        self.inputs = {p: InPort(n) for p, n in spec.get("inputs", {}).items()}
        self.outputs = {p: OutPort(n) for p, n in spec.get("outputs", {}).items()}
        self.wired = trio.Event()
        self.running = trio.Event()      # it has its state and its wiring: a source may take barriers
        self.task: trio.lowlevel.Task | None = None
        self.state = "wiring"
        self._busy = 0.0
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._watermarks = WatermarkMaker(spec.get("analytic", {}) if self.role in SOURCE_ROLES else {})
        self.emitting = trio.Lock()      # a source's batch and the barrier after it go out whole
        self.last_read = int(spec.get("resume_from", 0))    # a source's position, for its barriers
        self.checkpointed = -1           # the last checkpoint barrier this Jah passed on
        self._barriers: list[tuple[int, int]] = []     # a source's barriers due after a position
        self.ended = False               # its outputs are ending (after `run`)
        self.check_wired()

    def schema(self, name: str = "out") -> pa.Schema:
        return self.schemas[name]

    def check_wired(self) -> None:
        if all(p.attached >= p.streams for p in self.inputs.values()) and all(
                len(p.senders) >= p.streams for p in self.outputs.values()):
            self.wired.set()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count the enclosed time as work, for the busy fraction that drives scaling."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._busy += time.perf_counter() - start

    async def serve(self) -> None:
        """Wait for the wiring, run, then end every output (end_of_stream flows through)."""
        self.task = trio.lowlevel.current_task()
        if self.spec.get("restore"):
            self.restore(await trio.to_thread.run_sync(checkpoint.read_state, self.spec["restore"]))
        await self.wired.wait()
        self.state = "running"
        self.running.set()
        start = time.perf_counter()
        await self.run()
        async with self.emitting:        # a source that ran out before a barrier's position
            for barrier in self._barriers:
                await self._put_barrier(*barrier)
            self._barriers, self.ended = [], True
        for port in list(self.outputs.values()):
            await port.end()
        self.state = "finished"
        blocked = sum(getattr(s, "blocked", 0.0) for p in self.outputs.values() for s in p.senders)
        log.info("jah_finished", jah=self.id, seconds=round(time.perf_counter() - start, 4),
                 busy=round(self._busy, 4), blocked_on_credits=round(blocked, 4),
                 arrow_allocated=pa.total_allocated_bytes(), pool=pa.default_memory_pool().backend_name)

    async def run(self) -> None:
        raise NotImplementedError

    async def batches(self, port: str = "in") -> AsyncIterator[Envelope]:
        """The data envelopes arriving at `port`; in-band markers go straight on to every output,
        in their place in the stream (what a stateless Jah does with them)."""
        async for env in self.inputs[port]:
            if env.marker != NONE:
                for out in list(self.outputs):
                    await self.emit(out, env)
                continue
            yield env

    async def emit(self, port: str, env: Any) -> None:
        if env.marker == CHECKPOINT and env.value > self.checkpointed:
            # its state holds what came before the barrier and nothing after: written before
            # the barrier goes on, so a checkpoint is complete only once downstream has it too
            self.checkpointed = env.value
            await checkpoint.take(self, env.value, env.origin if self.role in SOURCE_ROLES else None)
        if port in self.outputs:
            await self.outputs[port].send(env)

    async def emit_read(self, env: Envelope, rejected: Envelope | None = None) -> None:
        """A source's batch, then the watermark it moves (when the stream has `time`), and its
        rejected rows: together, so that no checkpoint barrier comes between them."""
        async with self.emitting:
            while self._barriers and env.origin > self._barriers[0][1]:
                await self._put_barrier(*self._barriers.pop(0))
            await self.emit("out", env)
            mark = self._watermarks.after(env.batch)
            if mark is not None:
                await self.emit("out", Envelope(None, marker=WATERMARK, value=mark))
            if rejected is not None:
                await self.emit("rejected", rejected)
            self.last_read = env.origin

    async def inject_checkpoint(self, checkpoint_id: int, after: int | None) -> bool:
        """A source puts barrier `checkpoint_id` on every output after position `after`: the
        parts of one file (each reads every n-th batch) all cut at the same position, so what a
        checkpoint holds of the file is a prefix of it, whatever part was ahead. A part already
        past it cuts where it is (the coordinator then sees the parts disagree, and does not keep
        that checkpoint). None: after the batch in hand. False: it has read all its input and
        its outputs are ending (the checkpoint holds all it sent)."""
        async with self.emitting:
            if self.ended:
                return False
            if after is None or self.last_read >= after:
                await self._put_barrier(checkpoint_id, self.last_read if after is None else after)
            else:
                self._barriers.append((checkpoint_id, after))
            return True

    async def _put_barrier(self, checkpoint_id: int, after: int) -> None:
        barrier = Envelope(None, max(after, self.last_read), self.spec.get("source_id", ""), CHECKPOINT,
                           checkpoint_id)
        for port in list(self.outputs):
            await self.emit(port, barrier)

    def snapshot(self) -> checkpoint.State | None:
        """A stateful Jah's state (written at each checkpoint); None: it keeps none."""
        return None

    def restore(self, state: checkpoint.State) -> None:
        """Take the state of the checkpoint it restarts from (before it runs)."""
        raise NotFound(f"{self.id} ({self.role}) keeps no state to restore")

    def open_output(self, port: str) -> OutPort:
        """A new output port while running (a PREJOIN's route to a JOIN made by a split)."""
        raise NotFound(f"{self.id} ({self.role}) has no output {port!r}")

    async def attached(self, port: str, sender: Any) -> None:
        """A datastream was added to output `port` (an INGEST sends it the current version)."""

    async def control(self, args: dict[str, Any]) -> dict[str, Any]:
        """A change asked of a running Jah by its Hallelu (a PREJOIN's re-routing); a source
        is asked for checkpoint barriers."""
        if self.role in SOURCE_ROLES and (isinstance(args.get("checkpoint"), int) or args.get("position")):
            with trio.move_on_after(STARTING):    # a barrier asked for while it starts goes out once it runs
                await self.running.wait()
            if self.state not in ("running", "finished"):
                raise NotFound(f"{self.id} is {self.state}: no checkpoint barrier from it")
            put = self.state == "running" and (
                args.get("checkpoint") is None or await self.inject_checkpoint(args["checkpoint"], args.get("after")))
            # ended: the position it finished at (a restore from the checkpoint reads nothing more)
            return {"position": self.last_read, "ended": not put or self.ended}
        raise NotFound(f"{self.id} ({self.role}) takes no control requests")

    def open_state(self) -> pa.Table:
        """What a stateful Jah holds open (for `query`); a stateless one holds nothing."""
        raise NotFound(f"{self.id} ({self.role}) keeps no state to query")

    def state_rows(self) -> int:
        """Rows of state held (0 for a stateless Jah): what `describe` shows, what credits do not bound."""
        return 0

    def awaiting(self) -> str:
        """Where this Jah's tasks are suspended (for the stall dump)."""
        from jah.debug import suspended_in
        return suspended_in(self.task) if self.task is not None else "not started"

    def busy_fraction(self) -> float:
        now = time.perf_counter()
        self._samples.append((now, self._busy))
        while len(self._samples) > 2 and now - self._samples[1][0] >= BUSY_WINDOW:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        return min(1.0, (self._busy - b0) / (now - t0)) if now > t0 else 0.0

    def statistics(self) -> JahStats:
        blocked = sum(getattr(s, "blocked", 0.0) for p in self.outputs.values() for s in p.senders)
        return JahStats(
            role=self.role,
            rows_in=sum(p.stats.rows for p in self.inputs.values()),
            rows_out=sum(p.stats.rows for p in self.outputs.values()),
            busy=round(self.busy_fraction(), 3),
            backlog=sum(p.backlog() for p in self.inputs.values()),
            blocked=round(blocked, 3),
            state=self.state,
            state_rows=self.state_rows(),
            stream_rows=self.inputs["in"].stats.rows if "in" in self.inputs else 0,
            pending=self.pending(),
            in_flight=sum(s.in_flight for p in self.outputs.values() for s in p.senders),
            watermark=min((p.watermark for p in self.inputs.values() if p.watermark is not None), default=None),
            position=self.last_read if self.role in SOURCE_ROLES else None,
            datastreams=tuple([*({"port": f"out {name}", **s.statistics()} for name, p in self.outputs.items()
                                 for s in p.senders),
                               *({"port": f"in {name}", **lane.statistics()} for name, p in self.inputs.items()
                                 for lane in p.lanes)]),
        )

    def pending(self) -> bool:
        """Whether this Jah has work waiting (what a stall is: work waiting, no row moving)."""
        return self.state == "running" and (
            any(p.backlog() for p in self.inputs.values())
            or any(getattr(s, "waiting", False) for p in self.outputs.values() for s in p.senders)
            or self.has_more_input())

    def has_more_input(self) -> bool:
        """A source with more to read says so (a bounded file not yet read to its end)."""
        return False

