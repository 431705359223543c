"""Frames on the wire: sans-IO encoding plus one buffered connection over a trio stream.

A frame is a 4-byte little-endian length and one capnp `Message` (protocol.capnp). A `dataReq`
frame is followed by its raw Arrow IPC body, read with `recv_into` into one fresh buffer and opened
zero-copy. Each connection has its own limits (`max_frame`, `max_body`), checked before anything is
allocated: a congregation gives a client's connection small ones (congregation/admission.py), and a
frame beyond them raises FrameRefused. Memory follows the bytes that came, not the sizes claimed:
the frame buffer grows only as bytes arrive, and a body's buffer comes from Arrow's system pool:
not zeroed, and its pages taken only as bytes fill them (mimalloc, Arrow's default pool here,
commits megabytes up front for a large block).

Over a plain socket the connection reads with `recv_into` and writes with `sendmsg` (no copies);
over any other stream (TLS: `connect(address, tls=context)`) through `receive_some`/`send_all`,
a large body in STREAM_CHUNK pieces, with the same limits checked first.
"""
from __future__ import annotations

import ssl
import struct
from importlib import resources
from typing import Any

import capnp  # type: ignore[import-untyped]
import pyarrow as pa
import trio

from hallelujah.errors import Unavailable

capnp.remove_import_hook()
protocol = capnp.load(str(resources.files("hallelujah") / "protocol.capnp"))

MAX_FRAME = 64 << 20     # a control frame between our own processes (documents, descriptions)
MAX_BODY = 1 << 31       # one Arrow batch body between our own processes
FRAME_BUFFER = 256 << 10  # a connection's frame buffer to start with (and to shrink back to)
SOCKET_BUFFER = 4 << 20
STREAM_CHUNK = 1 << 20     # bytes per send_all / receive_some over a non-socket (TLS) stream
HANDSHAKE_TIMEOUT = 10.0   # seconds a TLS handshake may take, when connecting
CLOSE_TIMEOUT = 1.0        # seconds a TLS close (its close_notify) may take before the socket is just closed
_BODY_POOL = pa.system_memory_pool()
_LEN = struct.Struct("<I")
_TRAVERSAL = 1 << 40


class FrameRefused(Unavailable):
    """A frame beyond its connection's limits, refused before anything was allocated for it."""


def encode(kind: str, fields: dict[str, Any]) -> bytes:
    """One frame: length prefix + the capnp Message with `kind` set to `fields`."""
    body = protocol.Message.new_message(**{kind: fields}).to_bytes()
    return _LEN.pack(len(body)) + body


def decode(frame: bytes | memoryview) -> tuple[str, dict[str, Any]]:
    """The (kind, fields) of one frame's capnp bytes (without the length prefix)."""
    with protocol.Message.from_bytes(bytes(frame), traversal_limit_in_words=_TRAVERSAL) as msg:
        kind = msg.which()
        return kind, getattr(msg, kind).to_dict()


def serialize_batch(batch: pa.RecordBatch) -> pa.Buffer:
    """The IPC body of a batch, without its schema (the schema goes once per stream)."""
    return batch.serialize()


def open_batch(body: pa.Buffer | bytearray, schema: pa.Schema) -> pa.RecordBatch:
    """A batch over `body` without copying it."""
    buf = body if isinstance(body, pa.Buffer) else pa.py_buffer(body)
    return pa.ipc.read_record_batch(buf, schema)


def schema_bytes(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()


def schema_of(data: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))


