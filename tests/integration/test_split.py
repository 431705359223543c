"""A dataset JOIN that splits itself under congestion while the stream flows (DESIGN Fig 3),
through a real daemon. A dataset join is a per-row enrichment: its output must be the stream's
rows in the stream's order, each followed by its matches in dataset order, row for row, whatever
splits, merges, restarts and dataset versions happen. The expected output is computed here with
pyarrow's own join, then sorted by (stream row, dataset row)."""
from __future__ import annotations

import os
import signal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import trio

from tests.integration.helpers import read


def events(n: int) -> pa.Table:
    rng = np.random.default_rng(21)
    return pa.table({"id": np.arange(n, dtype=np.int64), "tile": rng.integers(0, 5_000, n)})


def tiles(label: str = "C") -> pa.Table:
    """Tiles 0..4799 (4800..4999 are missing); 4000..4199 twice, to check several matches' order."""
    t = np.concatenate([np.arange(4_800), np.arange(4_000, 4_200)]).astype(np.int64)
    return pa.table({"tile": t, "country": pa.array([f"{label}{x % 90}" for x in t]),
                     "rank": np.arange(t.size, dtype=np.int64)})


def expected_join(stream: pa.Table, data: pa.Table, on: dict[str, str], fields: list[str], how: str) -> pa.Table:
    """Each stream row in stream order, with its matches in dataset order (none: dropped for
    inner, once with nulls for left)."""
    s = stream.append_column("__s", pa.array(np.arange(stream.num_rows)))
    d = data.select(list(on.values()) + fields).append_column("__d", pa.array(np.arange(data.num_rows)))
    j = s.join(d, keys=list(on), right_keys=list(on.values()), join_type="inner" if how == "inner" else "left outer")
    j = j.sort_by([("__s", "ascending"), ("__d", "ascending")])
    return j.select(stream.column_names + fields)


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    """The same rows in the same order, for the whole output; names the first row that differs."""
    assert got.column_names == expected.column_names
    differs = np.zeros(min(got.num_rows, expected.num_rows), dtype=bool)
    for name in expected.column_names:
        a, b = got[name].slice(0, differs.size), expected[name].slice(0, differs.size)
        same = pc.or_kleene(pc.equal(a, b), pc.and_(pc.is_null(a), pc.is_null(b)))
        differs |= ~pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    first = int(np.argmax(differs)) if differs.any() else None
    assert first is None and got.num_rows == expected.num_rows, (
        f"{got.num_rows} rows, expected {expected.num_rows}; {int(differs.sum())} differ, first at row {first}: "
        f"got {got.slice(first or 0, 1).to_pylist()}, expected {expected.slice(first or 0, 1).to_pylist()}")


