"""Nexmark on a few thousand events: the generator keeps the public generator's rules, and every
query's document, run whole by `hallelujah run`, gives DuckDB's answer to the standard SQL."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench.nexmark import gen, queries, reference

EVENTS = 30_000     # 3 s of event time at the generator's 10,000 events/s
DEADLINE = 60       # seconds for one `hallelujah run`


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("nexmark")
    gen.generate(EVENTS, out, seed=3)
    return out


def test_the_generator_keeps_the_rules_and_its_seed(data, tmp_path):
    person, auction, bid = (pq.read_table(data / f"{k}.parquet") for k in ("person", "auction", "bid"))
    assert (person.num_rows, auction.num_rows, bid.num_rows) == (EVENTS // 50, EVENTS // 50 * 3, EVENTS // 50 * 46)
    assert person["id"].to_pylist() == list(range(1000, 1000 + person.num_rows))
    assert auction["id"].to_pylist() == list(range(1000, 1000 + auction.num_rows))
    for t in (person, auction, bid):
        ms = t["dateTime"].cast("int64").to_numpy()
        assert (np.diff(ms) >= 0).all() and ms[0] == gen.BASE_MS and ms[-1] < gen.BASE_MS + EVENTS // 10
    # half the bids are for the hot auction of their hundred, three quarters by the hot bidder
    hot = (bid["auction"].to_numpy() - 1000) % 100 == 0
    assert 0.45 < hot.mean() < 0.6
    assert 0.7 < ((bid["bidder"].to_numpy() - 1000) % 100 == 1).mean() < 0.8
    price = bid["price"].to_numpy()
    assert price.min() >= 100 and price.max() <= 100_000_000
    assert set(pc.unique(person["state"]).to_pylist()) <= set(gen.STATES)
    assert set(pc.unique(auction["category"]).to_pylist()) == {10, 11, 12, 13, 14}
    lasting = (auction["expires"].cast("int64").to_numpy() - auction["dateTime"].cast("int64").to_numpy())
    assert lasting.min() >= 1 and lasting.max() <= 2 * 167 + 1
    assert 60 < pc.mean(pc.utf8_length(bid["extra"])).as_py() < 76     # a bid is 100 bytes on average
    again = tmp_path / "again"
    gen.generate(EVENTS, again, seed=3)
    assert pq.read_table(again / "bid.parquet").equals(bid)
    gen.generate(EVENTS, again, seed=4)
    assert not pq.read_table(again / "bid.parquet").equals(bid)


@pytest.mark.parametrize("query", list(queries.QUERIES))
def test_the_query_gives_duckdbs_answer(data, tmp_path, query):
    doc = tmp_path / f"{query}.json"
    doc.write_text(json.dumps(queries.document(query, data)))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "hallelujah", "run", str(doc), "--workers", "1",
                           "--format", "arrow", "--output-dir", str(out)],
                          cwd=data, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not any(queries.rejected_rows(out).values()), queries.rejected_rows(out)
    expected = reference.answer(query, data)
    assert expected.num_rows > 0
    assert queries.check(query, queries.read_output(out, query), expected) is None


def test_the_check_finds_a_wrong_answer(data):
    expected = reference.answer("q2", data)
    assert queries.check("q2", expected, expected) is None
    price = expected["price"].to_numpy().copy()
    price[3] += 1
    wrong = expected.set_column(1, "price", [price])
    assert "column price differs first at row 3" in queries.check("q2", wrong, expected)
    assert "rows where DuckDB has" in queries.check("q2", expected.slice(1), expected)
    assert "differs" in queries.check("q2", expected.take(list(range(expected.num_rows))[::-1]), expected)
    q8 = reference.answer("q8", data)   # no order: a shuffled answer is the same answer
    assert queries.check("q8", q8.take(np.random.default_rng(1).permutation(q8.num_rows)), q8) is None
