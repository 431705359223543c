"""The client library: open_database() and Database.submit/publish/stream/describe/cancel.

Each call opens one connection to the first congregation that answers, sends one cmdReq and
reads its cmdCfm; publish and stream then carry batches on that connection, paced by credits.
"""
from __future__ import annotations

import itertools
import json
import os
import ssl
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence, cast

import pyarrow as pa
import trio

from hallelujah.conform import check_fields, conform, type_name
from hallelujah.datastream import open_receiver, open_sender
from hallelujah.errors import (HallelujahError, InvalidInput, Moving, NotFound, SchemaMismatch, Unavailable, collapsed,
                               from_wire)
from hallelujah.frames import Connection, connect, schema_bytes, schema_of

DEFAULT_ADDRESS = "127.0.0.1:7077"
PUBLISH_BATCH_ROWS = 65536
STREAM_WINDOW = 8                 # batches of a `stream` in flight towards this client
RETRY_FOR = 20.0                  # seconds a command is tried again on the members of a cluster
RETRY_PAUSE = (0.1, 1.0)          # the first and the longest pause between two tries
_ids = itertools.count(1)
Rows = list[dict[str, Any]] | dict[str, Sequence[Any]]     # rows as Python values


def addresses_from(at: Sequence[str] | str | None) -> list[str]:
    """Addresses given, else $HALLELUJAH_AT (comma-separated), else 127.0.0.1:7077."""
    if isinstance(at, str):
        at = [at]
    if not at:
        at = [a for a in os.environ.get("HALLELUJAH_AT", "").split(",") if a] or [DEFAULT_ADDRESS]
    return [part for a in at for part in a.split(",") if part]


def checked_address(address: str) -> str:
    """`address` if it is HOST:PORT (or a Unix socket path), else InvalidInput naming it."""
    if address.startswith(("/", "\0")):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f'address "{address}": not HOST:PORT (for example 127.0.0.1:7077)')
    return address


def tls_from(ca: str | None, token: str | None) -> tuple[str | None, str | None]:
    """The CA file and token given, else $HALLELUJAH_CA and $HALLELUJAH_TOKEN (None when unset)."""
    return ca or os.environ.get("HALLELUJAH_CA") or None, token or os.environ.get("HALLELUJAH_TOKEN") or None


