"""A congregation holds against hostile clients at the wire level, and serves everyone else.

Hostile frames are sent with raw sockets (encoded with the wire schema, then cut, inflated or
misdirected by hand); every other client goes through the public library, and what it reads is
compared with a reference computed here with pyarrow.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import trio

import hallelujah
from hallelujah.errors import Unavailable
from hallelujah.frames import FRAME_BUFFER, Connection, decode, encode, schema_bytes
from tests.conftest import Daemon
from tests.integration.helpers import assert_rows_equal, read, retained_rows, wait_state

MiB = 1 << 20
SCHEMA = pa.schema([("id", pa.int64()), ("amount", pa.float64())])


def doubling(name: str) -> dict:
    """A pushed stream and a transform of it (`twice` = 2 × amount, rows with amount > 10)."""
    return {"tradecraft": name, "analytics": [
        {"name": "pay", "kind": "stream", "schema": {"id": "int64", "amount": "float64"}},
        {"name": "big", "kind": "transform", "input": "pay", "derive": {"twice": "amount * 2"},
         "where": "amount > 10"}]}


def payments(start: int, n: int) -> pa.Table:
    rng = np.random.default_rng(start)
    return pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                     "amount": rng.uniform(0, 100, n).round(2)}, schema=SCHEMA)


def doubled(table: pa.Table) -> pa.Table:
    kept = table.filter(pc.greater(table["amount"], 10))
    return kept.append_column("twice", pc.multiply(kept["amount"], 2))


async def publish_and_check(db: hallelujah.Database, name: str, doc: dict | None = None,
                            n: int = 30_000) -> None:
    """Submit `doc` (`doubling(name)`), publish `n` rows and end, read the output back exactly."""
    await db.submit(doc or doubling(name))
    table = payments(0, n)
    assert await db.publish(f"{name}/pay", table, end=True) == n
    assert_rows_equal(await read(db, f"{name}/big"), doubled(table), f"{name}/big")


def endpoint(daemon: Daemon) -> tuple[str, int]:
    host, _, port = daemon.address.rpartition(":")
    return host, int(port)


class Raw:
    """A raw TCP socket to a congregation: send any bytes, read its frames back."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.got = b""

    @classmethod
    async def open(cls, daemon: Daemon, source: str | None = None) -> Raw:
        host, port = endpoint(daemon)
        sock = trio.socket.socket()
        if source:
            await sock.bind((source, 0))
        await sock.connect((host, port))
        return cls(trio.SocketStream(sock))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def frame(self) -> tuple[str, dict] | None:
        """The next frame the congregation sends, or None when it closed the connection."""
        while True:
            if len(self.got) >= 4:
                (size,) = struct.unpack_from("<I", self.got)
                if len(self.got) >= 4 + size:
                    frame, self.got = self.got[4:4 + size], self.got[4 + size:]
                    return decode(frame)
            try:
                chunk = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                chunk = b""
            if not chunk:
                return None
            self.got += chunk

    async def refusal(self, timeout: float = 10, closed: bool = True) -> str:
        """The error message of the cmdCfm refusing this connection, which is then `closed`."""
        with trio.fail_after(timeout):
            kind, fields = await self.frame()
            assert kind == "cmdCfm" and fields.get("error"), (kind, fields)
            if closed:
                assert await self.frame() is None, "the connection stays open after its refusal"
        return fields["error"]["message"]

    async def aclose(self) -> None:
        await self.stream.aclose()


def refusals(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines()
            if line.startswith("{") and '"connection_refused"' in line]


def rss(daemon: Daemon) -> int:
    assert daemon.proc is not None
    return psutil.Process(daemon.proc.pid).memory_info().rss


def worker_pids(info: dict) -> dict[int, int]:
    return {w["worker"]: w["pid"] for w in info["workers"]}


# ---- frames between two of our own connections ---------------------------------------------

