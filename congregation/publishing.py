"""`publish`: a client's batches into a pushed stream's input log, each kept once.

Every body is validated in full against the stream's exact schema before it is kept or
acknowledged: a corrupt body (string offsets out of order, say) would crash every Jah that reads
it, again on every restart. Each batch carries its publisher's sequence number (the publisher
is an id the client library makes per publish, or one the caller passes): the congregation
keeps a publisher's batch once, acknowledges a repeat without keeping it again (a retry after a
lost acknowledgement), and refuses a gap. A refused batch ends the publish with its error on the
same connection, which then closes; the batches acknowledged before it stay.
"""
from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pyarrow as pa
import structlog
import trio

from congregation.hallelu import log_name, published
from congregation.space import NoSpace
from hallelujah.checked import checked_batch
from hallelujah.conform import type_name
from hallelujah.datastream import open_receiver
from hallelujah.errors import HallelujahError, InvalidInput, NotFound, SchemaMismatch, collapsed, moving
from hallelujah.frames import Connection, schema_bytes, schema_of
from hallelujah.tradecraft import Tradecraft
from jah.envelope import END_OF_STREAM, NONE
from jah.streams import CREDITS

log = structlog.get_logger("hallelujah.publishing")

PUBLISHER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


async def publish(c: Any, conn: Connection, rid: int, args: dict[str, Any], tc: Tradecraft,
                  stream: str) -> None:
    """Answer a publish: the stream's schema and credits, then each batch kept (synced) before
    its acknowledgement, then the rows kept."""
    ref, a = f"{tc.name}/{stream}", tc.analytic(stream)
    if not published(a) or "." in stream:
        raise SchemaMismatch(f'"{ref}" is not a stream that takes publish '
                             f'(it is a {a.kind}{" with a source file" if a.kind == "stream" else ""})')
    check_schema(ref, a.schema, _their_schema(args.get("schema")))
    publisher = _publisher(args.get("publisher"))
    name = log_name(tc.name, stream)
    copy = await _copied(c, tc, name, ref)
    committed = await c.logs.committed(name, publisher)
    if await _ended(c, name, ref) and committed < 0:
        raise InvalidInput(f"{ref}: the stream has ended (a publish with end closed it) "
                           f"and takes no more rows")
    # `committed`: the publisher's last batch kept, which a retry need not send again
    await conn.send("cmdCfm", {"id": rid, "result": json.dumps({"credits": CREDITS, "committed": committed}),
                               "schema": schema_bytes(a.schema)})
    rows = batches = repeated = 0
    # Each credit back is an acknowledgement: the batch is kept and synced.
    receiver = open_receiver(conn, ref, None, window=CREDITS, granted=CREDITS, coalesce=False)
    checked_send, checked = trio.open_memory_channel[tuple[int, Any, int] | HallelujahError](0)

    async def check() -> None:
        """The next batch is read and validated while the one before it is being synced; a
        batch refused comes in its turn, after those before it are kept and acknowledged."""
        async with checked_send:
            while True:
                msg = await receiver.receive()
                seq, marker, body = msg.origin, msg.marker, msg.body
                if marker == END_OF_STREAM:
                    return
                try:
                    if marker != NONE:
                        raise InvalidInput(f"{ref}: batch {seq}: a publish carries rows, not {marker} markers")
                    if seq < 0:
                        raise InvalidInput(f"{ref}: message {msg.seq}: batch number {seq} is negative")
                    n = 0 if body is None else \
                        (await trio.to_thread.run_sync(checked_batch, ref, seq, body, a.schema)).num_rows
                except HallelujahError as refused:
                    await checked_send.send(refused)
                    return
                await checked_send.send((seq, body, n))

    async def keep() -> None:
        nonlocal rows, batches, repeated
        async for item in checked:
            if isinstance(item, HallelujahError):
                raise item
            seq, body, n = item
            if copy is not None and tc.name not in c.deployments:
                # fenced or taken over while this publish went on: the client tries another member
                raise moving(tc.name, f"batch {seq} of {ref} was not kept here")
            try:
                kept = await c.logs.publish(name, publisher, seq, body, n)
            except NoSpace as exc:
                raise NoSpace(f"{ref}: batch {seq} refused: {exc}") from None
            if kept is None:
                repeated += 1
            else:
                rows, batches = rows + n, batches + 1
                if copy is not None and kept >= 0:
                    await copy.kept(kept)     # in a cluster: synced at another member too
            await receiver.release()

    with collapsed():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(check)
            await keep()
    if args.get("end") and not await _ended(c, name, ref):
        await c.logs.end(name, wait_for_space=False)
        d = c.deployments.get(tc.name)
        if d is not None and await d.all_ended():
            await c._finish(d)
    if args.get("end") and copy is not None:
        await copy.ended()           # the end is on two members before the publisher hears of it
    log.info("published", stream=ref, publisher=publisher, rows=rows, batches=batches, repeated=repeated,
             end=bool(args.get("end")))
    await conn.send("cmdCfm", {"id": rid, "result": json.dumps(
        {"rows": rows, "batches": batches, "repeated": repeated})})


async def _copied(c: Any, tc: Tradecraft, name: str, ref: str) -> Any:
    """In a cluster: the copy of this input log at another member, once it has everything kept
    here (so what a publisher is told is kept is on two members); None for a congregation alone.
    The copy is taken now: if the tradecraft stops here meanwhile, waiting on it fails (it never
    looks as if there were no copy to wait for)."""
    if getattr(c, "cluster", None) is None:
        return None
    copy = c.shippers.get(name)
    if copy is None or tc.name not in c.deployments:
        raise moving(tc.name)
    info = await c.logs.info(name)
    if info is not None and info["next_seq"]:
        await copy.kept(info["next_seq"] - 1)
    return copy


def check_schema(stream: str, ours: pa.Schema, theirs: pa.Schema) -> None:
    """Refuse a publish whose fields or types differ from the stream's, naming the first."""
    for f in ours:
        if f.name not in theirs.names:
            raise SchemaMismatch(f'{stream}: field "{f.name}" ({type_name(f.type)}) is missing from the data')
        if theirs.field(f.name).type != f.type:
            raise SchemaMismatch(f'{stream}: field "{f.name}": expected {type_name(f.type)}, '
                                 f'got {type_name(theirs.field(f.name).type)}')
    extra = [n for n in theirs.names if n not in ours.names]
    if extra or theirs.names != ours.names:
        raise SchemaMismatch(f'{stream}: unexpected fields {extra} (the stream has: '
                             f'{", ".join(ours.names)})' if extra else
                             f'{stream}: fields in the wrong order (expected {", ".join(ours.names)})')


async def _ended(c: Any, name: str, ref: str) -> bool:
    info = await c.logs.info(name)
    if info is None:
        raise NotFound(f'"{ref}" has no input log (was its tradecraft cancelled?)')
    return bool(info["ended"])


def _their_schema(text: Any) -> pa.Schema:
    try:
        return schema_of(bytes.fromhex(text))
    except (TypeError, ValueError, pa.ArrowException, OSError):
        raise InvalidInput('publish: "schema" is not an Arrow IPC schema in hex') from None


def _publisher(value: Any) -> str:
    """The caller's publisher id, or one for this connection alone (its batches are still
    checked for order, though no retry can name it)."""
    if value is None:
        return f"connection-{uuid.uuid4().hex}"
    if not isinstance(value, str) or not PUBLISHER_ID.fullmatch(value):
        raise InvalidInput(f"publish: publisher id {str(value)[:40]!r} is not 1-128 letters, digits "
                           f"and _.:- (starting with a letter or digit)")
    return value