def tls_context(ca: str | Path) -> ssl.SSLContext:
    """A client's TLS context: TLS ≥ 1.2, a congregation's certificate checked against the cluster
    CA `ca` (ca.pem) and the address dialled; InvalidInput naming the file if it is unusable."""
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"--ca {ca}: not a readable PEM certificate ({getattr(exc, 'strerror', None) or exc})") \
            from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Database:
    """A handle on a Hallelujah database through any of its congregations.

    `ca` (the cluster CA's ca.pem) makes every TCP connection TLS, the congregation's certificate
    checked against it; `token` (`hallelujah token create`) goes with every command, and is what
    a congregation running TLS admits a client by."""

    def __init__(self, addresses: Sequence[str], *, ca: str | Path | None = None, token: str | None = None) -> None:
        if isinstance(addresses, str):
            addresses = [addresses]
        self.addresses = [checked_address(a) for a in addresses]
        self.tls = tls_context(ca) if ca else None
        self.token = token or ""

    async def _open(self) -> Connection:
        errors = []
        for address in self.addresses:
            try:
                return await connect(address, tls=self.tls)
            except Unavailable as exc:
                errors.append(str(exc))
        raise Unavailable("; ".join(errors))

    def _retries(self) -> "_Retries":
        return _Retries(len(self.addresses) > 1)

    def _next(self) -> None:
        """Try the next member first from now on (the one that failed goes last)."""
        self.addresses = self.addresses[1:] + self.addresses[:1]

    async def _request(self, conn: Connection, command: str,
                       args: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        rid = next(_ids)
        await conn.send("cmdReq", {"id": rid, "command": command, "args": json.dumps(args), "token": self.token})
        while True:
            try:
                kind, fields, _ = await conn.receive()
            except EOFError:
                hint = "" if self.tls else " (if it runs TLS: give --ca and --token)"
                raise Unavailable(f"{conn.peer} closed the connection during {command}{hint}") from None
            # id 0: refused before the request was read (over a cap, idle too long)
            if kind == "cmdCfm" and fields["id"] in (rid, 0):
                break
        if fields.get("error"):
            err = fields["error"]
            raise from_wire(err["kind"], err["message"], err.get("path", ""))
        return json.loads(fields["result"]), fields.get("schema", b"")

    async def command(self, command: str, **args: Any) -> dict[str, Any]:
        """Send one command and return its JSON result (raises the congregation's error).

        Given several members of a cluster, one that fails (or that answers that the tradecraft
        is moving between members) is left for the next, for up to RETRY_FOR seconds. A submit is
        tried again only if it could not be sent at all: a lost answer may hide a kept document.
        """
        retries = self._retries()
        while True:
            sent = False
            try:
                conn = await self._open()
                try:
                    sent = True
                    result, _ = await self._request(conn, command, args)
                    return result
                finally:
                    await conn.aclose()
            except Unavailable as exc:
                if command == "submit" and sent or not await retries.again(exc):
                    raise
                self._next()

    async def submit(self, document: dict[str, Any] | str, base_dir: str | Path | None = None) -> dict[str, Any]:
        """Validate here (so relative source paths resolve against `base_dir` or the cwd), then submit."""
        from hallelujah.tradecraft import parse_document
        tc = parse_document(document, base_dir)
        return await self.command("submit", document=tc.document)

    async def list(self) -> list[dict[str, Any]]:
        return (await self.command("list"))["tradecrafts"]

    async def describe(self, tradecraft: str = "") -> dict[str, Any]:
        """Tradecrafts with their analytics and Jahs ("NAME" or "NAME/ANALYTIC" for one);
        NotFound, naming what exists, when there is no such tradecraft or analytic."""
        info = await self.command("describe", tradecraft=tradecraft)
        name, _, analytic = tradecraft.partition("/")
        if name and not info["tradecrafts"]:
            names = [t["name"] for t in (await self.command("describe"))["tradecrafts"]]
            raise NotFound(f'no tradecraft "{name}" (there are: {", ".join(names) or "none"})')
        if analytic and not info["tradecrafts"][0]["analytics"]:
            whole = await self.command("describe", tradecraft=name)
            names = [a["name"] for t in whole["tradecrafts"] for a in t["analytics"]]
            raise NotFound(f'tradecraft "{name}" has no analytic "{analytic}" '
                           f'(it has: {", ".join(names) or "none running"})')
        return info

    async def cancel(self, tradecraft: str) -> dict[str, Any]:
        return await self.command("cancel", tradecraft=tradecraft)

    async def checkpoint(self, tradecraft: str) -> dict[str, Any]:
        """Take a checkpoint of a running tradecraft now; its id, duration and size once complete."""
        return await self.command("checkpoint", tradecraft=tradecraft)

    async def debug(self, tradecraft: str = "") -> str:
        """What every process of the congregation is doing: its trio tasks, each Jah and what it
        awaits, each datastream's credits, sequence numbers and queues (`hallelujah debug`)."""
        return str((await self.command("debug", tradecraft=tradecraft))["dump"])

    async def query(self, analytic: str, group: dict[str, Any] | None = None) -> pa.Table:
        """The current values of an aggregate's open windows ("TRADECRAFT/ANALYTIC"), computed
        from the rows consumed so far, without waiting for the windows to close; `group`
        {field: value} keeps the rows of one group."""
        result = await self.command("query", analytic=analytic, group=group or {})
        return pa.ipc.open_stream(pa.py_buffer(bytes.fromhex(result["rows"]))).read_all()

    async def stream_schema(self, stream: str) -> pa.Schema:
        """The schema of "TRADECRAFT/STREAM" (NotFound naming what exists when there is none)."""
        from hallelujah.tradecraft import schema_from_json
        analytic = (await self.describe(stream))["tradecrafts"][0]["analytics"][0]
        return schema_from_json(analytic["schema"], analytic["name"])

    async def publish(self, stream: str, data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch] | Rows,
                      *, end: bool = False, schema: pa.Schema | None = None,
                      progress: Callable[[int], None] | None = None,
                      publisher_id: str | None = None, first_seq: int = 0) -> int:
        """Append rows to a pushed stream; returns the rows acknowledged (each batch is in the
        stream's input log, synced, before it is acknowledged).

        A schema that does not match the stream is refused (SchemaMismatch) before any row is
        sent, and a batch that is not valid data of that schema before it is kept. A table or a
        batch, rows as Python values (a list of dicts, a dict of columns) or anything with
        `__arrow_c_stream__` (pandas, polars) are first cast safely to the stream's schema (`schema`
        when given, else asked of the congregation: an int into a float64 field, never a float
        into an int64 one), naming the field that cannot be. `end=True`
        closes the stream afterwards. `progress(rows_acknowledged)` is called as
        acknowledgements arrive.

        Each batch is numbered (from `first_seq`) under a publisher id, and the congregation keeps
        a publisher's batch once: publishing the same data again with the same `publisher_id`
        (after a lost connection, a killed congregation) keeps only what it does not have yet.
        Without one, each call is a publisher of its own. Batches of a table are cut the same
        way every time; a publisher that sends more data later continues its numbers with
        `first_seq` (a gap is refused).
        """
        if first_seq < 0:
            raise InvalidInput(f"publish: first_seq {first_seq} is negative")
        if _is_rows(data):
            schema = schema or await self.stream_schema(stream)
            data = conform(table_of(cast(Rows, data), schema), schema)
        elif isinstance(data, (pa.Table, pa.RecordBatch)):
            from hallelujah.conform import publishable
            schema = schema or await self.stream_schema(stream)
            data = publishable(data, schema)
        batches = _batches(data)
        if schema is None:
            first = next(batches, None)
            if first is None:
                raise HallelujahError("publish: no data given")
            schema = first.schema
            batches = itertools.chain([first], batches)
        # A table (or batch) can be sent again: a publish that breaks (its member lost) goes on
        # at another member under the same publisher id, which keeps each batch once.
        replayable = isinstance(data, (pa.Table, pa.RecordBatch))
        publisher = f"client-{uuid.uuid4().hex}" if publisher_id is None else publisher_id
        retries = self._retries()
        while True:
            try:
                conn = await self._open()
                try:
                    reply, _ = await self._request(conn, "publish", {
                        "stream": stream, "schema": schema_bytes(schema).hex(), "end": end,
                        "publisher": publisher})
                    return await _send_batches(conn, stream, batches, reply["credits"], progress, first_seq,
                                               reply.get("committed", -1))
                finally:
                    await conn.aclose()
            except Unavailable as exc:
                if not replayable or not await retries.again(exc):
                    raise
                self._next()
                batches = _batches(data)

    @asynccontextmanager
    async def stream(self, analytic: str, *, from_start: bool = False,
                     limit: int | None = None) -> AsyncIterator[AsyncIterator[pa.RecordBatch]]:
        """Batches of an analytic's retained output: from the start, or from now; the iterator
        ends when the output ends (or after `limit` rows)."""
        async with self._stream(analytic, from_start, limit) as (_, batches):
            yield batches

    @asynccontextmanager
    async def _stream(self, analytic: str, from_start: bool,
                      limit: int | None) -> AsyncIterator[tuple[pa.Schema, AsyncGenerator[pa.RecordBatch, None]]]:
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidInput(f"limit {limit!r}: must be a whole number, 0 or more")
        conn, schema = await self._open_stream(analytic, from_start, limit, 0)
        batches = self._resuming(conn, analytic, schema, from_start, limit)
        try:
            yield schema, batches
        finally:
            await batches.aclose()     # also when the caller stops early
            await conn.aclose()        # (a generator never started does not close it)

    async def _open_stream(self, analytic: str, from_start: bool, limit: int | None,
                           skip: int) -> tuple[Connection, pa.Schema]:
        retries = self._retries()
        while True:
            try:
                conn = await self._open()
            except Unavailable as exc:
                if not await retries.again(exc):
                    raise
                self._next()
                continue
            try:
                args = {"analytic": analytic, "from_start": from_start, "limit": limit}
                _, schema_data = await self._request(conn, "stream", {**args, "skip": skip} if skip else args)
                return conn, schema_of(schema_data)
            except BaseException as exc:
                await conn.aclose()
                if not isinstance(exc, Unavailable) or not await retries.again(exc):
                    raise
                self._next()

    async def _resuming(self, conn: Connection, analytic: str, schema: pa.Schema, from_start: bool,
                        limit: int | None) -> AsyncGenerator[pa.RecordBatch, None]:
        """The batches of a stream; a stream read from the start that breaks (its member lost)
        goes on at another member after the rows already read, for up to RETRY_FOR seconds."""
        got = 0
        retries = self._retries()
        try:
            while True:
                batches = _receive_batches(conn, analytic, schema)
                try:
                    async for batch in batches:
                        got += batch.num_rows
                        yield batch
                    return
                except Unavailable as exc:
                    if not from_start or not retryable(exc) or not await retries.again(exc):
                        raise
                finally:
                    await batches.aclose()
                await conn.aclose()
                self._next()
                left = None if limit is None else limit - got
                conn, again = await self._open_stream(analytic, True, left, got)
                if again != schema:
                    raise Unavailable(f"stream {analytic}: its schema changed while resuming elsewhere")
        finally:
            await conn.aclose()

    async def read(self, analytic: str, *, from_start: bool = True, limit: int | None = None,
                   follow: bool = True) -> pa.Table:
        """The retained output as one table. `follow=True` waits for the output to end (or for
        `limit` rows); `follow=False` returns the rows it holds now, at once."""
        if not follow:
            held = await self._retained_rows(analytic)
            limit = held if limit is None else min(limit, held)
            if not from_start:
                limit = 0
        async with self._stream(analytic, from_start, limit) as (schema, batches):
            got = [b async for b in batches] if limit != 0 else []
        return pa.Table.from_batches(got, schema=schema)

    async def _retained_rows(self, ref: str) -> int:
        """How many rows the retained output "TRADECRAFT/LOG" holds now."""
        name, _, log = ref.partition("/")
        for tc in (await self.describe(name))["tradecrafts"]:
            for a in tc["analytics"]:
                if log in a["retained"]:
                    return int(a["retained"][log]["rows"])
        return 0       # (the stream call names what is wrong)


