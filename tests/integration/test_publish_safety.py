"""publish against hostile and unlucky clients, through real daemons and real sockets.

A corrupt body is refused before it is acknowledged or kept; a publish after the stream's end is
refused; a publish retried after a lost acknowledgement (a SIGKILLed congregation) keeps each
row once; a full disk refuses publishes, keeps reads, and carries on once space is freed.
Every output is compared with a pyarrow reference computed here.
"""
from __future__ import annotations

import json
import socket
import struct
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import trio

from congregation.segments import LogStore
from hallelujah.errors import InvalidInput, Unavailable
from hallelujah.frames import decode, encode, schema_bytes
from tests.integration.helpers import assert_rows_equal, read, wait_state
from tests.integration.test_durability import PUSHED, payments, reference
from tests.small_disk import fill, small_disk  # noqa: F401 (a fixture)

DOCUMENT = PUSHED     # pay/payments (id, amount, user) -> pay/large, rows of amount > 10 with cents
SCHEMA = pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("user", pa.string())])
RAW_TIMEOUT = 10.0


# --- a raw client: frames built with hallelujah.frames.encode, nothing of the client library ---

class RawClient:
    """A blocking socket speaking the wire protocol by hand, as a hostile client would."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=RAW_TIMEOUT)
        self.buf = b""
        self.wire = 0            # the next message's sequence number on this datastream

    def send(self, kind: str, fields: dict, body: bytes = b"") -> None:
        self.sock.sendall(encode(kind, fields) + body)

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the congregation closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def receive(self) -> tuple[str, dict]:
        (size,) = struct.unpack("<I", self._exactly(4))
        kind, fields = decode(self._exactly(size))
        if kind == "dataReq" and fields["bodyLength"]:
            self._exactly(fields["bodyLength"])
        return kind, fields

    def publish_start(self, stream: str, publisher: str) -> dict:
        self.send("cmdReq", {"id": 1, "command": "publish", "args": json.dumps(
            {"stream": stream, "schema": schema_bytes(SCHEMA).hex(), "end": False, "publisher": publisher})})
        kind, fields = self.receive()
        assert kind == "cmdCfm" and not fields.get("error"), fields
        return fields

    def send_batch(self, number: int, body: bytes, rows: int, seq: int | None = None) -> None:
        """Batch `number` of the publisher (its origin), as the next message on the wire
        (or as message `seq`, to break the datastream's sequence)."""
        self.send("dataReq", {"seq": self.wire if seq is None else seq, "origin": number, "source": "",
                              "marker": "none", "markerValue": 0, "bodyLength": len(body), "rows": rows}, body)
        self.wire += 1

    def closes_cleanly(self) -> bool:
        """After its error, the congregation closes once we have: an orderly end, not a reset."""
        self.sock.shutdown(socket.SHUT_WR)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return False
        finally:
            self.sock.close()
        return True


def body_of(table: pa.Table) -> bytes:
    return table.combine_chunks().to_batches()[0].serialize().to_pybytes()


def offsets_overwritten(table: pa.Table) -> bytes:
    """A valid body whose `user` string offsets are made non-monotonic (slot 1 far past the data)."""
    body = bytearray(body_of(table))
    users = table.column("user").combine_chunks()
    offsets = np.frombuffer(users.buffers()[1], dtype=np.int32)[:users.offset + len(users) + 1]
    at = body.find(offsets.tobytes())
    assert at > 0, "the offsets buffer is in the body"
    body[at + 4:at + 8] = struct.pack("<i", 1 << 30)
    return bytes(body)


def int32_amounts(table: pa.Table) -> bytes:
    """A well-formed body of another schema: `amount` as int32 where the stream has float64."""
    other = table.set_column(1, "amount", pc.cast(pc.floor(table["amount"]), pa.int32()))
    return body_of(other)


CORRUPT = {
    "string offsets not monotonic": offsets_overwritten,
    "body cut short": lambda t: body_of(t)[:len(body_of(t)) // 2],
    "another type's layout": int32_amounts,
    "not an Arrow message": lambda t: b"\xff" * 64,
}


def refuse_each(address: str, good: pa.Table) -> list[str]:
    """Per corrupt body, on a raw connection of its own: one good batch (acknowledged), then the
    corrupt one, which must be refused with the connection closed cleanly; then publishes whose
    arguments are malformed. The refusals' messages."""
    refused = []
    for i, (what, make) in enumerate(CORRUPT.items()):
        raw = RawClient(address)
        raw.publish_start("pay/payments", f"raw-{i}")
        raw.send_batch(0, body_of(good.slice(i * 100, 100)), 100)
        assert raw.receive() == ("dataCfm", {"credits": 1}), what
        raw.send_batch(1, make(payments(10_000, 50)), 50)
        kind, fields = raw.receive()
        assert kind == "cmdCfm" and fields.get("error"), f"{what}: acknowledged: {fields}"
        error = fields["error"]
        assert error["kind"] in ("SchemaMismatch", "InvalidInput"), (what, error)
        assert "pay/payments" in error["message"] and "batch 1" in error["message"], (what, error)
        assert raw.closes_cleanly(), f"{what}: the connection was reset, not closed"
        refused.append(error["message"])
    for args in ("[1, 2]", "{not json", json.dumps({"stream": "pay/payments", "schema": "zz"})):
        raw = RawClient(address)
        raw.send("cmdReq", {"id": 7, "command": "publish", "args": args})
        kind, fields = raw.receive()
        assert kind == "cmdCfm" and fields["error"]["kind"] == "InvalidInput", (args, fields)
        assert raw.closes_cleanly(), args
        refused.append(fields["error"]["message"])
    return refused


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


async def test_a_corrupt_body_is_refused_never_kept_and_the_data_dir_still_starts(daemon_factory):
    daemon = daemon_factory()
    db = daemon.db()
    await db.submit(DOCUMENT)
    good, meanwhile, rest = payments(0, 400), payments(400, 3_000), payments(3_400, 2_000)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:     # another client, served all along
            nursery.start_soon(lambda: db.publish("pay/payments", meanwhile.to_batches(max_chunksize=100)))
            refused = await trio.to_thread.run_sync(refuse_each, daemon.address, good)
        assert "offset" in refused[0].lower(), refused[0]
        assert refused[-3:] == ["publish: its arguments are not a JSON object"] * 2 + [
            'publish: "schema" is not an Arrow IPC schema in hex'], refused[-3:]
        assert daemon.proc.poll() is None, "the congregation is still running"
        assert daemon.stop() == 0
        daemon = daemon_factory(data_dir=daemon.data_dir)   # the refused bodies were never kept
        db = daemon.db()
        assert await db.publish("pay/payments", rest, end=True) == rest.num_rows
        everything = pa.concat_tables([good, meanwhile, rest])
        assert_rows_equal(by_id(await read(db, "pay/payments")), everything, "the input log")
        assert_rows_equal(by_id(await read(db, "pay/large")), reference(everything), "pay/large")



async def test_a_corrupt_batch_kept_by_an_older_version_fails_its_tradecraft_not_the_congregation(
        daemon_factory):
    """A data dir poisoned before publish validated: the tradecraft fails naming the batch, none
    of its rows come out, and the congregation starts and serves every other tradecraft."""
    daemon = daemon_factory()
    db = daemon.db()
    await db.submit(DOCUMENT)
    await db.submit({**DOCUMENT, "tradecraft": "fine"})
    assert daemon.stop() == 0
    # As an older congregation kept them: 100 good batches (more than the datastreams hold in
    # flight, so the bad one is met once the tradecraft runs), then a corrupt one.
    good = payments(0, 5_000)
    store = LogStore(daemon.data_dir)
    for batch in good.to_batches(max_chunksize=50):
        store.append("pay/payments", batch.serialize(), batch.num_rows)
    store.append("pay/payments", offsets_overwritten(payments(10_000, 50)), 50, sync=True)
    store.close()
    with trio.fail_after(60):
        daemon = daemon_factory(data_dir=daemon.data_dir)
        db = daemon.db()
        failed = await wait_state(db, "pay", "failed", timeout=30)
        assert "pay/payments: batch 100 is not a valid batch" in failed["error"], failed
        assert "offset" in failed["error"].lower(), failed
        out = await db.read("pay/large")          # what came out before the failure, in order
        assert_rows_equal(out, reference(good).slice(0, out.num_rows), "pay/large up to the failure")
        fine = payments(1_000, 2_000)
        assert await db.publish("fine/payments", fine, end=True) == fine.num_rows
        assert_rows_equal(await read(db, "fine/large"), reference(fine), "fine/large")
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
        assert daemon_factory(data_dir=daemon.data_dir).proc.poll() is None   # and starts again

def cli(address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["hallelujah", "--at", address, *args], capture_output=True, text=True,
                          timeout=60)


async def test_a_publish_after_the_end_is_refused_naming_the_stream(congregation, tmp_path):
    db = congregation.db()
    await db.submit(DOCUMENT)
    first = payments(0, 1_000)
    with trio.fail_after(30):
        assert await db.publish("pay/payments", first, end=True, publisher_id="ender") == 1_000
        with pytest.raises(InvalidInput, match=r"pay/payments: the stream has ended"):
            await db.publish("pay/payments", payments(1_000, 10))
        # the ending publish retried (as after a lost acknowledgement) is all repeats: acknowledged
        assert await db.publish("pay/payments", first, end=True, publisher_id="ender") == 1_000
        with pytest.raises(InvalidInput, match=r"pay/payments: batch 1 refused: the stream has ended"):
            await db.publish("pay/payments", payments(1_000, 10), publisher_id="ender", first_seq=1)
        pq.write_table(payments(2_000, 10), tmp_path / "late.parquet")
        late = await trio.to_thread.run_sync(cli, congregation.address, "publish", "pay/payments",
                                             str(tmp_path / "late.parquet"))
        assert late.returncode == 2 and "pay/payments: the stream has ended" in late.stderr, late
        assert "Traceback" not in late.stderr
        assert_rows_equal(await read(db, "pay/payments"), first, "the input log")
        assert_rows_equal(await read(db, "pay/large"), reference(first), "pay/large")


def repeats_and_a_gap(address: str, kept: pa.Table, new: pa.Table) -> None:
    """Publisher "p-1" has kept batches 0 and 1 (`kept` is batch 1): sent again by hand, each is
    acknowledged and not kept again; a gap is refused, and the connection closed cleanly."""
    raw = RawClient(address)
    assert json.loads(raw.publish_start("pay/payments", "p-1")["result"])["committed"] == 1
    for seq, table in ((1, kept), (2, new), (2, new), (1, kept)):
        raw.send_batch(seq, body_of(table), table.num_rows)
        assert raw.receive() == ("dataCfm", {"credits": 1}), seq
    raw.send_batch(4, body_of(new), new.num_rows)
    kind, fields = raw.receive()
    assert kind == "cmdCfm" and fields["error"]["kind"] == "InvalidInput", fields
    assert fields["error"]["message"] == ('pay/payments: batch 4 of publisher "p-1" comes after a gap: '
                                          'the last batch kept is 2, so the next must be 3'), fields
    assert raw.closes_cleanly()


def a_message_repeated_on_the_wire(address: str, first: pa.Table, second: pa.Table) -> None:
    """A datastream's own sequence is checked apart from the publisher's numbers: a message that
    comes twice on one connection (a buggy or hostile client) breaks the stream, with an error
    naming it; what came before it stays kept, the repeated message is not."""
    raw = RawClient(address)
    assert json.loads(raw.publish_start("pay/payments", "p-2")["result"])["committed"] == -1
    raw.send_batch(0, body_of(first), first.num_rows)
    assert raw.receive() == ("dataCfm", {"credits": 1})
    raw.send_batch(1, body_of(second), second.num_rows, seq=0)
    kind, fields = raw.receive()
    assert kind == "cmdCfm" and fields["error"]["kind"] == "DatastreamError", fields
    assert fields["error"]["message"] == ("datastream pay/payments: message 0 after 0 (a repeat): "
                                          "the stream is broken"), fields
    assert raw.closes_cleanly()


async def test_a_publishers_repeats_are_kept_once_and_a_gap_is_refused(congregation):
    db = congregation.db()
    await db.submit(DOCUMENT)
    parts = [payments(0, 100), payments(100, 100), payments(200, 100)]
    with trio.fail_after(30):
        assert await db.publish("pay/payments", parts[0], publisher_id="p-1") == 100          # batch 0
        with pytest.raises(InvalidInput, match=r'pay/payments: batch 3 of publisher "p-1" comes after a '
                                               r'gap: the last batch kept is 0, so the next must be 1'):
            await db.publish("pay/payments", parts[1], publisher_id="p-1", first_seq=3)
        assert await db.publish("pay/payments", parts[1], publisher_id="p-1", first_seq=1) == 100
        assert await db.publish("pay/payments", parts[1], publisher_id="p-1", first_seq=1) == 100
        await trio.to_thread.run_sync(repeats_and_a_gap, congregation.address, parts[1], parts[2])
        await trio.to_thread.run_sync(a_message_repeated_on_the_wire, congregation.address, parts[0], parts[1])
        for bad in ("../x", "", "a" * 129, "with space"):
            with pytest.raises(InvalidInput, match="publisher id"):
                await db.publish("pay/payments", parts[1], publisher_id=bad)
        assert await db.publish("pay/payments", [], end=True, schema=SCHEMA) == 0
        assert_rows_equal(await read(db, "pay/payments"), pa.concat_tables([*parts, parts[0]]), "the input log")


@pytest.mark.parametrize("kill", ["mid-way", "after every acknowledgement"])
async def test_a_publish_retried_after_a_sigkill_keeps_each_row_once(daemon_factory, kill):
    daemon = daemon_factory()
    db = daemon.db()
    await db.submit(DOCUMENT)
    table = payments(0, 40_000)
    batches = table.to_batches(max_chunksize=2_000)
    acknowledged: list[int] = []

    def killing(rows: int) -> None:
        acknowledged.append(rows)
        if kill == "mid-way" and rows >= 10_000 and daemon.proc.poll() is None:
            daemon.kill()

    with trio.fail_after(90):
        if kill == "mid-way":
            with pytest.raises(Unavailable):
                await db.publish("pay/payments", batches, publisher_id="retry-1", progress=killing)
            assert 10_000 <= acknowledged[-1] < table.num_rows, acknowledged[-1]
        else:
            assert await db.publish("pay/payments", batches, publisher_id="retry-1") == table.num_rows
            daemon.kill()
        daemon = daemon_factory(data_dir=daemon.data_dir)
        db = daemon.db()
        again = await db.publish("pay/payments", batches, end=True, publisher_id="retry-1")
        assert again == table.num_rows
        assert_rows_equal(await read(db, "pay/payments"), table, "the input log, each row once")
        assert_rows_equal(await read(db, "pay/large"), reference(table), "pay/large, each row once")


async def test_a_full_disk_refuses_publishes_keeps_reads_and_carries_on_once_freed(small_disk, daemon_factory):
    daemon = daemon_factory(data_dir=small_disk / "data")
    db = daemon.db()
    await db.submit(DOCUMENT)
    before, refused = payments(0, 10_000), payments(10_000, 20_000)
    with trio.fail_after(90):
        assert await db.publish("pay/payments", before, publisher_id="before") == before.num_rows
        expected_before = reference(before)
        assert_rows_equal(await db.read("pay/large", limit=expected_before.num_rows), expected_before,
                          "pay/large before the disk fills")
        filler = fill(small_disk)
        with pytest.raises(Unavailable) as refusal:
            await db.publish("pay/payments", refused.to_batches(max_chunksize=2_000), publisher_id="b")
        assert "pay/payments: batch 0 refused: no space left" in str(refusal.value), refusal.value
        assert str(small_disk / "data") in str(refusal.value), refusal.value
        # reads are served meanwhile
        assert [t["name"] for t in (await db.describe())["tradecrafts"]] == ["pay"]
        assert_rows_equal(await db.read("pay/payments", limit=before.num_rows), before, "the input log, full")
        assert_rows_equal(await db.read("pay/large", limit=expected_before.num_rows), expected_before,
                          "pay/large, full")
        assert daemon.proc.poll() is None, "the congregation still runs on a full disk"
        filler.unlink()
        assert await db.publish("pay/payments", refused.to_batches(max_chunksize=2_000), publisher_id="b",
                                end=True) == refused.num_rows
        everything = pa.concat_tables([before, refused])
        assert_rows_equal(await read(db, "pay/payments"), everything, "the input log, after")
        assert_rows_equal(await read(db, "pay/large"), reference(everything), "pay/large, after")
    assert daemon.stop() == 0


WIDE = {"tradecraft": "wide", "analytics": [
    {"name": "nums", "kind": "stream", "schema": {"id": "int64"}},
    {"name": "wide", "kind": "transform", "input": "nums",
     "derive": {f"x{k}": f"id * {k}" for k in range(2, 18)}}]}


async def test_output_that_meets_a_full_disk_waits_for_space_and_loses_nothing(small_disk, daemon_factory):
    """An acknowledged batch whose output (17 times its size) no longer fits: the output waits,
    reads are served meanwhile, and once space is freed it is all there, once."""
    daemon = daemon_factory(data_dir=small_disk / "data")
    db = daemon.db()
    await db.submit(WIDE)
    nums = pa.table({"id": np.arange(4_096, dtype=np.int64)})
    expected = nums.append_column("x2", pc.multiply(nums["id"], 2))
    for k in range(3, 18):
        expected = expected.append_column(f"x{k}", pc.multiply(nums["id"], k))
    with trio.fail_after(60):
        filler = fill(small_disk, leave=256 << 10)    # room for the input, not for its output
        assert await db.publish("wide/nums", nums, end=True) == nums.num_rows
        await trio.sleep(2)
        info = (await db.describe("wide"))["tradecrafts"][0]
        assert info["state"] == "running", info
        retained = {k: v["rows"] for a in info["analytics"] for k, v in a["retained"].items()}
        assert retained["wide"] == 0, retained
        assert_rows_equal(await db.read("wide/nums", limit=nums.num_rows), nums, "the input log, full")
        assert daemon.proc.poll() is None, "the congregation still runs on a full disk"
        filler.unlink()
        assert_rows_equal(await read(db, "wide/wide"), expected, "wide/wide once space is freed")
    assert daemon.stop() == 0