async def test_frames_larger_than_the_buffer_and_a_body_after_them_cross_a_connection_both_ways():
    a, b = trio.socket.socketpair()
    left, right = Connection(trio.SocketStream(a)), Connection(trio.SocketStream(b))
    big = "x" * (3 * MiB + 17)                     # a frame 12 times the 256 KiB buffer
    table = payments(0, 50_000)
    body = table.to_batches()[0].serialize()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            async def send() -> None:
                for i in range(3):
                    await left.send("cmdReq", {"id": i, "command": "submit", "args": big[i:]})
                    await left.send("dataReq", {"seq": i, "bodyLength": body.size, "rows": 50_000}, body)
            nursery.start_soon(send)
            for i in range(3):
                kind, fields, none = await right.receive()
                assert (kind, fields["id"], fields["args"] == big[i:], none) == ("cmdReq", i, True, None)
                kind, fields, got = await right.receive()
                assert (kind, fields["seq"]) == ("dataReq", i)
                batch = pa.ipc.read_record_batch(got, SCHEMA)
                assert batch.equals(table.to_batches()[0])
            await right.send("cmdCfm", {"id": 9, "result": big})      # and the other way
            kind, fields, _ = await left.receive()
            assert fields["result"] == big
    await left.aclose()
    await right.aclose()


# ---- 1: a worker registers only over the private socket, with its secret --------------------

async def test_a_hello_over_tcp_is_refused_and_the_real_workers_keep_serving(tmp_path, capfd):
    daemon = Daemon(tmp_path / "data").start()
    try:
        db = daemon.db()
        await publish_and_check(db, "before")
        workers = worker_pids(await db.describe())
        assert len(workers) == 2
        for index in (0, 1):
            raw = await Raw.open(daemon)
            await raw.send(encode("hello", {"worker": index, "pid": os.getpid(), "address": "/tmp/impostor.sock",
                                            "secret": b"\0" * 32}))
            assert "workers register only over the congregation's private Unix socket" in await raw.refusal()
            await raw.aclose()
        await publish_and_check(db, "after")
        assert worker_pids(await db.describe()) == workers
        logged = refusals(capfd.readouterr().err)
        assert [line["reason"].split(":")[1].strip() for line in logged] == ["a hello over TCP"] * 2
    finally:
        assert daemon.stop() == 0