def _is_rows(data: Any) -> bool:
    """Rows to make Arrow of: a dict of columns, a list of dicts, an Arrow C stream that is not
    already a table (a list of RecordBatches is batches)."""
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return False
    return (isinstance(data, dict) or hasattr(data, "__arrow_c_stream__")
            or isinstance(data, (list, tuple)) and bool(data) and isinstance(data[0], dict))


def table_of(data: Rows, schema: pa.Schema) -> pa.Table:
    """Rows given as a list of dicts, a dict of columns or an Arrow C stream, as a table with the
    fields of `schema` (their types still to conform); SchemaMismatch naming a field that
    cannot be read, InvalidInput for what is no rows at all."""
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data).read_all()
    if isinstance(data, dict):
        columns = data
    else:
        bad = next((i for i, row in enumerate(data) if not isinstance(row, dict)), None)
        if bad is not None:
            raise InvalidInput(f"publish: row {bad} is a {type(data[bad]).__name__}, not a dict of fields")
        names = dict.fromkeys(name for row in data for name in row)
        columns = {name: [row.get(name) for row in data] for name in names}
    check_fields([str(name) for name in columns], schema)
    arrays = {}
    for field in schema:
        values = columns[field.name]
        try:
            arrays[field.name] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            raise SchemaMismatch(f'field "{field.name}": expected {type_name(field.type)}, got values '
                                 f'that are not all of one type') from None
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise InvalidInput(f"publish: columns of different lengths ({shown})")
    return pa.table(arrays)


