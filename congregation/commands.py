"""The congregation's answers to an application's cmdReq, one method per command.

`submit list describe cancel` answer with one cmdCfm; `publish` and `stream` answer with the
datastream's schema and then carry batches on the same connection, paced by credits.
"""
from __future__ import annotations

import functools
import json
import shutil
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog
import trio

from congregation import updates
from congregation.cluster import MOVES, TRADECRAFTS
from congregation.hallelu import log_name
from congregation.publishing import publish
from congregation.replication import keep_copy
from congregation.routing import ROUTED, forward, members_of, owner_address, placed, relay, tradecraft_of
from congregation.rpc import error_fields
from hallelujah.datastream import DataSender, open_sender
from hallelujah.errors import HallelujahError, InvalidInput, NotFound, TradecraftError, Unavailable, collapsed, moving
from hallelujah.frames import Connection, open_batch, schema_of
from hallelujah.tradecraft import Tradecraft, parse_document, schema_to_json
from jah.director import typed_value
from jah.envelope import END_OF_STREAM
from jah.windows import finalize, partial_schema_of

log = structlog.get_logger("hallelujah.commands")
COMMANDS = ("submit", "list", "describe", "cancel", "publish", "stream", "query", "debug", "checkpoint",
            "split", "merge", "congestion", "reload", "replicate")
UPDATES = {"split": updates.split_join, "merge": updates.merge_joins, "congestion": updates.congestion,
           "reload": updates.reload_dataset}
STREAM_CLOSE_WAIT = 10.0   # seconds a stream's end waits for its client to close the connection


