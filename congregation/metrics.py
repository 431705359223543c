"""Prometheus metrics on `--metrics HOST:PORT`, read from the live Jah statistics at each scrape.

A custom collector (no background updates) served by a small trio HTTP responder: the
prometheus_client exposition format without its threaded server. With the congregation's TLS it
is HTTPS, read only with a certificate from the cluster CA or a client token (serve_metrics).
"""
from __future__ import annotations

from typing import Any, Iterator

import structlog
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from congregation.admission import accept_tls, peer_address
from congregation.tls import TlsConfig, peer_certificate
from hallelujah.frames import aclose_quietly
from hallelujah.tokens import TokenRefused

log = structlog.get_logger("hallelujah.metrics")
LABELS = ["tradecraft", "analytic", "role"]
SCRAPE_TIMEOUT = 5.0       # seconds a scrape has to complete (its TLS handshake, its request)
MAX_REQUEST = 16384        # bytes of a request's head read


class JahCollector:
    """Rows, busy fraction, backlog and credit waits of every Jah, labelled by analytic and role."""

    def __init__(self, congregation: Any) -> None:
        self.congregation = congregation

    def collect(self) -> Iterator[Any]:
        rows_in = CounterMetricFamily("hallelujah_rows_in", "Rows taken in by Jahs", labels=LABELS)
        rows_out = CounterMetricFamily("hallelujah_rows_out", "Rows sent on by Jahs", labels=LABELS)
        busy = GaugeMetricFamily("hallelujah_busy_fraction", "Time working / wall time", labels=LABELS)
        backlog = GaugeMetricFamily("hallelujah_backlog_batches", "Batches waiting at inputs", labels=LABELS)
        blocked = CounterMetricFamily("hallelujah_blocked_on_credits_seconds",
                                      "Time senders waited for credits", labels=LABELS)
        in_flight = GaugeMetricFamily("hallelujah_in_flight_batches",
                                      "Batches sent and not yet taken by their receivers (what credits bound)",
                                      labels=LABELS)
        totals: dict[tuple[str, str, str], dict[str, float]] = {}
        for host in list(self.congregation.hosts.values()):
            for jah_id, s in host.stats.items():
                tradecraft, analytic = (jah_id.split("/") + ["", ""])[:2]
                key = (tradecraft, analytic.split(".")[0], s.get("role", ""))
                t = totals.setdefault(key, {"rows_in": 0, "rows_out": 0, "busy": 0, "backlog": 0, "blocked": 0,
                                            "in_flight": 0})
                for k in t:
                    t[k] += s.get(k, 0) or 0
        for key, t in totals.items():
            labels = list(key)
            rows_in.add_metric(labels, t["rows_in"])
            rows_out.add_metric(labels, t["rows_out"])
            busy.add_metric(labels, t["busy"])
            backlog.add_metric(labels, t["backlog"])
            blocked.add_metric(labels, t["blocked"])
            in_flight.add_metric(labels, t["in_flight"])
        yield from checkpoint_metrics(self.congregation)
        workers = GaugeMetricFamily("hallelujah_workers", "Worker processes alive")
        workers.add_metric([], len(self.congregation.hosts))
        yield from (rows_in, rows_out, busy, backlog, blocked, in_flight, workers)


def checkpoint_metrics(congregation: Any) -> Iterator[Any]:
    """Each running tradecraft's last complete checkpoint: how long it took, its size, its age."""
    families = {
        "seconds": GaugeMetricFamily("hallelujah_checkpoint_duration_seconds",
                                     "Time the last complete checkpoint took", labels=["tradecraft"]),
        "bytes": GaugeMetricFamily("hallelujah_checkpoint_bytes", "State written by the last complete checkpoint",
                                   labels=["tradecraft"]),
        "age": GaugeMetricFamily("hallelujah_checkpoint_age_seconds", "Seconds since the last complete checkpoint",
                                 labels=["tradecraft"]),
    }
    for name, d in list(congregation.deployments.items()):
        last = d.checkpoints.describe()["last"] if d.checkpoints is not None else None
        if last is not None:
            for key, family in families.items():
                family.add_metric([name], last[key])
    yield from families.values()


async def serve_metrics(congregation: Any, listen: str, tls: TlsConfig | None = None, *,
                        task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Answer every HTTP request on `listen` with the metrics, until cancelled.

    With `tls`, it is HTTPS, and a scraper proves itself as a congregation does, with a
    certificate from the cluster CA (`congregation issue-cert prometheus`; Prometheus's
    `tls_config: {cert_file, key_file, ca_file}`), or as a client does, with a token
    (`Authorization: Bearer TOKEN`); anyone else is answered 401 with the reason, and logged."""
    registry = CollectorRegistry()
    registry.register(JahCollector(congregation))   # type: ignore[arg-type]
    host, _, port = listen.rpartition(":")
    listeners = await trio.open_tcp_listeners(int(port), host=host or "127.0.0.1")

    async def answer(plain: trio.SocketStream) -> None:
        peer = peer_address(plain)
        stream: trio.abc.Stream = plain
        if tls is not None:
            accepted = await accept_tls(plain, tls, peer, SCRAPE_TIMEOUT)
            if accepted is None:
                return
            stream = accepted
        with trio.move_on_after(SCRAPE_TIMEOUT):
            try:
                request = await _request_head(stream)
                refusal = _refusal(stream, request, tls) if tls is not None else ""
                if refusal:
                    log.warning("connection_refused", peer=peer, reason=refusal)
                    await _respond(stream, b"401 Unauthorized", refusal.encode() + b"\n")
                else:
                    await _respond(stream, b"200 OK", generate_latest(registry))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass     # (the scraper went away)
        await aclose_quietly(stream)

    task_status.started(listeners[0].socket.getsockname())
    await trio.serve_listeners(answer, listeners)


async def _request_head(stream: trio.abc.Stream) -> bytes:
    """An HTTP request's head (at most MAX_REQUEST bytes of it)."""
    request = b""
    while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        request += chunk
    return request


def _refusal(stream: trio.abc.Stream, request: bytes, tls: TlsConfig) -> str:
    """Why a scrape over TLS may not read the metrics ("" if it may)."""
    if peer_certificate(stream) is not None:
        return ""
    token = ""
    for line in request.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            scheme, _, token = value.strip().decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return "refused: the metrics need a certificate from the cluster CA or Authorization: Bearer TOKEN"
    try:
        tls.verify_token(token.strip())
    except TokenRefused as exc:
        return str(exc)
    return ""


async def _respond(stream: trio.abc.Stream, status: bytes, body: bytes) -> None:
    await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
