"""Request/confirm pairs over one connection: correlation ids, timeouts, typed errors."""
from __future__ import annotations

import itertools
from typing import Any, Awaitable, Callable

import structlog
import trio

from hallelujah.errors import HallelujahError, InvalidInput, Unavailable, from_wire
from hallelujah.frames import Connection, FrameRefused, protocol

log = structlog.get_logger("hallelujah.rpc")
REQUEST_TIMEOUT = 30.0
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def error_fields(exc: HallelujahError) -> dict[str, Any]:
    """A typed error for a confirm; a TradecraftError's path travels apart from its message."""
    return {"kind": exc.kind, "message": getattr(exc, "detail", exc.message),
            "path": getattr(exc, "path", "") or ""}


def confirm_kind(request_kind: str) -> str:
    return request_kind[:-3] + "Cfm"


def answerable(kind: str) -> bool:
    """A request whose confirm can carry a typed error (a `dataReq` cannot: it is no request)."""
    fields = protocol.Message.schema.fields
    cfm = confirm_kind(kind)
    return kind.endswith("Req") and cfm in fields and "error" in fields[cfm].schema.fieldnames


class Peer:
    """One end of a control connection: send xReq and await its xCfm; answer the other side's xReq."""

    def __init__(self, conn: Connection, handlers: dict[str, Handler] | None = None,
                 notices: dict[str, Callable[[dict[str, Any]], None]] | None = None) -> None:
        self.conn = conn
        self.handlers = handlers or {}
        self.notices = notices or {}
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self.closed = False

    async def request(self, kind: str, fields: dict[str, Any],
                      timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        """Send one request; the confirm's fields, or its error raised."""
        rid = next(self._ids)
        done, box = trio.Event(), []
        self._pending[rid] = (done, box)
        try:
            await self.conn.send(kind, {"id": rid, **fields})
            with trio.fail_after(timeout):
                await done.wait()
        except trio.TooSlowError:
            raise Unavailable(f"{kind} to {self.conn.peer} timed out after {timeout:g}s") from None
        finally:
            self._pending.pop(rid, None)
        if not box:
            raise Unavailable(f"{self.conn.peer} went away during {kind}")
        cfm = box[0]
        if cfm.get("error"):
            err = cfm["error"]
            raise from_wire(err["kind"], err["message"], err.get("path", ""))
        return cfm

    async def serve(self) -> None:
        """The connection's one reader task: confirms to waiters, requests to handlers."""
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    try:
                        kind, fields, _ = await self.conn.receive()
                    except FrameRefused as exc:
                        log.warning("frame_refused", peer=self.conn.peer, error=str(exc))
                        return
                    except (EOFError, Unavailable):
                        return
                    if kind.endswith("Cfm"):
                        waiter = self._pending.get(fields.get("id", 0))
                        if waiter is not None:
                            waiter[1].append(fields)
                            waiter[0].set()
                    elif kind in self.handlers:
                        nursery.start_soon(self._answer, kind, fields)
                    elif kind in self.notices:
                        self.notices[kind](fields)
                    elif answerable(kind):
                        nursery.start_soon(self._refuse, kind, fields)
                    else:
                        log.warning("unexpected_frame", peer=self.conn.peer, kind=kind)
        finally:
            self.closed = True
            for done, _ in self._pending.values():
                done.set()

    async def _refuse(self, kind: str, fields: dict[str, Any]) -> None:
        """A request this end does not handle is answered, so its sender is not left waiting."""
        error = InvalidInput(f"{kind}: not a request answered on this connection")
        try:
            await self.conn.send(confirm_kind(kind), {"id": fields.get("id", 0), "error": error_fields(error)})
        except Unavailable:
            pass

    async def _answer(self, kind: str, fields: dict[str, Any]) -> None:
        try:
            result = await self.handlers[kind](fields)
        except HallelujahError as exc:
            result = {"error": error_fields(exc)}
        except Exception as exc:  # a bug: answer it, so the requester is not left waiting
            log.exception("request_failed", kind=kind)
            result = {"error": {"kind": "HallelujahError", "message": f"{type(exc).__name__}: {exc}",
                                "path": ""}}
        try:
            await self.conn.send(confirm_kind(kind), {"id": fields["id"], **result})
        except Unavailable:
            pass