def _batches(data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        return iter(data.to_batches(max_chunksize=PUBLISH_BATCH_ROWS))
    return iter(data)


async def _send_batches(conn: Connection, stream: str, batches: Iterable[pa.RecordBatch], credits: int,
                        progress: Callable[[int], None] | None, first_seq: int = 0,
                        committed: int = -1) -> int:
    """Send with at most `credits` batches unacknowledged; each credit back means a batch is in
    the log. A batch's number under its publisher travels as its origin; those up to `committed`
    are in the log already (a retry): counted, not sent."""
    sender = open_sender(conn, stream, credits=credits)
    skipped = 0

    async def read_acks() -> None:
        reply = await sender.read_grants(None if progress is None else lambda rows: progress(skipped + rows))
        if reply is None:
            raise Unavailable(f"{conn.peer} closed the connection during publish "
                              f"({skipped + sender.statistics().rows_acknowledged:,} rows acknowledged)")
        kind, fields = reply
        if kind != "cmdCfm":
            raise Unavailable(f"{conn.peer} sent {kind} during publish")
        if fields.get("error"):
            err = fields["error"]
            raise from_wire(err["kind"], err["message"], err.get("path", ""))

    async def send_all() -> None:
        nonlocal skipped
        for seq, batch in enumerate(batches, start=first_seq):
            if seq <= committed:
                skipped += batch.num_rows
                if progress is not None:
                    progress(skipped)
                continue
            await sender.send_batch(batch, origin=seq)
        await sender.send(marker="endOfStream")

    with collapsed():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_acks)
            await send_all()
    return skipped + sender.statistics().rows_acknowledged


