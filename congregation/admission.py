"""Who may talk to a congregation, and how much: connection caps, first-frame rules, refusals.

A client's connection starts with small limits: its first frame must be a `cmdReq` of at most
MAX_COMMAND_FRAME bytes, complete within the idle timeout; nothing is allocated for what a frame
only claims. A `publish` then opens a datastream, whose bodies may be up to MAX_PUBLISH_BODY; every
other frame a client sends is small. Connections over TCP are capped per peer address and in
total. With TLS (`--tls-*`), every TCP connection completes its handshake first (within the idle
timeout); a peer without a certificate from the cluster CA is a client, whose cmdReq must carry a
valid token. A worker registers only over the private Unix socket, proving its zygote's secret.
Each refusal is one log line, and a `cmdCfm` error to the peer before its connection is closed.
"""
from __future__ import annotations

import contextlib
import hmac
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from congregation.tls import TlsConfig, peer_certificate
from hallelujah.errors import HallelujahError, InvalidInput, Unavailable
from hallelujah.frames import MAX_BODY, MAX_FRAME, Connection, FrameRefused, tls_handshake
from hallelujah.tokens import TokenRefused

log = structlog.get_logger("hallelujah.admission")

MAX_COMMAND_FRAME = 4 << 20      # a cmdReq: documents are JSON of kilobytes (2,000 routes: 37 KiB)
MAX_CLIENT_FRAME = 64 << 10      # every later frame of a client: dataReq headers, dataCfm grants
MAX_PUBLISH_BODY = 256 << 20     # one published batch (the client sends 65,536 rows at a time)
MAX_CONNECTIONS = 512            # client connections at once, over TCP
MAX_CONNECTIONS_PER_PEER = 128   # of them from one address
IDLE_TIMEOUT = 10.0              # seconds a new connection has to complete its first frame
CLIENT_BUFFER = 16 << 10         # a client connection's first frame buffer (it grows as bytes come)
REFUSAL_WAIT = 1.0               # seconds a refused peer has to send its cmdReq (for its id) or to close
REFUSAL_DRAIN = 1 << 20          # bytes read and dropped after a refusal, so the peer reads it, not a reset


@dataclass(frozen=True)
class Limits:
    """The operator's caps (`congregation --max-connections, --max-connections-per-peer,
    --idle-timeout`)."""

    max_connections: int = MAX_CONNECTIONS
    max_per_peer: int = MAX_CONNECTIONS_PER_PEER
    idle_timeout: float = IDLE_TIMEOUT


class Refused(Exception):
    """A connection refused: `error` is what its peer is told."""

    def __init__(self, error: HallelujahError, rid: int = 0) -> None:
        super().__init__(str(error))
        self.error = error
        self.rid = rid