class Commands:
    """One handler per command, over the congregation's catalog, logs and deployments."""

    def __init__(self, congregation: Any) -> None:
        self.c = congregation

    async def on_cmd_req(self, conn: Connection, fields: dict[str, Any]) -> None:
        command, rid = fields["command"], fields["id"]
        try:
            if command not in COMMANDS:
                raise NotFound(f'unknown command "{command}" (commands: {", ".join(COMMANDS)})')
            args = _arguments(command, fields["args"])
            if self.c.cluster is not None and not args.get(ROUTED):
                routed = await self._route(conn, fields, command, args)
                if routed is not None:
                    if routed:
                        await conn.send("cmdCfm", {"id": rid, "result": json.dumps(routed)})
                    return
            if self.c.cluster is not None:
                await self._not_elsewhere(command, args)
            if command in UPDATES:        # a change made by hand (congregation/updates.py)
                result = await UPDATES[command](self.c, args)
            elif command in ("publish", "stream", "replicate"):
                await getattr(self, f"cmd_{command}")(conn, rid, args)
                return
            else:
                result = await getattr(self, f"cmd_{command}")(args)
        except HallelujahError as exc:
            log.info("command_refused", command=command, error=str(exc).splitlines()[0],
                     path=getattr(exc, "path", "") or None)
            await conn.send("cmdCfm", {"id": rid, "error": error_fields(exc)})
            if command in ("publish", "stream", "replicate"):
                await _drained(conn)
            return
        except EOFError:                  # the client closed between frames: nobody to answer
            log.info("client_closed", command=command)
            return
        except Exception as exc:  # a bug of ours: the caller gets an answer, the log the traceback
            log.exception("command_failed", command=command)
            await conn.send("cmdCfm", {"id": rid, "error": {
                "kind": "HallelujahError", "message": f"{command} failed inside the congregation: "
                                                      f"{type(exc).__name__}: {exc}", "path": ""}})
            return
        await conn.send("cmdCfm", {"id": rid, "result": json.dumps(result)})

    async def _route(self, conn: Connection, fields: dict[str, Any], command: str,
                     args: dict[str, Any]) -> dict[str, Any] | None:
        """In a cluster: answer a command about another member's tradecraft through that member
        (its answer, or {} once a publish or stream was relayed); None to answer it here."""
        cluster = self.c.cluster
        view = await cluster.view()
        name = tradecraft_of(command, args)
        if command == "list":
            records = {n: kv.json() for n, kv in sorted(view.tradecrafts.items())}
            return {"tradecrafts": [{"name": n, "state": r["state"], "error": r["error"],
                                     "submitted_at": r["submitted_at"], "congregation": r.get("owner")}
                                    for n, r in records.items()]}
        if command == "describe":
            return await self._describe_cluster(view, args)
        if command == "submit" or not name:
            return None
        address = owner_address(view, name, cluster.name)
        if address is None:
            return None
        if command in ("publish", "stream"):
            await relay(self.c, conn, fields, args, address)
            return {}
        return await forward(self.c, address, command, args)

    async def _not_elsewhere(self, command: str, args: dict[str, Any]) -> None:
        """A command answered here about a tradecraft that does not run here, but that the
        cluster knows (sent here by a member whose view was a moment old, or as it moves): it
        is moving, and the client tries again, rather than be told it does not exist."""
        name = tradecraft_of(command, args)
        if command in ("submit", "cancel", "describe", "list") or not name or name in self.c.deployments:
            return
        if name in (await self.c.cluster.view()).tradecrafts:
            raise moving(name)

    async def _describe_cluster(self, view: Any, args: dict[str, Any]) -> dict[str, Any]:
        """describe across the members: each tradecraft as its owner describes it, with where
        it runs and its failovers, and the members."""
        only = args.get("tradecraft") or ""
        name = only.partition("/")[0]
        if name:
            owner_address(view, name, self.c.cluster.name)    # Unavailable while it moves
        here = await self._described(only)
        me = self.c.cluster.name
        # what runs here by the cluster's truth (a member fenced a moment ago may still hold one)
        out = [placed(view, t) for t in here["tradecrafts"]
               if getattr(view.owner(t["name"]), "name", None) == me]
        owners = {view.owner(n) for n in ([name] if name else view.tradecrafts)} - {None}
        for member in sorted((m for m in owners if m.name != me), key=lambda m: m.name):
            try:
                there = await forward(self.c, member.address, "describe", {"tradecraft": only})
            except HallelujahError as exc:
                if name:          # (a client asking for it tries again: it may be moving)
                    raise
                log.info("describe_member_failed", congregation=member.name, error=str(exc))
                continue
            out += [placed(view, t) for t in there["tradecrafts"]]
        if name and name in view.tradecrafts and not out:     # (its owner is between two states)
            raise moving(name)
        for n, kv in sorted(view.tradecrafts.items()):   # known to the cluster, running nowhere
            if (not name or n == name) and all(t["name"] != n for t in out):
                record = kv.json()
                out.append(placed(view, {"name": n, "state": "moving" if record["state"] in MOVES
                                         else record["state"], "error": record["error"],
                                         "submitted_at": record["submitted_at"], "analytics": [], "events": []}))
        return {**here, "tradecrafts": sorted(out, key=lambda t: t["name"]),
                **await members_of(self.c.cluster.etcd, view, me)}

    def _not_starting(self, name: str) -> None:
        """In a cluster, a tradecraft a member is taking over is moving: the client tries again
        (hallelujah/client.py) rather than be told it does not exist."""
        d = self.c.deployments.get(name)
        if self.c.cluster is not None and (name in self.c.starting or d is not None and d.state == "starting"):
            raise moving(name, f'starting on "{self.c.name}"')

    def _tradecraft(self, name: str) -> Tradecraft:
        self._not_starting(name)
        d = self.c.deployments.get(name)
        if d is None:
            raise NotFound(f'no tradecraft "{name}" (see `hallelujah list`)')
        return d.tc

    def _split_ref(self, ref: str) -> tuple[Tradecraft, str]:
        name, sep, stream = ref.partition("/")
        if not sep or not stream:
            raise NotFound(f'"{ref}" is not TRADECRAFT/ANALYTIC')
        tc = self._tradecraft(name)
        tc.analytic(stream)  # NotFound names what exists
        return tc, stream

    async def cmd_submit(self, args: dict[str, Any]) -> dict[str, Any]:
        tc = parse_document(args["document"], allowed=self.c.allowed)
        cluster = self.c.cluster
        if cluster is not None and not args.get(ROUTED):
            # any member takes the document; the least loaded member runs it
            view = await cluster.view()
            if not view.members:
                raise Unavailable("no live member of the cluster to run it (is etcd reachable?)")
            owner = view.least_loaded()
            await cluster.create(tc.name, tc.document, owner)
            if owner.name != cluster.name:
                log.info("tradecraft_placed", tradecraft=tc.name, congregation=owner.name)
                return await forward(self.c, owner.address, "submit", {"document": tc.document})
        return await self.start(tc)

    async def start(self, tc: Tradecraft, adopted: bool = False) -> dict[str, Any]:
        """Deploy a tradecraft here: submitted to us, or (`adopted`) taken over from a lost member."""
        cluster = self.c.cluster
        if cluster is not None and not await cluster.confirm(tc.name):
            raise Unavailable(f'tradecraft "{tc.name}" is not this congregation\'s to run any more')
        self.c.starting.add(tc.name)
        try:
            return await self._start(tc, adopted)
        finally:
            self.c.starting.discard(tc.name)

    async def _start(self, tc: Tradecraft, adopted: bool) -> dict[str, Any]:
        cluster = self.c.cluster
        async with self.c._lock:
            if tc.name in self.c.deployments or await self.c.catalog.tradecraft(tc.name):
                raise TradecraftError("tradecraft", f'a tradecraft named "{tc.name}" exists already '
                                      f'(cancel it first)')
            try:
                d = self.c.plan(tc)           # refuses what cannot run before anything is kept
                await self.c.catalog.add_tradecraft(tc.name, tc.document, [
                    {"name": a.name, "idx": a.index, "kind": a.kind, "output": int(a.output)}
                    for a in tc.analytics])
            except BaseException:
                if cluster is not None and not adopted:
                    with trio.CancelScope(shield=True):
                        await cluster.remove(tc.name)
                raise
            try:
                await self.c.launch(d)
                if cluster is not None:
                    self.c.replicate(d)
            except BaseException:
                # Leave nothing behind: a refused submit changes nothing.
                with trio.CancelScope(shield=True):
                    await self._forget(tc.name)
                    if cluster is not None and not adopted:
                        await cluster.remove(tc.name)
                raise
        assert d.plan is not None
        log.info("tradecraft_submitted", tradecraft=tc.name, analytics=len(tc.analytics), jahs=len(d.plan.jahs))
        retained = [name.split("/", 1)[1] for name in d.plan.logs]
        return {"tradecraft": tc.name, "analytics": [a.name for a in tc.analytics],
                "outputs": [a.name for a in tc.outputs()],
                "retained": [r for r in retained if not r.endswith(".rejected")],
                "rejected": [r for r in retained if r.endswith(".rejected")]}

    async def _forget(self, name: str, keep_copies: bool = False) -> None:
        """Stop a tradecraft here and delete all it kept here: deployment, logs, checkpoints, rows
        (but, with `keep_copies`, the copies of its input logs this member holds: a takeover)."""
        d = self.c.deployments.pop(name, None)
        self.c.stop_replication(name)
        if d is not None:
            d.state = "cancelled"
            await d.stop()
        copies = {copy for copy in self.c.copies if copy.startswith(f"{name}/")}
        await self.c.logs.delete(f"{name}/", frozenset(copies) if keep_copies else frozenset())
        for copy in copies:
            del self.c.copies[copy]
        await trio.to_thread.run_sync(functools.partial(
            shutil.rmtree, self.c.data_dir / "checkpoints" / name, ignore_errors=True))
        await self.c.catalog.delete_tradecraft(name)

    async def forget(self, name: str, keep_copies: bool = False) -> None:
        async with self.c._lock:
            await self._forget(name, keep_copies)

    async def cmd_list(self, args: dict[str, Any]) -> dict[str, Any]:
        rows = await self.c.catalog.tradecrafts()
        return {"tradecrafts": [{"name": r["name"], "state": r["state"], "error": r["error"],
                                 "submitted_at": r["submitted_at"]} for r in rows]}

    async def cmd_describe(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._described(args.get("tradecraft") or "")

    async def _described(self, only: str) -> dict[str, Any]:
        """describe here. In a cluster, a tradecraft whose deployment comes or goes (started,
        taken over, fenced) is left out while it does, and one asked for by name is moving."""
        from congregation.describe import describe
        name = only.partition("/")[0]
        self._not_starting(name)
        before = dict(self.c.deployments)
        info = await describe(self.c, only)
        if self.c.cluster is not None:
            # (the same deployment before and after: describe awaits, and one may come or go meanwhile)
            steady = [t for t in info["tradecrafts"] if before.get(t["name"]) is not None
                      and before.get(t["name"]) is self.c.deployments.get(t["name"])]
            if name and len(steady) < len(info["tradecrafts"]):
                raise moving(name)
            info["tradecrafts"] = steady
        return info

    async def cmd_debug(self, args: dict[str, Any]) -> dict[str, Any]:
        """What every process is doing (tasks, Jahs, datastreams): why a tradecraft is stuck."""
        from congregation.stall import dump_all
        name = args.get("tradecraft") or ""
        if name:
            self._tradecraft(name)          # NotFound names the tradecraft
        return {"dump": await dump_all(self.c)}

    async def cmd_checkpoint(self, args: dict[str, Any]) -> dict[str, Any]:
        """Take a checkpoint of a running tradecraft now, and say when it is complete."""
        from congregation.checkpoints import checkpoint_now
        name = str(args.get("tradecraft", ""))
        self._tradecraft(name)          # NotFound names the tradecraft
        done = await checkpoint_now(self.c, self.c.deployments[name])
        return {"tradecraft": name, "id": done.id, "seconds": round(done.seconds, 3), "bytes": done.bytes}

    async def cmd_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args["tradecraft"]
        cluster = self.c.cluster
        async with self.c._lock:
            if (name not in self.c.deployments and not await self.c.catalog.tradecraft(name)
                    and (cluster is None or await cluster.etcd.get(f"{TRADECRAFTS}{name}") is None)):
                raise NotFound(f'no tradecraft "{name}" (see `hallelujah list`)')
            await self._forget(name)
            if cluster is not None:
                await cluster.remove(name)
        log.info("tradecraft_cancelled", tradecraft=name)
        return {"cancelled": name}

    async def cmd_query(self, args: dict[str, Any]) -> dict[str, Any]:
        """Open windows of an aggregate: the partials its AGGREGATEs and MERGE hold, added up."""
        tc, name = self._split_ref(args["analytic"])
        a = tc.analytic(name)
        if a.kind != "aggregate" or "." in name:
            raise InvalidInput(f'"{args["analytic"]}" is a {a.kind}; query reads the open windows of an aggregate')
        group = args.get("group") or {}
        for key in group:
            if key not in a.spec.get("group", []):
                raise InvalidInput(f'--group {key}: "{key}" is not a group field of "{name}" '
                                   f'(it groups by: {", ".join(a.spec.get("group", [])) or "nothing"})')
        d = self.c.deployments[tc.name]
        jahs = [j for j in d.plan.jahs.values() if j.analytic == name and j.role in ("aggregate", "merge")]
        tables = []
        for jah in jahs if d.state == "running" else []:      # a finished aggregate has nothing open
            reply = await d.hosts[jah.host].request("queryReq", {"jah": jah.id})
            tables.append(pa.ipc.open_stream(pa.py_buffer(reply["rows"])).read_all())
        partial_schema = partial_schema_of(a.spec, a.schema)
        rows = finalize(a.spec, a.schema, partial_schema, [t.select(partial_schema.names) for t in tables])
        for key, value in group.items():
            rows = rows.filter(pc.equal(rows.column(key), pa.scalar(typed_value(value, a.schema.field(key).type),
                                                                   a.schema.field(key).type)))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows)
        return {"rows": sink.getvalue().to_pybytes().hex()}

    async def cmd_publish(self, conn: Connection, rid: int, args: dict[str, Any]) -> None:
        """Keep each batch in the stream's input log (validated, once, synced) before acknowledging it."""
        await publish(self.c, conn, rid, args, *self._split_ref(str(args.get("stream", ""))))

    async def cmd_replicate(self, conn: Connection, rid: int, args: dict[str, Any]) -> None:
        """Keep a copy of another member's input log (a member of a cluster only)."""
        if self.c.cluster is None:
            raise InvalidInput("replicate: this congregation is not a member of a cluster")
        await keep_copy(self.c, conn, rid, args)

    async def cmd_stream(self, conn: Connection, rid: int, args: dict[str, Any]) -> None:
        """Send the retained output from the start (or from now), following it until it ends."""
        tc, ref = self._split_ref(args["analytic"])
        name = log_name(tc.name, ref)
        info = await self.c.logs.info(name)
        if info is None:
            raise NotFound(f'"{args["analytic"]}" is read by other analytics and not retained; '
                           f'mark it "output": true to stream it')
        schema = schema_of(info["schema"])
        await conn.send("cmdCfm", {"id": rid, "result": json.dumps(
            {"schema": schema_to_json(schema)}), "schema": info["schema"]})
        start = 0 if args.get("from_start") else info["next_seq"]
        skip = args.get("skip", 0)
        if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
            raise InvalidInput(f"stream: skip {skip!r}: must be a whole number of rows, 0 or more")
        with collapsed():
            async with trio.open_nursery() as nursery:
                sender = open_sender(conn, args["analytic"])
                nursery.start_soon(_until_closed, nursery.cancel_scope, _credits_of, sender)
                await self._send_log(sender, name, schema, start, args.get("limit"), skip)
                # The client closes once it has read the end; until then its credits are still
                # read, so the close is clean: closing on credits unread resets the connection
                # under the client, which may then lose the last batches or fail to send.
                nursery.cancel_scope.deadline = trio.current_time() + STREAM_CLOSE_WAIT

    async def _send_log(self, sender: DataSender, name: str, schema: pa.Schema, start: int,
                        limit: int | None, skip: int = 0) -> None:
        """Send a log's batches (raw, as stored) from `start`, less its first `skip` rows (a
        client resuming elsewhere), at most `limit` rows, then the end."""
        sent = 0
        async for entry, body in self.c.logs.follow_raw(name, start):
            rows = entry.rows
            if skip:
                if skip >= rows:
                    skip -= rows
                    continue
                rows -= skip
                body = open_batch(pa.py_buffer(body), schema).slice(skip, rows).serialize()
                skip = 0
            if limit is not None and sent + rows > limit:
                rows = limit - sent
                body = open_batch(pa.py_buffer(body), schema).slice(0, rows).serialize()
            await sender.send(body, rows=rows, origin=entry.seq)
            sent += rows
            if limit is not None and sent >= limit:
                break
        await sender.send(marker=END_OF_STREAM)


async def _credits_of(sender: DataSender) -> None:
    """A stream client sends credits, and nothing else, until it closes."""
    other = await sender.read_grants()
    if other is not None:
        raise InvalidInput(f"stream {sender.stream}: unexpected {other[0]} from the client")


def _arguments(command: str, text: str) -> dict[str, Any]:
    try:
        args = json.loads(text or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise InvalidInput(f"{command}: its arguments are not a JSON object")
    return args


async def _drained(conn: Connection) -> None:
    """After a refused publish or stream: read and drop what the client still sends (batches it
    had in flight, credits) until it closes, at most STREAM_CLOSE_WAIT. Closing on unread bytes
    would reset the connection, and the client might lose the error it is about to read."""
    with trio.move_on_after(STREAM_CLOSE_WAIT):
        try:
            while await conn.stream.receive_some(1 << 16):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def _until_closed(scope: trio.CancelScope, fn: Any, *args: Any) -> None:
    """Run `fn` until the client closes; then nothing more is sent (a client that stops reading
    early must not leave its stream following the log until another batch comes)."""
    try:
        await fn(*args)
    except (EOFError, HallelujahError):
        pass
    scope.cancel()

