"""Three congregations, one database: any member answers, the least loaded member runs what is
submitted, and a tradecraft whose congregation is killed runs again on another member."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import trio

import hallelujah
from hallelujah.errors import NotFound, TradecraftError


def events(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"id": np.arange(n, dtype=np.int64), "amount": rng.uniform(0, 100, n).round(2),
                     "user": pa.array([f"u{i % 97}" for i in range(n)])})


def kept(table: pa.Table) -> pa.Table:
    """The reference of `document`'s `large`, computed with pyarrow."""
    rows = table.filter(pc.greater(table["amount"], 10))
    return rows.append_column("cents", pc.cast(pc.multiply(rows["amount"], 100), pa.int64(), safe=False))


def document(name: str, source: str | None = None) -> dict:
    stream = {"name": "payments", "kind": "stream", "schema": {"id": "int64", "amount": "float64", "user": "string"}}
    if source:
        stream["source"] = {"path": source, "format": "parquet"}
    return {"tradecraft": name, "analytics": [
        stream,
        {"name": "large", "kind": "transform", "input": "payments", "output": True,
         "derive": {"cents": "cast(amount * 100, 'int64')"}, "where": "amount > 10"}]}


def tiers() -> pa.Table:
    return pa.table({"user": [f"u{i}" for i in range(97)], "tier": [i % 5 for i in range(97)]})


def joined_document(name: str, dataset: str) -> dict:
    """A pushed stream joined with a dataset (a JOIN), whose output keeps the stream's order."""
    doc = document(name)
    doc["analytics"][1]["output"] = False
    doc["analytics"] += [
        {"name": "tiers", "kind": "ingest", "source": {"path": dataset}},
        {"name": "tiered", "kind": "join", "stream": "large", "dataset": "tiers", "on": {"user": "user"},
         "fields": ["tier"], "how": "left", "output": True}]
    return doc


def tiered(table: pa.Table) -> pa.Table:
    """`joined_document`'s output computed with pyarrow: `kept`, then each row's tier."""
    rows = kept(table)
    tier_of = dict(zip(tiers()["user"].to_pylist(), tiers()["tier"].to_pylist()))
    return rows.append_column("tier", pa.array([tier_of.get(u) for u in rows["user"].to_pylist()], pa.int64()))


async def owner_of(db: hallelujah.Database, name: str) -> str:
    (tc,) = (await db.describe(name))["tradecrafts"]
    return str(tc["congregation"])


async def test_any_member_answers_and_the_least_loaded_runs(cluster, tmp_path):
    table = events(50_000)
    pq.write_table(table, tmp_path / "payments.parquet")
    via_c = cluster.db("c")
    with trio.fail_after(60):
        for i in range(3):
            await via_c.submit(document(f"t{i}", str(tmp_path / "payments.parquet")))
        owners = {f"t{i}": await owner_of(cluster.db("a"), f"t{i}") for i in range(3)}
        assert sorted(owners.values()) == ["a", "b", "c"]          # one each: the least loaded first
        for name, owner in owners.items():                          # read through another member
            other = next(n for n in ("a", "b", "c") if n != owner)
            got = await cluster.db(other).read(f"{name}/large")
            assert got.equals(kept(table)), name
        while True:     # (a tradecraft is finished just after its output ends)
            listed = {t["name"]: t for t in await cluster.db("b").list()}
            if {t["state"] for t in listed.values()} == {"finished"}:
                break
            await trio.sleep(0.05)
        assert {n: t["congregation"] for n, t in listed.items()} == owners
        described = await cluster.db("a").describe()
        assert [m["name"] for m in described["members"]] == ["a", "b", "c"]
        assert all(m["up"] and 0 < m["lease_left"] <= 2 for m in described["members"])
        assert described["etcd_leader"] in ("a", "b", "c")      # (the fixture's etcd members)
        assert {t["name"]: t["congregation"] for t in described["tradecrafts"]} == owners

        with pytest.raises(TradecraftError, match="exists already"):
            await cluster.db("b").submit(document("t0", str(tmp_path / "payments.parquet")))
        await cluster.db(next(n for n in "abc" if n != owners["t1"])).cancel("t1")
        assert sorted(t["name"] for t in await cluster.db("c").list()) == ["t0", "t2"]
        with pytest.raises(NotFound):
            await cluster.db(owners["t1"]).describe("t1")


async def test_a_published_stream_goes_on_after_its_congregation_is_killed(cluster, tmp_path):
    """SIGKILL of the member running a JOIN in the middle of a 2 M-row published stream: chunks
    acknowledged before the kill are kept (a copy was at another member), it runs again on
    another member within 10 s, the publisher and a reader carry on through the other members,
    and the output is the pyarrow reference, row for row."""
    table = events(2_000_000, seed=3)
    chunks = table.to_batches(max_chunksize=50_000)
    pq.write_table(tiers(), tmp_path / "tiers.parquet")
    db = cluster.db()
    with trio.fail_after(120):
        await db.submit(joined_document("pay", str(tmp_path / "tiers.parquet")))
        owner = await owner_of(db, "pay")
        others = [n for n in "abc" if n != owner]
        # the publisher talks to the owner first, the reader to another member
        publisher = cluster.db(owner, *others)
        reader = cluster.db(others[0], owner, others[1])
        got: list[pa.Table] = []
        acknowledged: list[int] = []

        async def publish() -> None:
            for seq, chunk in enumerate(chunks):   # one batch per call, numbered on under one id
                acknowledged.append(await publisher.publish("pay/payments", chunk, end=seq == len(chunks) - 1,
                                                            publisher_id="p1", first_seq=seq))

        async def read() -> None:
            got.append(await reader.read("pay/tiered"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            nursery.start_soon(read)
            survivor = cluster.db(*others)
            while len(acknowledged) < 8:     # kill it once part of the stream is acknowledged
                await trio.sleep(0.01)
            cluster.members[owner].kill()
            killed_at, before = trio.current_time(), len(acknowledged)
            while True:
                (tc,) = (await survivor.describe("pay"))["tradecrafts"]
                if tc["congregation"] in others and tc["state"] == "running" and tc["analytics"]:
                    break
                await trio.sleep(0.1)
            moved_after = trio.current_time() - killed_at
        assert moved_after < 10, moved_after
        assert before < len(chunks) - 5        # (the kill came mid-stream)
        described = await survivor.describe()
        (tc,) = described["tradecrafts"]
        assert [(f["from"], f["to"]) for f in tc["failovers"]] == [(owner, tc["congregation"])]
        assert {m["name"]: m["up"] for m in described["members"]} == {owner: False, **{n: True for n in others}}
        assert acknowledged == [c.num_rows for c in chunks]
        assert got[0].equals(tiered(table))
        assert (await survivor.read("pay/tiered")).equals(tiered(table))