class Admission:
    """Counts the TCP connections served, by peer address and in all."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.by_peer: Counter[str] = Counter()
        self.total = 0
        self.refusing = 0

    @contextlib.contextmanager
    def hold(self, peer: str, capped: bool = True) -> Iterator[str]:
        """Count a connection from `peer` for as long as it is served: yields "" if it may be,
        else why not (and it is not counted). An uncapped one (the Unix socket's) is not counted."""
        reason = ""
        if not capped:
            yield ""
            return
        if self.total >= self.limits.max_connections:
            reason = (f"the congregation serves {self.total} connections, its limit "
                      f"(--max-connections {self.limits.max_connections}); try again later")
        elif self.by_peer[peer] >= self.limits.max_per_peer:
            reason = (f"{peer} has {self.by_peer[peer]} connections open, the limit per address "
                      f"(--max-connections-per-peer {self.limits.max_per_peer}); close some first")
        if reason:
            yield reason
            return
        self.total += 1
        self.by_peer[peer] += 1
        try:
            yield ""
        finally:
            self.total -= 1
            self.by_peer[peer] -= 1
            if not self.by_peer[peer]:
                del self.by_peer[peer]


def client_connection(stream: trio.abc.Stream, peer: str) -> Connection:
    """A new connection, with room for one bounded cmdReq and no datastream."""
    return Connection(stream, peer, max_frame=MAX_COMMAND_FRAME, max_body=0, buffer=CLIENT_BUFFER)


async def accept_tls(stream: trio.SocketStream, tls: TlsConfig, peer: str,
                     timeout: float) -> trio.SSLStream | None:
    """`stream` as a TLS connection with its handshake done within `timeout` seconds; None (one
    log line, the socket closed) for a peer that fails it: a certificate from another CA, plain
    TCP, garbage, silence."""
    secure = trio.SSLStream(stream, tls.server_context(), server_side=True)
    why = await tls_handshake(secure, timeout)
    if not why:
        return secure
    log.warning("tls_handshake_failed", peer=peer, reason=why)
    await trio.aclose_forcefully(stream)
    return None


def check_token(conn: Connection, fields: dict[str, Any], tls: TlsConfig) -> None:
    """Refused (with the reason for the client) unless the cmdReq carries a valid token; a peer
    with a certificate from the cluster CA (a congregation) needs none."""
    if peer_certificate(conn.stream) is not None:
        return
    try:
        claims = tls.verify_token(fields.get("token", ""))
    except TokenRefused as exc:
        raise Refused(exc, fields.get("id", 0)) from None
    conn.peer = f"{conn.peer} ({claims.subject})"


def peer_address(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "unknown"


async def first_frame(conn: Connection, timeout: float) -> tuple[str, dict[str, Any]]:
    """The connection's first frame, which must be complete within `timeout` seconds."""
    with trio.move_on_after(timeout):
        try:
            kind, fields, _ = await conn.receive()
        except FrameRefused as exc:
            raise Refused(InvalidInput(f"refused: {exc}")) from None
        return kind, fields
    raise Refused(InvalidInput(f"no complete first frame within {timeout:g} s: connection closed "
                               f"(--idle-timeout)"))


def open_command(conn: Connection, command: str) -> None:
    """A client's limits once its cmdReq is read: a publish (or its copy) opens a datastream."""
    conn.max_frame = MAX_CLIENT_FRAME
    conn.max_body = MAX_PUBLISH_BODY if command in ("publish", "replicate") else 0


def open_worker(conn: Connection, hello: dict[str, Any]) -> None:
    """A registered worker's limits: those between our own processes."""
    conn.max_frame, conn.max_body = MAX_FRAME, MAX_BODY
    conn.peer = f"worker {hello['worker']} (pid {hello['pid']})"


def worker_refusal(hello: dict[str, Any], conn: Connection, local: bool, secret: bytes, workers: int,
                   hosts: dict[int, Any]) -> str:
    """Why a `hello` may not register as a worker ("" if it may)."""
    index, pid = hello.get("worker", -1), hello.get("pid", 0)
    if not local:
        return "a hello over TCP: workers register only over the congregation's private Unix socket"
    if not hmac.compare_digest(hello.get("secret", b""), secret):
        return f"a hello for worker {index} (pid {pid}) without this congregation's secret"
    if not 0 <= index < workers:
        return f"a hello for worker {index}: this congregation runs workers 0 to {workers - 1}"
    sender = _peer_pid(conn)
    if sender is not None and sender != pid:
        return f"a hello for worker {index} claiming pid {pid}, sent by pid {sender}"
    host = hosts.get(index)
    if host is not None and not host.peer.closed:
        return f"a hello for worker {index} (pid {pid}), which is registered and alive (pid {host.pid})"
    return ""


def _peer_pid(conn: Connection) -> int | None:
    """The pid of a Unix socket's other end, as the kernel knows it (Linux), else None."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None or conn.sock is None:
        return None
    try:
        pid, _, _ = struct.unpack("3i", conn.sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    return pid


def log_refusal(conn: Connection, reason: str = "") -> None:
    log.warning("connection_refused", peer=conn.peer, reason=reason or f"refused: {conn.refused}")


async def refuse(conn: Connection, refused: Refused) -> None:
    """One log line; the peer told why in a cmdCfm (for its request's id when known), then closed."""
    log_refusal(conn, str(refused.error))
    with trio.move_on_after(REFUSAL_WAIT):
        try:
            await conn.send("cmdCfm", {"id": refused.rid, "error": {
                "kind": refused.error.kind, "message": str(refused.error), "path": ""}})
        except Unavailable:
            return
    await close_gracefully(conn)


async def refuse_over_capacity(conn: Connection, reason: str, admission: Admission) -> None:
    """Refuse a connection over the caps: after its cmdReq if it comes at once and is small (so a
    client sees the error as its request's answer), else straight away."""
    rid = 0
    if admission.refusing < admission.limits.max_connections:
        admission.refusing += 1
        try:
            conn.max_frame = MAX_CLIENT_FRAME
            with trio.move_on_after(REFUSAL_WAIT):
                kind, fields, _ = await conn.receive()
                rid = fields.get("id", 0) if kind == "cmdReq" else 0
        except (EOFError, HallelujahError):
            pass
        finally:
            admission.refusing -= 1
    await refuse(conn, Refused(Unavailable(f"connection refused: {reason}"), rid))


async def close_gracefully(conn: Connection) -> None:
    """Stop sending, and read (and drop) what the peer still sends for a moment: closed with
    unread bytes, the connection would be reset, and the peer might lose our last frame."""
    with trio.move_on_after(REFUSAL_WAIT):
        try:
            if conn.sock is not None:     # (TLS cannot half-close: its peer closes once it has read)
                conn.sock.shutdown(socket.SHUT_WR)
            drained = 0
            while drained < REFUSAL_DRAIN:
                chunk = await conn.stream.receive_some(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
