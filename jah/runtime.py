"""Runs Jahs in one worker process (the log Jahs too: LOGSOURCE and SINK open the logs themselves).

Handles `jahReq` (create/stop a Jah) and `streamReq` (expect an incoming datastream, or connect
an outgoing one), and accepts datastream connections on its own Unix socket.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import structlog
import trio

from hallelujah.datastream import open_receiver, open_sender
from hallelujah.errors import DatastreamError, HallelujahError, NotFound, Unavailable, first_error
from hallelujah.frames import Connection, connect, schema_of
from jah.base import Jah
from jah.debug import dump
from jah.streams import CREDITS, InPort, LocalSender, OutPort, Sender, SocketSender, receive_stream

log = structlog.get_logger("hallelujah.runtime")
Reporter = Callable[[str, str, str], None]


class Runtime:
    def __init__(self, name: str, address: str, reporter: Reporter,
                 context: dict[str, Any] | None = None) -> None:
        self.name = name
        self.address = address
        self.context = context or {}
        self._reporter = reporter
        self.jahs: dict[str, Jah] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._done: dict[str, trio.Event] = {}
        self._stream_scopes: dict[str, list[trio.CancelScope]] = {}
        self._expected: dict[str, tuple[Jah, InPort, bytes]] = {}
        self._senders: dict[str, tuple[OutPort, Sender]] = {}   # datastream id -> its sending end here
        self._nursery: trio.Nursery | None = None

    def report(self, jah: str, event: str, detail: str = "") -> None:
        self._reporter(jah, event, detail)

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for datastreams and host Jahs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listeners = [trio.SocketListener(await _unix_listener(self.address))]
            await nursery.start(trio.serve_listeners, self._on_incoming, listeners)
            task_status.started()

    async def _on_incoming(self, stream: trio.SocketStream) -> None:
        conn = Connection(stream, "datastream")
        try:
            kind, fields, _ = await conn.receive()
            expected = self._expected.pop(fields.get("stream", ""), None) if kind == "streamOpen" else None
            if expected is None:
                log.warning("unknown_datastream", kind=kind, stream=fields.get("stream"))
                return
            jah, port, schema = expected
            lane = port.attach()
            jah.check_wired()
            with self._owned_by(jah.id):
                await receive_stream(open_receiver(conn, fields["stream"], schema_of(schema), window=CREDITS), lane)
        except DatastreamError as exc:    # a message lost or repeated: its Jah cannot go on exactly
            log.warning("datastream_broken", error=str(exc))
            self._fail(jah, str(exc))
        except (EOFError, HallelujahError) as exc:
            log.debug("datastream_closed", reason=str(exc))     # its sender stopped or was lost (logged there)
        finally:
            await conn.aclose()

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """The requests a congregation sends to the Jahs of this process."""
        return {"jahReq": self.on_jah_req, "streamReq": self.on_stream_req, "queryReq": self.on_query_req,
                "controlReq": self.on_control_req}

    async def on_control_req(self, fields: dict[str, Any]) -> dict[str, Any]:
        if not fields["jah"] and json.loads(fields["args"] or "{}").get("dump"):
            return {"result": json.dumps({"dump": self.dump()})}
        jah = self.jahs.get(fields["jah"])
        if jah is None:
            raise NotFound(f"no Jah {fields['jah']!r} here")
        return {"result": json.dumps(await jah.control(json.loads(fields["args"])))}

    async def on_query_req(self, fields: dict[str, Any]) -> dict[str, Any]:
        jah = self.jahs.get(fields["jah"])
        if jah is None:
            raise NotFound(f"no Jah {fields['jah']!r} here")
        sink = pa.BufferOutputStream()
        table = jah.open_state()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return {"rows": sink.getvalue().to_pybytes()}

    async def on_jah_req(self, fields: dict[str, Any]) -> dict[str, Any]:
        jah_id = fields["jah"]
        if fields.get("stop"):
            # Wait for the Jah to be gone: a replacement must not start before its last write.
            for stream_scope in self._stream_scopes.pop(jah_id, []):
                stream_scope.cancel()
            scope = self._scopes.pop(jah_id, None)
            if scope is not None:
                scope.cancel()
                await self._done[jah_id].wait()
            self.jahs.pop(jah_id, None)
            self._done.pop(jah_id, None)
            for stream in [k for k in self._senders if k.startswith(f"{jah_id}:")]:
                del self._senders[stream]
            return {"ok": None}
        spec = json.loads(fields["spec"])
        cls = Jah.registry.get(spec["role"])
        if cls is None:
            raise NotFound(f"no Jah kind {spec['role']!r}")
        jah = cls(jah_id, spec, self)
        self.jahs[jah_id] = jah
        scope = trio.CancelScope()
        self._scopes[jah_id] = scope
        self._done[jah_id] = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._run_jah, jah, scope)
        return {"ok": None}

    def _fail(self, jah: Jah, why: str) -> None:
        """Stop a Jah that cannot go on, and say why."""
        jah.state = "failed"
        self.report(jah.id, "failed", why)
        scope = self._scopes.get(jah.id)
        if scope is not None:
            scope.cancel()

    async def _run_jah(self, jah: Jah, scope: trio.CancelScope) -> None:
        try:
            with scope:
                await self._serve_jah(jah)
        finally:
            self._stream_scopes.pop(jah.id, None)    # its streams have ended or been cancelled
            self._done[jah.id].set()

    async def _serve_jah(self, jah: Jah) -> None:
        try:
            with _what_went_wrong():
                await jah.serve()
        except Unavailable as exc:
            # A datastream's other end went away with its process: the congregation replaces
            # that worker and redeploys, so this is not the tradecraft's failure.
            jah.state = "lost"
            self.report(jah.id, "lost", str(exc))
            return
        except HallelujahError as exc:
            jah.state = "failed"
            self.report(jah.id, "failed", str(exc))
            return
        except Exception as exc:  # a bug in a Jah: log it with its traceback, keep the process
            jah.state = "failed"
            log.exception("jah_crashed", jah=jah.id)
            self.report(jah.id, "failed", f"{type(exc).__name__}: {exc}")
            return
        self.report(jah.id, "finished", json.dumps(asdict(jah.statistics())))   # its last figures

    async def on_stream_req(self, fields: dict[str, Any]) -> dict[str, Any]:
        jah = self.jahs.get(fields["jah"])
        if jah is None:
            raise NotFound(f"no Jah {fields['jah']!r} in {self.name}")
        if not fields["act"]:
            port = jah.inputs[fields["port"]]
            self._expected[fields["stream"]] = (jah, port, fields["schema"])
            return {"ok": None}
        if fields.get("detach"):
            wired = self._senders.pop(fields["stream"], None)
            if wired is not None:
                await wired[0].detach(wired[1])
            return {"ok": None}
        out = jah.outputs.get(fields["port"]) or jah.open_output(fields["port"])
        if fields["address"] == "local":
            receiver, port, _ = self._expected.pop(fields["stream"])
            sender: LocalSender | SocketSender = LocalSender(port)
            out.senders.append(sender)
            receiver.check_wired()
        else:
            conn = await connect(fields["address"])
            await conn.send("streamOpen", {"stream": fields["stream"], "schema": fields["schema"]})
            end = open_sender(conn, fields["stream"])
            await end.first_grant()
            sender = SocketSender(end)
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_credits, jah.id, sender)
            out.senders.append(sender)
        self._senders[fields["stream"]] = (out, sender)
        jah.check_wired()
        await jah.attached(fields["port"], sender)
        return {"ok": None}

    async def _serve_credits(self, jah: str, sender: SocketSender) -> None:
        with self._owned_by(jah):
            try:
                await sender.serve_credits()
            finally:
                await sender.aclose()

    def _owned_by(self, jah: str) -> trio.CancelScope:
        """A cancel scope for a datastream task, cancelled when its Jah is stopped."""
        scope = trio.CancelScope()
        self._stream_scopes.setdefault(jah, []).append(scope)
        return scope

    def dump(self, extra: list[str] | None = None) -> str:
        """This process's tasks and Jahs, for a person looking at a stall."""
        return dump(self.name, list(self.jahs.values()), extra or [])

    def statistics(self) -> dict[str, dict[str, Any]]:
        return {jid: asdict(j.statistics()) for jid, j in self.jahs.items()}


async def _unix_listener(path: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(64)
    return sock


@contextlib.contextmanager
def _what_went_wrong() -> Iterator[None]:
    """A Jah's tasks (a STREAM_JOIN runs one per input) fail in an exception group: its first
    error other than a cancellation, as itself. So a peer that went away is `lost` as it is for
    a Jah of one task, and nothing but a cancellation ever leaves a Jah for its worker's nursery
    (an Unavailable that did would end the whole worker)."""
    try:
        yield
    except BaseExceptionGroup as group:
        _, rest = group.split(trio.Cancelled)
        if rest is None:
            raise
        raise first_error(rest) from group