def test_a_hello_over_the_unix_socket_needs_the_secret_and_a_worker_not_alive(tmp_path):
    """In a process of its own: the congregation embedded, so the test knows the real secret."""
    script = textwrap.dedent("""
        import os, sys, trio
        from pathlib import Path
        from congregation.workers import make_zygote
        zygote = make_zygote(warm_kernels=False)
        from congregation.daemon import Congregation
        from hallelujah.client import Database
        from hallelujah.frames import connect
        from hallelujah.logs import configure_logging
        configure_logging("json")

        async def hello(**fields):
            conn = await connect(zygote.daemon_address)
            await conn.send("hello", {"worker": 0, "pid": os.getpid(), "address": "/nowhere",
                                      "secret": zygote.secret, **fields})
            kind, reply, _ = await conn.receive()
            await conn.aclose()
            print(kind, reply["id"], reply["error"]["message"])

        async def main():
            async with trio.open_nursery() as nursery:
                c = Congregation(Path(sys.argv[1]), zygote, 2)
                address = await nursery.start(c.serve, None)
                db = Database([address])
                before = (await db.describe())["workers"]
                assert os.stat(zygote.run_dir).st_mode & 0o777 == 0o700, "the run dir is not private"
                await hello(secret=b"wrong")
                await hello()                          # the real secret, worker 0 is alive
                await hello(worker=7)
                await hello(pid=1)                     # a pid that is not the sender's
                assert (await db.describe())["workers"] == before, "a worker was displaced"
                print("workers unchanged")
                nursery.cancel_scope.cancel()
        try:
            trio.run(main)
        finally:
            zygote.close()
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data")], capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "HALLELUJAH_LOG_LEVEL": "warning"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cmdCfm 0 ") and "without this congregation's secret" in lines[0]
    assert "registered and alive" in lines[1]
    assert "runs workers 0 to 1" in lines[2]
    assert "claiming pid 1, sent by pid" in lines[3]
    assert lines[4] == "workers unchanged"
    assert len([ln for ln in done.stderr.splitlines() if '"connection_refused"' in ln]) == 4


# ---- 2: sizes before allocation, idle connections, caps -------------------------------------

async def test_oversized_claims_leave_memory_flat_and_idle_connections_are_closed(tmp_path, capfd):
    daemon = Daemon(tmp_path / "data", extra=["--idle-timeout", "1.5"]).start()
    raws: list[Raw] = []
    try:
        db = daemon.db()
        await db.submit(doubling("pay"))
        first = payments(0, 20_000)
        await db.publish("pay/pay", first)
        before = rss(daemon)

        # a dataReq first, claiming a 512 MiB body: refused before anything is allocated
        claim = encode("dataReq", {"seq": 0, "bodyLength": 512 * MiB, "rows": 1})
        for _ in range(6):
            raw = await Raw.open(daemon)
            await raw.send(claim + b"\0" * 65536)
            assert "where no datastream is open" in await raw.refusal()
            await raw.aclose()
        # a frame claiming more than a command may be
        raw = await Raw.open(daemon)
        await raw.send(struct.pack("<I", 100 * MiB) + b"\0" * 1000)
        assert "a frame of 104,857,600 bytes" in await raw.refusal()
        await raw.aclose()

        # publish connections whose batch claims 200 MiB (within a publish's limit) and sends
        # 64 KiB of it: nothing is held for what was not sent
        ask = encode("cmdReq", {"id": 5, "command": "publish", "args": json.dumps(
            {"stream": "pay/pay", "schema": schema_bytes(SCHEMA).hex()})})
        for _ in range(6):
            raw = await Raw.open(daemon)
            await raw.send(ask)
            kind, fields = await raw.frame()
            assert kind == "cmdCfm" and not fields.get("error")
            await raw.send(encode("dataReq", {"seq": 0, "bodyLength": 200 * MiB, "rows": 1}) + b"\1" * 65536)
            raws.append(raw)
        # one claiming 512 MiB in a publish: beyond the limit of a published batch
        raw = await Raw.open(daemon)
        await raw.send(ask)
        await raw.frame()
        await raw.send(encode("dataReq", {"seq": 0, "bodyLength": 512 * MiB, "rows": 1}))
        assert "exceeds the limit of 268,435,456" in await raw.refusal(closed=False)
        await raw.aclose()

        # half-open connections: nothing, or half a command, then silence
        started = time.monotonic()
        idle = [await Raw.open(daemon) for _ in range(4)]
        await idle[0].send(ask[:10])
        await idle[1].send(struct.pack("<I", 3 * MiB) + b"\0" * 1000)   # a command frame, never finished
        for raw in idle:
            assert "no complete first frame within 1.5 s" in await raw.refusal()
            await raw.aclose()
        assert 1.4 < time.monotonic() - started < 6

        await trio.sleep(0.5)
        grown = rss(daemon) - before
        assert grown < 50 * MiB, f"the congregation grew by {grown / MiB:.0f} MiB"

        second = payments(20_000, 20_000)                 # everyone else is served meanwhile
        await db.publish("pay/pay", second, end=True)
        assert_rows_equal(await read(db, "pay/big"), doubled(pa.concat_tables([first, second])), "pay/big")
        assert rss(daemon) - before < 50 * MiB + first.nbytes * 4
        log = capfd.readouterr().err
        reasons = [line["reason"] for line in refusals(log)]       # one line for each refusal
        assert len(reasons) == 6 + 1 + 1 + 4, reasons
        assert len([r for r in reasons if "exceeds the limit of 268,435,456" in r]) == 1
    finally:
        for raw in raws:
            await raw.aclose()
        assert daemon.stop() == 0


async def test_connections_beyond_the_caps_are_refused_while_an_existing_client_keeps_reading(tmp_path, capfd):
    daemon = Daemon(tmp_path / "data", extra=["--max-connections", "5", "--max-connections-per-peer", "3",
                                              "--idle-timeout", "60"]).start()
    held: list[Raw] = []
    try:
        db = daemon.db()
        await db.submit(doubling("capped"))
        table = payments(0, 40_000)
        got: list[pa.RecordBatch] = []
        streaming = trio.Event()

        async def reader() -> None:                  # an existing client: 1 connection from 127.0.0.1
            async with db.stream("capped/big", from_start=True) as batches:
                streaming.set()
                async for batch in batches:
                    got.append(batch)

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await streaming.wait()
                held += [await Raw.open(daemon) for _ in range(2)]            # 3 from 127.0.0.1
                await trio.sleep(0.2)
                with pytest.raises(Unavailable, match=r"127\.0\.0\.1 has 3 connections open.*"
                                                      r"--max-connections-per-peer 3"):
                    await db.list()
                held += [await Raw.open(daemon, "127.0.0.2") for _ in range(2)]   # 5 in all
                await trio.sleep(0.2)
                other = await Raw.open(daemon, "127.0.0.3")
                assert "serves 5 connections, its limit (--max-connections 5)" in await other.refusal()
                await other.aclose()
                for raw in held:
                    await raw.aclose()
                held.clear()
                with trio.fail_after(10):               # the idle ones are let go as they close
                    while True:
                        try:
                            await db.list()
                            break
                        except Unavailable:
                            await trio.sleep(0.1)
                assert await db.publish("capped/pay", table, end=True) == table.num_rows
        assert_rows_equal(pa.Table.from_batches(got, got[0].schema), doubled(table), "capped/big")
        reasons = [line["reason"] for line in refusals(capfd.readouterr().err)]
        assert "the limit per address (--max-connections-per-peer 3)" in reasons[0]
        assert "its limit (--max-connections 5)" in reasons[1]
        assert all("--max-connections" in r for r in reasons[2:])   # (retries while the others closed)
    finally:
        for raw in held:
            await raw.aclose()
        assert daemon.stop() == 0


# ---- 3: frames over 256 KiB, through the public client --------------------------------------

async def test_a_300_kb_document_runs(congregation):
    doc = doubling("wordy")
    doc["description"] = "a long story. " * 22_000
    assert len(json.dumps(doc)) > 300_000
    await publish_and_check(congregation.db(), "wordy", doc)


async def test_a_director_with_1000_routes_routes_every_row(congregation):
    """1,000 routes of one value each: a Jah spec and a describe far over 256 KiB."""
    n_routes = 1000
    doc = {"tradecraft": "many", "analytics": [
        {"name": "orders", "kind": "stream", "schema": {"id": "int64", "shop": "int64"}},
        {"name": "router", "kind": "director", "input": "orders", "key": "shop",
         "routes": {str(v): f"route{v}" for v in range(n_routes)}, "default": "other"}]}
    assert len(json.dumps(doc)) > 18 * 1024
    rng = np.random.default_rng(5)
    table = pa.table({"id": np.arange(50_000, dtype=np.int64), "shop": rng.integers(-100, 1100, 50_000)})
    shop = table["shop"].to_numpy()
    listed = (shop >= 0) & (shop < n_routes)
    db = congregation.db()
    with trio.fail_after(180):
        await db.submit(doc)
        assert await db.publish("many/orders", table, end=True) == table.num_rows
        await wait_state(db, "many", timeout=120)
        for route in (0, 7, n_routes - 1):
            assert_rows_equal(await read(db, f"many/router.route{route}", 60),
                              table.filter(pa.array(shop == route)), f"router.route{route}")
        assert_rows_equal(await read(db, "many/router.other", 60), table.filter(pa.array(~listed)),
                          "router.other")
        retained = await retained_rows(db, "many")
        assert len(json.dumps(await db.describe("many"))) > 2 * FRAME_BUFFER    # the frame grows past it
    counts = np.bincount(shop[listed], minlength=n_routes)
    assert {k: v for k, v in retained.items() if k.startswith("router.") and not k.endswith(".rejected")} == {
        **{f"router.route{v}": int(counts[v]) for v in range(n_routes)}, "router.other": int((~listed).sum())}


async def test_describe_of_120_tradecrafts_reaches_the_client(congregation):
    db = congregation.db()
    names = [f"t{i:03d}" for i in range(120)]
    with trio.fail_after(120):
        for name in names:
            doc = doubling(name)
            doc["analytics"].append({"name": "bigger", "kind": "transform", "input": "big",
                                     "where": "twice > 100"})
            await db.submit(doc)
        info = await db.describe()
    assert len(json.dumps(info)) > 256 * 1024
    assert sorted(t["name"] for t in info["tradecrafts"]) == names
    assert all([a["name"] for a in t["analytics"]] == ["pay", "big", "bigger"] for t in info["tradecrafts"])


# ---- 4: metrics only on loopback ------------------------------------------------------------

def test_metrics_on_a_non_loopback_address_is_refused_before_starting(tmp_path):
    done = subprocess.run([sys.executable, "-m", "congregation", "--data-dir", str(tmp_path / "d"),
                           "--listen", "127.0.0.1:0", "--metrics", "0.0.0.0:9464"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--metrics 0.0.0.0:9464: only loopback" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()


# ---- 6: a body that kills its worker fails its tradecraft, not the congregation ----------------

KILLER = '''
import os
import signal


def kill(batch):
    """Passes an empty batch (as the validator gives it); kills its own process on any row."""
    if batch.num_rows:
        os.kill(os.getpid(), signal.SIGKILL)
    return batch
'''


async def test_a_tradecraft_whose_worker_dies_twice_fails_with_the_reason_and_the_data_dir_restarts(tmp_path):
    udfs = tmp_path / "udfs"
    udfs.mkdir()
    (udfs / "hj_udf_killer.py").write_text(KILLER)
    data = tmp_path / "data"
    daemon = Daemon(data, extra=["--udf-dir", str(udfs)]).start()
    try:
        db = daemon.db()
        await db.submit({"tradecraft": "poison", "analytics": [
            {"name": "rows", "kind": "stream", "schema": {"id": "int64", "amount": "float64"}},
            {"name": "killed", "kind": "transform", "input": "rows", "udf": "hj_udf_killer:kill",
             "udf_path": str(udfs)}]})
        workers = worker_pids(await db.describe())
        await db.publish("poison/rows", payments(0, 10))
        row = await wait_state(db, "poison", "failed", timeout=40)
        assert "died twice while running it" in row["error"], row["error"]
        assert "not restarted again" in row["error"]
        assert daemon.proc is not None and daemon.proc.poll() is None
        replaced = worker_pids(await db.describe())
        assert len(replaced) == 2 and set(replaced.values()) != set(workers.values())
        await trio.sleep(1)              # not redeployed: no worker dies any more
        assert worker_pids(await db.describe()) == replaced
        await publish_and_check(db, "healthy")
    finally:
        assert daemon.stop() == 0
    again = Daemon(data, extra=["--udf-dir", str(udfs)]).start()
    try:
        db = again.db()
        states = {t["name"]: t for t in await db.list()}
        assert states["poison"]["state"] == "failed" and "died twice" in states["poison"]["error"]
        assert states["healthy"]["state"] == "finished"
        await trio.sleep(1)
        assert again.proc is not None and again.proc.poll() is None
        assert len(worker_pids(await db.describe())) == 2
    finally:
        assert again.stop() == 0
