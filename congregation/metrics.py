"""Prometheus metrics on `--metrics HOST:PORT`, read from the live Jah statistics at each scrape.

A custom collector (no background updates) served by a small trio HTTP responder: the
prometheus_client exposition format without its threaded server.
"""
from __future__ import annotations

from typing import Any, Iterator

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LABELS = ["tradecraft", "analytic", "role"]


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


async def serve_metrics(congregation: Any, listen: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Answer every HTTP request on `listen` with the metrics, until cancelled."""
    registry = CollectorRegistry()
    registry.register(JahCollector(congregation))   # type: ignore[arg-type]
    host, _, port = listen.rpartition(":")
    listeners = await trio.open_tcp_listeners(int(port), host=host or "127.0.0.1")

    async def answer(stream: trio.SocketStream) -> None:
        with trio.move_on_after(5):
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 16384:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            body = generate_latest(registry)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                                  b"Content-Length: " + str(len(body)).encode() +
                                  b"\r\nConnection: close\r\n\r\n" + body)
        await stream.aclose()

    task_status.started(listeners[0].socket.getsockname())
    await trio.serve_listeners(answer, listeners)