def filed(tmp_path, name: str, how: str, rate: int) -> tuple[pa.Table, pa.Table, dict]:
    """2 M events replayed at `rate` rows/s, joined with the tiles; congested at once."""
    stream, data = events(2_000_000), tiles()
    pq.write_table(stream, tmp_path / "events.parquet", row_group_size=50_000)
    pq.write_table(data, tmp_path / "tiles.parquet")
    return stream, data, {"tradecraft": name, "congestion": {"busy": 0.001, "for": "1ms"}, "analytics": [
        {"name": "ev", "kind": "stream", "source": {"path": str(tmp_path / "events.parquet"), "rate": rate}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country", "rank"], "how": how}]}


async def test_a_congested_join_splits_repeatedly_mid_stream_and_the_output_stays_exact(daemon_factory, tmp_path):
    stream, data, doc = filed(tmp_path, "sp", "left", 400_000)
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    got = await read(db, "sp/named", timeout=90)
    assert_same_rows(got, expected_join(stream, data, {"tile": "tile"}, ["country", "rank"], "left"))
    info = (await db.describe("sp"))["tradecrafts"][0]
    splits = info["scaling"]
    assert len(splits) >= 2, info["events"]
    assert splits[0]["partitions"] == [256, 128, 128]
    assert any(s["partitions"] == [128, 64, 64] for s in splits[1:]), (splits, info["events"])     # a half split again
    assert all(s["kind"] == "split" and s["partitions"][0] == sum(s["partitions"][1:]) for s in splits)
    assert {w["worker"] for s in splits for w in s["into"]} == {0, 1}


async def test_a_paced_stream_keeps_every_rows_order_through_repeated_splits(daemon_factory, tmp_path):
    """The reported case, smaller: GPS fixes paced at 400,000/s, congested at 1 % busy for 100 ms,
    2 workers; before the fix, rows of a device came out of order after a split."""
    n = 1_000_000
    rng = np.random.default_rng(5)
    fixes = pa.table({"ts": np.arange(n, dtype=np.int64) * 25, "device_id": rng.integers(0, 2_000, n),
                      "tile": rng.integers(0, 5_000, n)})
    pq.write_table(fixes, tmp_path / "fixes.parquet", row_group_size=50_000)
    pq.write_table(tiles(), tmp_path / "tiles.parquet")
    db = daemon_factory(workers=2).db()
    await db.submit({"tradecraft": "gps", "congestion": {"busy": 0.01, "for": "100ms"}, "analytics": [
        {"name": "fixes", "kind": "stream", "source": {"path": str(tmp_path / "fixes.parquet"), "rate": 250_000}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "located", "kind": "join", "stream": "fixes", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country", "rank"], "how": "inner"}]})
    got = await read(db, "gps/located", timeout=60)
    splits = (await db.describe("gps"))["tradecrafts"][0]["scaling"]
    assert len([s for s in splits if s["kind"] == "split"]) >= 2, splits
    assert_same_rows(got, expected_join(fixes, tiles(), {"tile": "tile"}, ["country", "rank"], "inner"))


async def test_a_split_pair_that_goes_idle_merges_back_and_nothing_is_lost(congregation, tmp_path):
    pq.write_table(tiles(), tmp_path / "tiles.parquet")
    doc = {"tradecraft": "mg", "congestion": {"busy": 0.001, "for": "200ms"}, "analytics": [
        {"name": "ev", "kind": "stream", "schema": {"id": "int64", "tile": "int64"}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country", "rank"], "how": "inner"}]}
    db = congregation.db()
    await db.submit(doc)
    stream = events(1_000_000)

    async def scaling() -> list[dict]:
        return (await db.describe("mg"))["tradecrafts"][0]["scaling"]

    sent = 0
    with trio.fail_after(30):
        while not await scaling():            # busy until it splits
            await db.publish("mg/ev", stream.slice(sent, 5_000))
            sent += 5_000
            await trio.sleep(0.01)
        for _ in range(20):                   # positions split in two
            await db.publish("mg/ev", stream.slice(sent, 5_000))
            sent += 5_000
        while not any(s["kind"] == "merge" for s in await scaling()):    # then idle until it merges
            await trio.sleep(0.2)
    await db.publish("mg/ev", stream.slice(sent), end=True)
    got = await read(db, "mg/named", timeout=60)
    assert_same_rows(got, expected_join(stream, tiles(), {"tile": "tile"}, ["country", "rank"], "inner"))
    history = await scaling()
    merged = next(s for s in history if s["kind"] == "merge")
    pairs = [sorted(j["jah"] for j in s["into"]) for s in history if s["kind"] == "split"]
    assert sorted(merged["jahs"]) in pairs                        # the two halves of one split
    assert merged["partitions"][0] == sum(merged["partitions"][1:])


async def test_a_worker_killed_during_splits_loses_and_repeats_nothing(daemon_factory, tmp_path):
    stream, data, doc = filed(tmp_path, "kx", "inner", 300_000)
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    with trio.fail_after(30):
        while not (info := await db.describe("kx"))["tradecrafts"][0]["scaling"]:
            await trio.sleep(0.05)
    worker = info["tradecrafts"][0]["scaling"][0]["into"][0]["worker"]
    os.kill(next(w["pid"] for w in info["workers"] if w["worker"] == worker), signal.SIGKILL)
    got = await read(db, "kx/named", timeout=90)
    assert_same_rows(got, expected_join(stream, data, {"tile": "tile"}, ["country", "rank"], "inner"))
    events_seen = (await db.describe("kx"))["tradecrafts"][0]["events"]
    assert any(e["kind"] == "restart" for e in events_seen)


def versioned(label: str) -> pa.Table:
    """Every tile, 0..4999 once and 1000..1499 twice, countries labelled by the version."""
    t = np.concatenate([np.arange(5_000), np.arange(1_000, 1_500)]).astype(np.int64)
    return pa.table({"tile": t, "country": pa.array([f"{label}{x % 90}" for x in t]),
                     "rank": np.arange(t.size, dtype=np.int64)})


def version_swap(tmp_path, name: str, n: int, rate: int, congestion_for: str | None) -> tuple[pa.Table, dict]:
    """`n` events at `rate` rows/s joined with version A of the tiles; congested at 1 % busy for
    `congestion_for` (None: the defaults, which these runs never reach)."""
    stream = events(n)
    pq.write_table(stream, tmp_path / "events.parquet", row_group_size=20_000)
    pq.write_table(versioned("A"), tmp_path / "tiles.parquet")
    congestion = {"congestion": {"busy": 0.01, "for": congestion_for}} if congestion_for else {}
    return stream, {"tradecraft": name, **congestion, "analytics": [
        {"name": "ev", "kind": "stream", "source": {"path": str(tmp_path / "events.parquet"), "rate": rate}},
        {"name": "tiles", "kind": "ingest", "source": {"path": str(tmp_path / "tiles.parquet")}},
        {"name": "named", "kind": "join", "stream": "ev", "dataset": "tiles", "on": {"tile": "tile"},
         "fields": ["country", "rank"], "how": "inner"}]}


async def test_a_new_dataset_version_mid_stream_joins_each_event_with_exactly_one_version(congregation, tmp_path):
    stream, doc = version_swap(tmp_path, "ver", 600_000, 150_000, None)
    db = congregation.db()
    await db.submit(doc)
    await trio.sleep(1.5)                                   # about a third of the stream has passed
    pq.write_table(versioned("B"), tmp_path / "tiles.parquet")
    got = await read(db, "ver/named", timeout=60)
    first = assert_one_version_per_event(got, stream)
    swap = first.index("B")
    assert 0 < swap and set(first[:swap]) == {"A"} and set(first[swap:]) == {"B"}   # one JOIN: one swap
    versions = [e for e in (await db.describe("ver"))["tradecrafts"][0]["events"] if e["kind"] == "dataset_version"]
    assert [(v["version"], v["reason"]) for v in versions] == [(1, "start"), (2, "file changed")]


def assert_one_version_per_event(got: pa.Table, stream: pa.Table) -> list[str]:
    """The output is the join with either version, row for row (both have the same keys and
    ranks), each event joined with one version only; the version of each row, in order."""
    expected = expected_join(stream, versioned("A"), {"tile": "tile"}, ["country", "rank"], "inner")
    first = pc.utf8_slice_codeunits(got["country"], 0, 1)
    assert set(first.unique().to_pylist()) == {"A", "B"}
    assert_same_rows(got.set_column(2, "country", pc.binary_join_element_wise("A", pc.utf8_slice_codeunits(
        got["country"], 1), "")), expected)
    ids, labels = got["id"].to_numpy(), first.to_numpy(zero_copy_only=False)
    same_event = ids[1:] == ids[:-1]
    assert (labels[1:][same_event] == labels[:-1][same_event]).all()   # an event's matches: one version
    return labels.tolist()


async def versions_loaded(db, tradecraft: str) -> list[int]:
    events_seen = (await db.describe(tradecraft))["tradecrafts"][0]["events"]
    return [e["version"] for e in events_seen if e["kind"] == "dataset_version"]


async def test_a_dataset_version_swapped_mid_stream_then_splits_keeps_every_rows_order(daemon_factory, tmp_path):
    """Version B replaces A mid-stream, then the JOIN splits: the JOINs it splits into start with
    B, and the output is the join with A, then with B, in the stream's order, row for row."""
    stream, doc = version_swap(tmp_path, "vs", 1_500_000, 300_000, "1s")
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    with trio.fail_after(10):
        while await versions_loaded(db, "vs") != [1]:
            await trio.sleep(0.05)
        pq.write_table(versioned("B"), tmp_path / "tiles.parquet")
        while await versions_loaded(db, "vs") != [1, 2]:
            await trio.sleep(0.05)
    assert not (await db.describe("vs"))["tradecrafts"][0]["scaling"], "split before the swap: too slow a machine?"
    got = await read(db, "vs/named", timeout=60)
    labels = assert_one_version_per_event(got, stream)
    swap = labels.index("B")
    assert 0 < swap and set(labels[:swap]) == {"A"} and set(labels[swap:]) == {"B"}
    assert (await db.describe("vs"))["tradecrafts"][0]["scaling"]


async def test_a_dataset_version_swapped_after_a_split_keeps_every_rows_order(daemon_factory, tmp_path):
    stream, doc = version_swap(tmp_path, "va", 1_200_000, 250_000, "100ms")
    db = daemon_factory(workers=2).db()
    await db.submit(doc)
    with trio.fail_after(30):
        while not (await db.describe("va"))["tradecrafts"][0]["scaling"]:
            await trio.sleep(0.05)
    pq.write_table(versioned("B"), tmp_path / "tiles.parquet")          # once split, mid-stream
    got = await read(db, "va/named", timeout=20)
    labels = assert_one_version_per_event(got, stream)
    assert labels[-1] == "B"
    assert await versions_loaded(db, "va") == [1, 2]