async def _receive_batches(conn: Connection, stream: str,
                           schema: pa.Schema) -> AsyncGenerator[pa.RecordBatch, None]:
    receiver = open_receiver(conn, stream, schema, window=STREAM_WINDOW)
    await receiver.start()
    while True:
        try:
            msg = await receiver.receive()
        except EOFError:
            raise Unavailable(f"{conn.peer} closed the connection during a stream") from None
        if msg.marker == "endOfStream":
            return
        if msg.batch is not None:
            yield msg.batch
        await receiver.release()


def retryable(exc: HallelujahError) -> bool:
    """A member gone or a tradecraft moving; not a broken datastream, nor a full disk."""
    return type(exc) in (Unavailable, Moving)


class _Retries:
    """How long a command goes on trying: among several members, RETRY_FOR seconds with growing
    pauses; with one address, only while its congregation says the tradecraft is moving (an
    answer that comes from the congregation, not a connection that failed)."""

    def __init__(self, several: bool) -> None:
        self.several = several
        self.deadline: float | None = None
        self.pause = RETRY_PAUSE[0]

    async def again(self, exc: HallelujahError) -> bool:
        if not retryable(exc) or not (self.several or isinstance(exc, Moving)):
            return False
        now = trio.current_time()
        if self.deadline is None:
            self.deadline = now + RETRY_FOR
        if now + self.pause > self.deadline:
            return False
        await trio.sleep(self.pause)
        self.pause = min(self.pause * 2, RETRY_PAUSE[1])
        return True


@asynccontextmanager
async def open_database(addresses: Sequence[str] | str | None = None, *, ca: str | Path | None = None,
                        token: str | None = None) -> AsyncIterator[Database]:
    """A Database over the given congregations (or $HALLELUJAH_AT, or 127.0.0.1:7077); over TLS
    with `ca` and `token` (or $HALLELUJAH_CA, $HALLELUJAH_TOKEN) when given."""
    ca, token = tls_from(str(ca) if ca else None, token)
    yield Database(addresses_from(addresses), ca=ca, token=token)
