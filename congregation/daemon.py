"""The congregation process: listens, routes each cmdReq to its handler, keeps workers alive.

`congregation --data-dir DIR` prints a line with `ready` and its address once it accepts
connections; SIGTERM or SIGINT stops it cleanly.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import structlog
import trio

from congregation import admission, checkpoints, failover, stall
from congregation.catalog import Catalog
from congregation.cluster import Cluster
from congregation.commands import Commands
from congregation.congestion import WATCHED_ROLES, CongestionWatch
from congregation.datadir import locked_data_dir
from congregation.deployment import Deployment
from congregation.etcd import Etcd
from congregation.hallelu import log_name, published
from congregation.logs import Logs, Notices
from congregation.replication import Shipper
from congregation.routing import peer_tls
from congregation.rpc import Peer
from congregation.scaling import merge, split, split_aggregate
from congregation.tls import CERT_COMMANDS, TlsConfig, certificates_main
from congregation.workers import WorkerHost, Zygote, make_zygote, settled_heap
from hallelujah.allowed import Allowed
from hallelujah.errors import HallelujahError, InvalidInput, Unavailable
from hallelujah.frames import Connection
from hallelujah.logs import configure_logging
from hallelujah.tradecraft import parse_document

log = structlog.get_logger("hallelujah.congregation")
WORKER_START_TIMEOUT = 10.0
CONGESTION_EVERY = 0.5        # seconds between looks at the Jahs' busy fraction and backlog
CRASH_LOOP = 2                # a tradecraft whose workers died this many times ...
CRASH_PERIOD = 120.0          # ... within this many seconds fails with that reason, not redeployed
# seconds between a running tradecraft's checkpoints (the environment's for `hallelujah run`)
DEFAULT_CHECKPOINT_EVERY = float(os.environ.get("HALLELUJAH_CHECKPOINT_EVERY", "10"))


class Congregation:
    """One host's daemon. Build its Zygote first (before trio), then `await serve(...)`."""

    def __init__(self, data_dir: Path, zygote: Zygote, workers: int, name: str = "congregation",
                 allowed: Allowed | None = None, limits: admission.Limits | None = None,
                 tls: TlsConfig | None = None) -> None:
        self.data_dir = Path(data_dir)
        # what documents may import and read here; the data dir is never readable by a source
        base = allowed or Allowed()
        self.allowed = Allowed(base.udf_dirs, base.source_roots,
                               base.forbidden + (self.data_dir.expanduser().resolve(),))
        self.zygote = zygote
        self.worker_count = workers
        self.name = name
        self.hosts: dict[int, WorkerHost] = {}
        self.deployments: dict[str, Deployment] = {}
        self._worker_ready: dict[int, trio.Event] = {}
        self._spawned_at: dict[int, float] = {}
        self._deaths: dict[str, list[tuple[float, int, int]]] = {}   # tradecraft -> (at, worker, pid)
        self.connections = admission.Admission(limits or admission.Limits())
        self.tls = tls                    # with it, every TCP connection is TLS, and clients need a token
        self._events_send, self._events_receive = trio.open_memory_channel[
            tuple[str, str, str, Deployment | None]](10_000)
        self._stopping = False
        self._lock = trio.Lock()          # one deployment change at a time
        self.commands = Commands(self)
        self.progress = stall.Progress()  # when each tradecraft last moved a row
        self.checkpoint_every = DEFAULT_CHECKPOINT_EVERY
        self.etcd: list[str] = []         # a cluster's etcd endpoints (none: one congregation alone)
        self.advertise = ""               # the address other members and clients reach us at
        self.lease_ttl = 2
        self.cluster: Cluster | None = None
        self.starting: set[str] = set()   # tradecrafts being started here (in a cluster: taken over)
        self.copies: dict[str, int] = {}  # logs of other members' tradecrafts copied here -> their epoch
        self.shippers: dict[str, Shipper] = {}    # our input logs -> their copy at another member
        self._replicating: dict[str, trio.CancelScope] = {}

    async def serve(self, listen: str | None, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(self.data_dir)
        written = Notices()
        self.logs = Logs(self.data_dir, tell=written.add)
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(written.forward, self._tell_workers)
                local = [trio.SocketListener(await _unix_listener(self.zygote.daemon_address))]
                await nursery.start(trio.serve_listeners, functools.partial(self._on_connection, local=True),
                                    local)
                listeners: list[trio.SocketListener] = []
                if listen:
                    host, _, port = listen.rpartition(":")
                    try:
                        listeners = await trio.open_tcp_listeners(int(port), host=host or "127.0.0.1")
                    except OSError as exc:
                        raise Unavailable(f"--listen {listen}: {exc.strerror or exc}") from None
                    if not self.etcd:
                        await nursery.start(trio.serve_listeners, self._on_connection, listeners)
                nursery.start_soon(self._handle_events)
                nursery.start_soon(self._watch_congestion)
                nursery.start_soon(stall.watch, self)
                nursery.start_soon(checkpoints.watch, self)
                async with trio.open_nursery() as starting:
                    for index in range(self.worker_count):
                        starting.start_soon(self._start_worker, index)
                address = listen or self.zygote.daemon_address
                if listen and listen.endswith(":0"):
                    sockname = listeners[-1].socket.getsockname()
                    address = f"{sockname[0]}:{sockname[1]}"
                if self.etcd:
                    await self._join(nursery, self.advertise or address)
                await self._resume()
                if self.etcd and listeners:
                    # a member answers clients once it has joined and let go of what it ran before
                    # (connections wait in the listen backlog until then): never as a lone one
                    await nursery.start(trio.serve_listeners, self._on_connection, listeners)
                task_status.started(address)
        finally:
            self._stopping = True
            if self.cluster is not None:
                with trio.CancelScope(shield=True):
                    await self.cluster.leave()
                    await self.cluster.etcd.aclose()
            self.logs.close()
            self.catalog.close()

    async def _join(self, nursery: trio.Nursery, address: str) -> None:
        """Become a member of the cluster whose truth is in etcd (congregation/cluster.py)."""
        self.cluster = Cluster(Etcd(self.etcd), self.name, address, self.worker_count, self.lease_ttl)
        await self.cluster.join()
        nursery.start_soon(self.cluster.keep, functools.partial(failover.stop_all, self))
        nursery.start_soon(failover.watch, self)

    def replicate(self, d: Deployment) -> None:
        """In a cluster: keep a copy of each pushed stream's input log at another member."""
        assert self.cluster is not None
        scope = self._replicating[d.tc.name] = trio.CancelScope()
        names = [log_name(d.tc.name, a.name) for a in d.tc.analytics if published(a)]
        shippers = [Shipper(self.logs, self.cluster, d.tc.name, self.cluster.epochs[d.tc.name], n, peer_tls(self))
                    for n in names]
        self.shippers.update({s.name: s for s in shippers})

        async def ship() -> None:
            with scope:
                async with trio.open_nursery() as nursery:
                    for shipper in shippers:
                        nursery.start_soon(shipper.run)

        self.nursery.start_soon(ship)

    def stop_replication(self, tradecraft: str) -> None:
        scope = self._replicating.pop(tradecraft, None)
        if scope is not None:
            scope.cancel()
        for name in [n for n in self.shippers if n.startswith(f"{tradecraft}/")]:
            self.shippers.pop(name).close()

    async def _tell_workers(self, name: str) -> None:
        """Log `name` was written here (a publish, an end): the workers' followers look again."""
        for host in list(self.hosts.values()):
            await host.tell("logChanged", {"log": name})

    async def _start_worker(self, index: int) -> None:
        ready = self._worker_ready[index] = trio.Event()
        self._spawned_at[index] = trio.current_time()
        pid = await self.zygote.spawn(index, self.data_dir)
        with trio.move_on_after(WORKER_START_TIMEOUT) as timeout:
            await ready.wait()
        if timeout.cancelled_caught:
            raise Unavailable(f"worker {index} (pid {pid}) did not start")

    async def _on_connection(self, stream: trio.SocketStream, local: bool = False) -> None:
        """One connection: a client's command, or (over the private Unix socket only) a worker.

        TCP connections are capped (congregation/admission.py); the Unix socket, in a directory
        only this user can enter, serves workers and `run`'s own client uncapped. With TLS, a TCP
        connection's handshake comes first, and a client's cmdReq must carry a valid token.
        """
        peer = "local" if local else admission.peer_address(stream)
        with self.connections.hold(peer, capped=not local) as over:
            tls = None if local else self.tls
            channel: trio.abc.Stream = stream
            if tls is not None:     # (over the caps, only a moment to hear why)
                wait = admission.REFUSAL_WAIT if over else self.connections.limits.idle_timeout
                accepted = await admission.accept_tls(stream, tls, peer, wait)
                if accepted is None:
                    return
                channel = accepted
            conn = admission.client_connection(channel, peer)
            try:
                if over:
                    await admission.refuse_over_capacity(conn, over, self.connections)
                    return
                kind, fields = await admission.first_frame(conn, self.connections.limits.idle_timeout)
                if kind == "hello":
                    refusal = admission.worker_refusal(fields, conn, local, self.zygote.secret,
                                                       self.worker_count, self.hosts)
                    if refusal:
                        raise admission.Refused(InvalidInput(f"refused: {refusal}"))
                    admission.open_worker(conn, fields)
                    await self._serve_worker(conn, fields)
                    return
                if kind != "cmdReq":
                    raise admission.Refused(InvalidInput(
                        f"refused: the first frame of a connection must be a cmdReq, not a {kind}"))
                if tls is not None:
                    admission.check_token(conn, fields, tls)
                admission.open_command(conn, fields["command"])
                await self.commands.on_cmd_req(conn, fields)   # (answers a refused frame itself)
                if conn.refused:
                    admission.log_refusal(conn)
                await admission.close_gracefully(conn)
            except admission.Refused as refused:
                await admission.refuse(conn, refused)
            except (EOFError, Unavailable) as exc:
                log.debug("connection_closed", reason=str(exc))
            except Exception:  # a bug: keep serving everyone else, and say where it was
                log.exception("connection_failed")
            finally:
                await conn.aclose()

    async def _serve_worker(self, conn: Connection, hello: dict[str, Any]) -> None:
        index = hello["worker"]
        host = WorkerHost(index, hello["pid"], hello["address"], Peer(conn, notices={
            "jahEvent": lambda f: self._event(f["jah"], f["event"], f["detail"]),
            "logChanged": lambda f: self.logs.changed(f["log"]),
        }))
        host.peer.notices["stats"] = lambda f: setattr(host, "stats", json.loads(f["jahs"]))
        self.hosts[index] = host
        start_ms = round((trio.current_time() - self._spawned_at.get(index, trio.current_time())) * 1000, 1)
        log.info("worker_ready", worker=index, pid=host.pid, start_ms=start_ms)
        self._worker_ready[index].set()
        await host.peer.serve()
        if not self._stopping:
            self.nursery.start_soon(self._replace_worker, index, host.pid)

    async def _replace_worker(self, index: int, pid: int) -> None:
        """A worker died: fork a new one and restart every tradecraft that had a Jah on it."""
        log.warning("worker_lost", worker=index, pid=pid)
        async with self._lock:
            self.hosts.pop(index, None)
            # ("starting": a restart that a worker's death interrupted, left to this replacement)
            affected = [d for d in self.deployments.values()
                        if d.uses(index) and d.state in ("running", "starting")]
            for d in affected:
                await d.stop(lost=index)
            await self._start_worker(index)
            for d in affected:
                looping = self._crash_loop(d.tc.name, index, pid)
                if looping:     # what it was given kills its worker: fail it, keep the congregation
                    log.warning("tradecraft_crash_loop", tradecraft=d.tc.name, reason=looping)
                    await self._fail(d, looping)
                    continue
                await self.catalog.record_event(d.tc.name, "restart",
                                                {"reason": f"worker {index} (pid {pid}) lost"})
                await self._redeploy(d.tc)

    def _crash_loop(self, tradecraft: str, index: int, pid: int) -> str:
        """Count a worker's death against a tradecraft that ran on it: why it must not be
        redeployed once its workers died CRASH_LOOP times within CRASH_PERIOD seconds, else ""."""
        now = trio.current_time()
        deaths = [d for d in self._deaths.get(tradecraft, []) if now - d[0] < CRASH_PERIOD]
        deaths.append((now, index, pid))
        self._deaths[tradecraft] = deaths
        if len(deaths) < CRASH_LOOP:
            return ""
        times = {2: "twice"}.get(len(deaths), f"{len(deaths)} times")
        before = "; ".join(f"worker {w}, pid {p}, {now - at:.1f} s before" for at, w, p in deaths[:-1])
        return (f"its worker died {times} while running it within {CRASH_PERIOD:g} s ({before}; then "
                f"worker {index}, pid {pid}): what it was given kills its worker, so it is not "
                f"restarted again")

    def plan(self, tc: Any) -> Deployment:
        """A deployment of `tc` with its Jahs placed (raises for what cannot run)."""
        d = Deployment(tc, self.logs)
        d.make_plan(self.hosts)
        return d

    async def launch(self, d: Deployment) -> None:
        """Start a planned deployment and record its Jahs and datastreams."""
        self.deployments[d.tc.name] = d
        assert d.plan is not None
        versions: dict[str, int] = {}
        for e in await self.catalog.events(d.tc.name):
            if e["kind"] == "dataset_version":
                detail = json.loads(e["detail"])
                versions[detail["analytic"]] = max(versions.get(detail["analytic"], 0), detail["version"])
        for jah in d.plan.jahs.values():        # a restarted INGEST numbers on from its last version
            if jah.role == "ingest":
                jah.spec["versions_before"] = versions.get(jah.analytic, 0)
        last = await self.catalog.last_checkpoint(d.tc.name)
        every = d.tc.checkpoint if d.tc.checkpoint is not None else self.checkpoint_every   # the document's
        d.checkpoints = checkpoints.Checkpoints(self.data_dir / "checkpoints" / d.tc.name, every, last)
        await trio.to_thread.run_sync(functools.partial(checkpoints.drop_checkpoints, d.checkpoints.directory,
                                                        last["id"] if last else 0, newer=True))
        d.restoring = checkpoints.restore_point(d.plan, last)
        if d.restoring is not None:
            log.info("restoring_checkpoint", tradecraft=d.tc.name, id=d.restoring["id"])
            await self.catalog.record_event(d.tc.name, "restored", {"checkpoint": d.restoring["id"]})
        await d.start()
        jahs, streams = d.catalog_rows()
        await self.catalog.set_deployment(d.tc.name, jahs, streams)
        early, d.early_events = d.early_events, []
        for event in early:           # what its Jahs said while it was starting, in order
            self._events_send.send_nowait((*event, d))

    async def _deploy(self, tc: Any) -> Deployment:
        d = self.plan(tc)
        await self.launch(d)
        return d

    async def _redeploy(self, tc: Any) -> Deployment | None:
        """Deploy a tradecraft again (after a restart, or a lost worker); None if it did not run.

        A worker that dies meanwhile leaves it "starting", for that worker's replacement (which
        counts the death); any other failure fails it, with the reason, not the congregation.
        """
        try:
            return await self._deploy(tc)
        except HallelujahError as exc:
            d = self.deployments.get(tc.name)
            if d is not None and any(d.uses(i) and getattr(h, "peer", None) and h.peer.closed
                                     for i, h in self.hosts.items()):
                log.warning("redeploy_interrupted", tradecraft=tc.name, error=str(exc))
                return None
            log.warning("redeploy_failed", tradecraft=tc.name, error=str(exc))
            if d is not None:
                await self._fail(d, f"could not be started again: {exc}")
            else:
                await self.catalog.set_state(tc.name, "failed", f"could not be started again: {exc}")
            return None

    async def _resume(self) -> None:
        """After a restart: deploy again every tradecraft that was running, from its logs; those
        that ended stay readable. A document is checked again against what this start allows
        (an operator may have withdrawn a UDF dir or a source root since): refused, it fails.
        A member of a cluster comes back empty-handed: what it ran is the cluster's to place."""
        for row in await self.catalog.tradecrafts():
            if self.cluster is not None:
                await self.commands.forget(row["name"])
                continue
            try:
                tc = parse_document(row["document"], allowed=self.allowed)
            except HallelujahError as exc:
                if row["state"] == "running":
                    log.warning("tradecraft_refused_on_resume", tradecraft=row["name"], error=str(exc))
                    await self.catalog.set_state(row["name"], "failed", f"refused on restart: {exc}")
                continue
            if row["state"] != "running":
                ended = Deployment(tc, self.logs)
                ended.state = row["state"]
                self.deployments[tc.name] = ended      # its outputs stay readable
                continue
            async with self._lock:
                d = await self._redeploy(tc)
            if d is None:
                continue
            log.info("tradecraft_resumed", tradecraft=tc.name)
            if await d.all_ended():
                await self._finish(d)

    def _event(self, jah: str, event: str, detail: str) -> None:
        """A Jah's report, with the deployment it came from: the one its tradecraft has as it
        arrives (a Jah's reports come before its stop is answered, so a redeployment's Jahs,
        which have the same ids, never speak for the one they replace)."""
        self._events_send.send_nowait((jah, event, detail, self.deployments.get(jah.split("/", 1)[0])))

    async def _handle_events(self) -> None:
        async for jah, event, detail, came_from in self._events_receive:
            tradecraft = jah.split("/", 1)[0]
            d = self.deployments.get(tradecraft)
            if event == "version" and d is not None:   # recorded even if the stream has ended since
                await self.catalog.record_event(tradecraft, "dataset_version",
                                                {"analytic": jah.split("/")[1], **json.loads(detail)})
                continue
            if d is None or d is not came_from:     # from a deployment stopped and replaced since
                continue
            if event == "finished" and detail.startswith("{"):
                # its last figures stay in describe once it is gone (its event may come after
                # the tradecraft has finished: the SINK's end can overtake a worker's report)
                d.final_stats[jah] = json.loads(detail)
                detail = ""
            if d.state == "starting":
                d.early_events.append((jah, event, detail))    # handled once it is running
                continue
            if d.state != "running" or d.stopped:
                continue
            if event in ("checkpointed", "finished"):
                await checkpoints.on_event(self, d, jah, event, detail)
                if event == "checkpointed":
                    continue
            if event == "lost":
                log.info("jah_lost_peer", jah=jah, reason=detail)
                continue
            if event == "finished" and jah in d.retiring:
                d.retiring.discard(jah)
                if await d.retire(jah):       # a split's old JOIN has drained: it and its rows go
                    await self.catalog.set_deployment(d.tc.name, *d.catalog_rows())
                continue
            await self.catalog.set_jah_state(jah, event, detail)
            if event == "failed":
                log.warning("jah_failed", jah=jah, error=detail)
                await self._fail(d, f"{jah}: {detail}")
            elif event == "finished" and jah.endswith("/sink") and await d.all_ended():
                await self._finish(d)

    def all_statistics(self) -> dict[str, dict[str, Any]]:
        """The latest statistics of every Jah, on every host (the workers' as last sent)."""
        return {jah: s for host in list(self.hosts.values()) for jah, s in host.stats.items()}

    async def _watch_congestion(self) -> None:
        """Record each congestion episode of a watched Jah, split a congested JOIN and merge an
        idle pair back (see congregation/congestion.py and congregation/scaling.py)."""
        busy, idle = CongestionWatch(), CongestionWatch()
        while True:
            await trio.sleep(CONGESTION_EVERY)
            stats = self.all_statistics()
            for d in list(self.deployments.values()):
                if d.state != "running" or d.plan is None:
                    continue
                for jah in list(d.plan.jahs.values()):
                    if jah.role in WATCHED_ROLES and jah.id in stats:
                        await self._scale(d, jah.id, stats[jah.id], busy, idle)

    async def _scale(self, d: Deployment, jah: str, stats: dict[str, Any], busy: CongestionWatch,
                     idle: CongestionWatch) -> None:
        c, now = d.tc.congestion, trio.current_time()
        congested = busy.observe(jah, stats, c.busy, c.for_seconds, now)
        calm = idle.idle(jah, stats, c.busy, c.for_seconds, now)
        if congested is not None:
            log.info("congested", **congested)
            await self.catalog.record_event(d.tc.name, "congested", congested)
        if d.scaling.locked() or (congested or calm) is None or jah not in d.plan.jahs:
            return
        async with d.scaling:
            try:
                if congested is not None:
                    by_role = split_aggregate if d.plan.jahs[jah].role == "aggregate" else split
                    changed = await by_role(d, jah, congested, self.catalog.record_event)
                else:
                    long_idle = {j for j, t in idle.since.items() if now - t >= 2 * c.for_seconds}
                    changed = await merge(d, jah, calm, long_idle, self.catalog.record_event)
            except (HallelujahError, KeyError) as exc:
                # a worker lost mid-split: its replacement redeploys the tradecraft from its logs
                log.warning("scaling_abandoned", jah=jah, error=f"{type(exc).__name__}: {exc}")
                return
            if changed:
                await self.catalog.set_deployment(d.tc.name, *d.catalog_rows())

    async def _finish(self, d: Deployment) -> None:
        d.state = "finished"
        await self.catalog.set_state(d.tc.name, "finished")
        if self.cluster is not None:
            await self.cluster.set_state(d.tc.name, "finished")
        await d.stop()              # what still runs (an ingest kept for splits) is done too
        log.info("tradecraft_finished", tradecraft=d.tc.name)

    async def _fail(self, d: Deployment, error: str) -> None:
        d.state = "failed"
        await d.stop()
        await self.catalog.set_state(d.tc.name, "failed", error)
        if self.cluster is not None:
            await self.cluster.set_state(d.tc.name, "failed", error)
        for name in d.plan.logs if d.plan else ():
            await self.logs.end(name)     # readers get what there is, then the end, not a hang


async def _unix_listener(path: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(128)
    return sock


async def run_daemon(args: argparse.Namespace, zygote: Zygote, tls: TlsConfig | None = None) -> None:
    """Serve until SIGTERM or SIGINT (`tls`: from the --tls-* flags, else plain TCP)."""
    congregation = Congregation(Path(args.data_dir), zygote, args.workers, args.name,
                                Allowed.of(args.udf_dir, args.source_root),
                                admission.Limits(args.max_connections, args.max_connections_per_peer,
                                                 args.idle_timeout), tls)
    congregation.checkpoint_every = args.checkpoint_every
    congregation.etcd = [e for value in args.etcd for e in value.split(",") if e]
    congregation.advertise = args.advertise or ""
    congregation.lease_ttl = args.lease_ttl
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(congregation.serve, args.listen)
            if args.metrics:
                from congregation.metrics import serve_metrics
                await nursery.start(serve_metrics, congregation, args.metrics, tls)
            print(f"congregation {args.name} ready at {address} "
                  f"(workers: {args.workers}, data: {args.data_dir}{', TLS' if tls else ''})", flush=True)
            async for _ in signals:
                log.info("stopping")
                nursery.cancel_scope.cancel()
                break


def _loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    return host in ("", "127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _refused(args: argparse.Namespace) -> str:
    """What this version cannot do safely, said before anything starts."""
    tls_flags = [args.tls_cert, args.tls_key, args.tls_ca]
    if any(tls_flags) and not all(tls_flags):
        return "--tls-cert, --tls-key and --tls-ca go together: give all three (or none)"
    for flag, address in (("--listen", args.listen), ("--metrics", args.metrics)):
        port = (address or "").rpartition(":")[2]
        if address is not None and not (port.isdigit() and int(port) < 65536):
            return f"{flag} {address}: not HOST:PORT (for example 127.0.0.1:7077; port 0 picks a free one)"
        if address is not None and not _loopback(address) and not all(tls_flags):
            return (f"{flag} {address}: only loopback addresses without TLS; a non-loopback address needs "
                    f"--tls-cert, --tls-key and --tls-ca (see congregation init-ca and issue-cert)")
    if args.peer and not args.etcd:
        return ("--peer: a cluster keeps its members and documents in etcd; give its endpoints with "
                "--etcd http://HOST:2379 (the peers are then found there)")
    for url in args.etcd:
        for endpoint in url.split(","):
            if endpoint and not endpoint.startswith(("http://", "https://")):
                return f"--etcd {endpoint}: not an URL (for example http://127.0.0.1:2379)"
    if args.advertise is not None and not args.etcd:
        return "--advertise: only for a member of a cluster (with --etcd)"
    if not 1 <= args.lease_ttl <= 60:
        return f"--lease-ttl {args.lease_ttl}: must be 1 to 60 seconds"
    for flag, value in (("--workers", args.workers), ("--max-connections", args.max_connections),
                        ("--max-connections-per-peer", args.max_connections_per_peer),
                        ("--idle-timeout", args.idle_timeout)):
        if not value > 0:     # (NaN too)
            return f"{flag} {value}: must be more than 0"
    if not 0 <= args.checkpoint_every < float("inf"):
        return f"--checkpoint-every {args.checkpoint_every}: must be 0 (none) or more"
    return ""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CERT_COMMANDS:     # the cluster's certificates, not a daemon
        certificates_main(argv)
        return
    ap = argparse.ArgumentParser(prog="congregation", description="The Hallelujah daemon for one host.",
                                 epilog="certificates: congregation init-ca DIR; "
                                        "congregation issue-cert NAME --ca DIR [--address IP_OR_HOST]...")
    ap.add_argument("--data-dir", required=True, help="where the catalog and logs live")
    ap.add_argument("--listen", default="127.0.0.1:7077", help="HOST:PORT to accept clients on")
    ap.add_argument("--peer", action="append", default=[],
                    help="another congregation of the cluster (informative: members are found in etcd)")
    ap.add_argument("--etcd", action="append", default=[], metavar="URL",
                    help="an etcd endpoint of the cluster's shared truth (repeatable or comma-separated); "
                         "none: this congregation alone, its catalog in SQLite")
    ap.add_argument("--advertise", default=None, metavar="HOST:PORT",
                    help="the address other members and clients reach this one at (default: --listen)")
    ap.add_argument("--lease-ttl", type=int, default=2, metavar="SECONDS",
                    help="a member whose lease is not kept alive this long is failed (default 2)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--name", default=socket.gethostname())
    ap.add_argument("--metrics", default=None, help="HOST:PORT for Prometheus metrics")
    ap.add_argument("--udf-dir", action="append", default=[], metavar="DIR",
                    help="a directory documents may import UDF modules from (repeatable; none by default)")
    ap.add_argument("--source-root", action="append", default=[], metavar="DIR",
                    help="a directory under which file sources may be read (repeatable; none by default)")
    ap.add_argument("--max-connections", type=int, default=admission.MAX_CONNECTIONS, metavar="N",
                    help=f"client connections served at once (default {admission.MAX_CONNECTIONS})")
    ap.add_argument("--max-connections-per-peer", type=int, default=admission.MAX_CONNECTIONS_PER_PEER,
                    metavar="N",
                    help=f"of them from one address (default {admission.MAX_CONNECTIONS_PER_PEER})")
    ap.add_argument("--idle-timeout", type=float, default=admission.IDLE_TIMEOUT, metavar="SECONDS",
                    help="seconds a new connection has to send its first frame "
                         f"(default {admission.IDLE_TIMEOUT:g})")
    ap.add_argument("--checkpoint-every", type=float, default=DEFAULT_CHECKPOINT_EVERY, metavar="SECONDS",
                    help="seconds between checkpoints of each running tradecraft; 0: none "
                         f"(default {DEFAULT_CHECKPOINT_EVERY:g})")
    ap.add_argument("--tls-cert", metavar="FILE", help="this congregation's certificate (issue-cert's NAME.pem)")
    ap.add_argument("--tls-key", metavar="FILE", help="its private key (NAME.key)")
    ap.add_argument("--tls-ca", metavar="FILE", help="the cluster CA's certificate (ca.pem): with the two "
                                                     "above, TCP and metrics are TLS and clients need a token")
    ap.add_argument("--log-format", choices=["json", "console"], default="json",
                    help="JSON lines (for programs) or readable lines, on stderr")
    ap.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower,
                    help="the least level logged (default: $HALLELUJAH_LOG_LEVEL, else warning)")
    args = ap.parse_args(argv)
    refusal = _refused(args)
    if refusal:
        print(f"congregation: {refusal}", file=sys.stderr)
        sys.exit(2)
    try:
        config = TlsConfig(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    except InvalidInput as exc:
        print(f"congregation: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(args.log_format, args.log_level)
    data_dir = Path(args.data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)    # before the zygote: a bad dir costs nothing
    except OSError as exc:
        print(f"congregation: --data-dir {data_dir}: cannot be created: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    with settled_heap():
        zygote = make_zygote()
    try:
        with locked_data_dir(data_dir):     # after the zygote: its workers never hold it
            trio.run(run_daemon, args, zygote, config)
    except BaseException as exc:
        problem = start_failure(exc)
        if problem is None:
            raise
        print(f"congregation: {problem[1]}", file=sys.stderr)
        sys.exit(problem[0])
    finally:
        zygote.close()


LOG_LEVELS = ["debug", "info", "warning", "error", "critical"]


def start_failure(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for what stops a congregation that is no bug: a refusal
    (HallelujahError), or the system's (an address in use, a full disk); None for anything else.
    Nested exception groups (a failure inside trio nurseries) are looked through."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, HallelujahError):
        return exc.exit_code, str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return 1, f"{where}{exc.strerror or exc}"
    return None