class Connection:
    """A framed, bidirectional connection. One task receives; sends are serialized by a lock."""

    def __init__(self, stream: trio.abc.Stream, peer: str = "", max_frame: int = MAX_FRAME,
                 max_body: int = MAX_BODY, buffer: int = FRAME_BUFFER) -> None:
        self.stream = stream
        self.max_frame = max_frame   # bytes of one capnp frame
        self.max_body = max_body     # bytes of one dataReq body (0: no datastream is open here)
        # A plain socket is read and written directly (recv_into, sendmsg: no copies); any other
        # stream (a TLS one) through receive_some / send_all.
        self.sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        if isinstance(transport, trio.SocketStream):
            for option in (trio.socket.SO_SNDBUF, trio.socket.SO_RCVBUF):
                try:  # a 64 k-row batch in a few system calls, not dozens (capped by the kernel)
                    transport.socket.setsockopt(trio.socket.SOL_SOCKET, option, SOCKET_BUFFER)
                except OSError:
                    pass
        self.peer = peer
        self._send_lock = trio.Lock()
        self.refused = ""            # why a frame from the peer was refused, once one was
        self._initial = buffer
        self._buf = bytearray(buffer)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    async def send(self, kind: str, fields: dict[str, Any], body: Any = None) -> None:
        """Send one frame (and the raw body of a dataReq). Raises Unavailable if the peer is gone."""
        parts: list[memoryview] = [memoryview(encode(kind, fields))]
        if body is not None:
            view = memoryview(body)
            if view.nbytes:
                parts.append(view.cast("B"))
        async with self._send_lock:
            try:
                if self.sock is None:
                    await self._send_to_stream(parts)
                    return
                while parts:
                    sent = await self.sock.sendmsg(parts)
                    while sent:
                        if sent >= len(parts[0]):
                            sent -= len(parts[0])
                            parts.pop(0)
                        else:
                            parts[0] = parts[0][sent:]
                            sent = 0
            except (OSError, trio.ClosedResourceError, trio.BrokenResourceError) as exc:
                raise Unavailable(f"connection to {self.peer or 'peer'} lost: {exc}") from None

    async def _send_to_stream(self, parts: list[memoryview]) -> None:
        """Send through a stream's send_all: a small frame in one piece, a large body in
        STREAM_CHUNK pieces (TLS would otherwise hold a whole encrypted copy of it at once)."""
        if sum(p.nbytes for p in parts) <= STREAM_CHUNK:
            await self.stream.send_all(b"".join(parts))
            return
        for part in parts:
            for at in range(0, part.nbytes, STREAM_CHUNK):
                await self.stream.send_all(part[at:at + STREAM_CHUNK])

    async def _fill(self, need: int) -> None:
        """Make at least `need` bytes available from `_start`; the buffer grows as bytes arrive."""
        while self._end - self._start < need:
            if self._end == len(self._buf) or (self._start and len(self._buf) - self._start < need):
                self._make_room(need)        # full, or the frame would not fit where it starts
            self._end += await self._recv_into(self._view[self._end:])

    def _make_room(self, need: int) -> None:
        """Move the unread bytes to the front, in a buffer twice as large when they fill it (but
        no larger than `need`): a peer that claims a large frame must send it to make us hold it.
        A larger buffer is a new one, as views of the old one may still be out."""
        held = self._end - self._start
        size = max(len(self._buf), min(need, 2 * held))
        if size == len(self._buf):
            self._buf[:held] = self._buf[self._start:self._end]
        else:
            grown = bytearray(size)
            grown[:held] = self._view[self._start:self._end]
            self._buf, self._view = grown, memoryview(grown)
        self._start, self._end = 0, held

    async def _recv_into(self, view: memoryview) -> int:
        try:
            if self.sock is not None:
                n = await self.sock.recv_into(view)
            else:
                chunk = await self.stream.receive_some(min(len(view), STREAM_CHUNK))
                n = len(chunk)
                view[:n] = chunk
        except (OSError, trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise Unavailable(f"connection to {self.peer or 'peer'} lost: {exc}") from None
        if n == 0:
            raise EOFError(self.peer)
        return n

    async def receive(self) -> tuple[str, dict[str, Any], pa.Buffer | None]:
        """The next (kind, fields, body). Raises EOFError at a clean end (between frames),
        FrameRefused for a frame beyond this connection's limits, Unavailable otherwise."""
        await self._fill(4)
        (size,) = _LEN.unpack_from(self._buf, self._start)
        if size > self.max_frame:
            raise self._refuse(f"a frame of {size:,} bytes from {self.peer or 'peer'} exceeds "
                               f"the limit of {self.max_frame:,} here")
        try:
            await self._fill(4 + size)
            try:
                kind, fields = decode(self._view[self._start + 4:self._start + 4 + size])
            except (capnp.KjException, ValueError) as exc:  # not a Message, or a ragged length
                raise self._refuse(f"a frame of {size:,} bytes from {self.peer or 'peer'} is not a "
                                   f"Message: {str(exc).splitlines()[0]}") from None
            self._start += 4 + size
            body = None
            if kind == "dataReq" and fields["bodyLength"]:
                body = await self._receive_body(fields["bodyLength"])
        except EOFError:    # not a clean end: the peer went away in the middle of a frame
            raise Unavailable(f"{self.peer or 'peer'} closed the connection in the middle of a "
                              f"frame") from None
        if self._start == self._end and len(self._buf) > self._initial:   # after a large frame
            self._buf = bytearray(self._initial)
            self._view = memoryview(self._buf)
            self._start = self._end = 0
        return kind, fields, body

    async def _receive_body(self, length: int) -> pa.Buffer:
        if length > self.max_body:
            raise self._refuse(
                f"a batch body of {length:,} bytes from {self.peer or 'peer'} exceeds the limit of "
                f"{self.max_body:,} here" if self.max_body else
                f"a dataReq with a body from {self.peer or 'peer'}, where no datastream is open")
        body = pa.allocate_buffer(length, memory_pool=_BODY_POOL)
        view = memoryview(body).cast("B")
        have = min(length, self._end - self._start)
        view[:have] = self._view[self._start:self._start + have]
        self._start += have
        while have < length:
            have += await self._recv_into(view[have:])
        return body

    def unread(self) -> bytes:
        """The bytes received and not yet read as frames, taken out (before a connection is
        handed on whole: a relay passes them first)."""
        early = bytes(self._view[self._start:self._end])
        self._start = self._end = 0
        return early

    def _refuse(self, why: str) -> FrameRefused:
        self.refused = why
        return FrameRefused(why)

    async def aclose(self) -> None:
        await aclose_quietly(self.stream)


async def aclose_quietly(stream: trio.abc.Stream) -> None:
    """Close `stream`, also when cancelled; a TLS close_notify that cannot be sent within
    CLOSE_TIMEOUT (a peer that stopped reading) gives way to closing the socket."""
    with trio.CancelScope(shield=True):
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, OSError):
                pass     # (its transport is closed all the same)


async def connect(address: str, tls: ssl.SSLContext | None = None,
                  server_hostname: str | None = None) -> Connection:
    """Open a connection to "host:port" (TCP) or a Unix socket path.

    With `tls`, the TCP connection is a TLS one, its handshake done (within HANDSHAKE_TIMEOUT)
    before this returns: the peer's certificate checked against `tls`'s CAs for `server_hostname`
    (default: the address's host). Raises Unavailable naming the address and why."""
    try:
        if address.startswith("/") or address.startswith("\0"):
            stream: trio.abc.Stream = await trio.open_unix_socket(address)
        else:
            host, _, port = address.rpartition(":")
            host = host.strip("[]") or "127.0.0.1"
            stream = await trio.open_tcp_stream(host, int(port))
            if tls is not None:
                stream = await _handshake(trio.SSLStream(stream, tls, server_hostname=server_hostname or host),
                                          address)
    except OSError as exc:
        raise Unavailable(f"no congregation at {address}: {exc.strerror or exc}") from None
    return Connection(stream, address)


async def _handshake(stream: trio.SSLStream, address: str) -> trio.SSLStream:
    """`stream` with its TLS handshake done, else Unavailable saying why (its socket closed)."""
    why = await tls_handshake(stream, HANDSHAKE_TIMEOUT)
    if why:
        await trio.aclose_forcefully(stream.transport_stream)
        raise Unavailable(f"TLS with {address} failed: {why}")
    return stream


async def tls_handshake(stream: trio.SSLStream, timeout: float) -> str:
    """Do `stream`'s TLS handshake within `timeout` seconds: "" when done, else why not, in a few
    words (the certificate check's message when there is one). Leaves the stream open either way."""
    with trio.move_on_after(timeout):
        try:
            await stream.do_handshake()
            return ""
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            return str(getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause or exc)
    return f"no TLS handshake within {timeout:g} s"
