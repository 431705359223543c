"""Nexmark's person, auction and bid events as Parquet files, vectorised and deterministic for a seed.

    python -m bench.nexmark.gen --events 2000000 --out /tmp/nexmark-data [--seed 7] [--rate 10000]

Follows the public generator's rules (Apache Beam's `sdks/java/testing/nexmark`, which the Flink
and Feldera Nexmark generators copy), with its default configuration:

* Events are numbered 0, 1, …; event `i` is a person when `i % 50 == 0`, an auction when
  `i % 50` is 1–3, a bid otherwise (proportions 1 : 3 : 46).
* Ids: the person of epoch `i // 50` has id `1000 + i // 50`; auctions `1000 + 3 * (i // 50) +
  (i % 50 - 1)`. A bid is for a hot auction (the first of the last 100 auctions) with probability
  1/2, else for one of the last 100 auctions or up to 10 not yet created; its bidder is a hot
  bidder (the second of the last 100 people) with probability 3/4, else one of the last 1,000
  people or up to 10 not yet created. An auction's seller is a hot seller (the first of the last
  100 people) with probability 3/4, else chosen as a bidder is. Category: 10 + one of 5.
* Prices: `round(10 ** (6 u) * 100)` for a uniform u (cents up to 1e8); reserve = initial bid + a
  price. An auction lasts 1 ms + up to twice the time the generator takes to make 100 more
  auctions' worth of events (1,666 events: 0.17 s on average at 10,000 events/s).
* Event time: `base + i * 1e6 / rate` µs, truncated to ms, base 2015-07-15T00:00:00Z (Beam's
  deterministic base time); in order (Beam's default out-of-order group of 1).
* Strings: names and e-mail addresses, credit cards `dddd dddd dddd dddd`, six states and ten
  cities of the US, item names up to 20 and descriptions up to 100 characters of letters and
  spaces (trimmed), and an `extra` of letters that brings each event to its average size (person
  200, auction 500, bid 100 bytes).

Where this differs from the Java generator: each event's values come from one NumPy stream
(seeded by `--seed`, drawn column by column in blocks of events) instead of a `java.util.Random`
seeded with the event id, so the values differ while the distributions and rules are the same;
one generator on one timeline (`--rate` events/s of event time; Beam's default rate, 10,000/s,
rather than Flink's 10 M/s, so that 10 s windows hold about 100,000 events and a run of 2 M
events spans 200 s); no delayed or out-of-order events; a bid has Beam's five fields (Flink's
later `channel` and `url`, used only by q14 and above, are left out).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

BASE_MS = 1_436_918_400_000          # 2015-07-15T00:00:00Z, Beam's BASE_TIME
PROPORTION = 50                       # person 1 : auction 3 : bid 46 in every 50 events
FIRST_ID = 1000                       # FIRST_PERSON_ID = FIRST_AUCTION_ID
FIRST_CATEGORY = 10
CATEGORIES = 5
HOT_AUCTION_RATIO, HOT_BIDDER_RATIO, HOT_SELLER_RATIO = 2, 4, 4   # P(hot) = 1 - 1/ratio
HOT_BATCH = 100                       # a hot id is taken from the last 100 ids
ACTIVE_PEOPLE, IN_FLIGHT_AUCTIONS, LEAD = 1000, 100, 10
AVG_SIZE = {"person": 200, "auction": 500, "bid": 100}
STATES = ["AZ", "CA", "ID", "OR", "WA", "WY"]
CITIES = ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle",
          "Kent", "Cheyenne"]
FIRST_NAMES = ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"]
LAST_NAMES = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"]
BLOCK = 1 << 20                       # events drawn at once: memory stays bounded at any size
ROW_GROUP = 65_536
MS = pa.timestamp("ms")

SCHEMAS = {
    "person": pa.schema([("id", pa.int64()), ("name", pa.string()), ("emailAddress", pa.string()),
                         ("creditCard", pa.string()), ("city", pa.string()), ("state", pa.string()),
                         ("dateTime", MS), ("extra", pa.string())]),
    "auction": pa.schema([("id", pa.int64()), ("itemName", pa.string()), ("description", pa.string()),
                          ("initialBid", pa.int64()), ("reserve", pa.int64()), ("dateTime", MS),
                          ("expires", MS), ("seller", pa.int64()), ("category", pa.int64()),
                          ("extra", pa.string())]),
    "bid": pa.schema([("auction", pa.int64()), ("bidder", pa.int64()), ("price", pa.int64()),
                      ("dateTime", MS), ("extra", pa.string())]),
}


# ---- the generator's id and time rules, over arrays of event numbers ----------------------------

def timestamps(events: np.ndarray, rate: int) -> np.ndarray:
    """Event time in ms since the epoch of each event number (one timeline, `rate` events/s)."""
    return BASE_MS + (events * 1_000_000 // rate) // 1000


def last_person(events: np.ndarray) -> np.ndarray:
    """lastBase0PersonId: the newest person id (base 0) at each event (its own, for a person)."""
    return events // PROPORTION


def last_auction(events: np.ndarray) -> np.ndarray:
    """lastBase0AuctionId: the newest auction id (base 0) at each event (its own, for an auction)."""
    epoch, offset = events // PROPORTION, events % PROPORTION
    return np.where(offset < 1, (epoch - 1) * 3 + 2, epoch * 3 + np.minimum(offset - 1, 2))


def random_person(rng: np.random.Generator, events: np.ndarray) -> np.ndarray:
    """nextBase0PersonId: one of the last 1,000 people, or up to 10 not created yet."""
    people = last_person(events) + 1
    active = np.minimum(people, ACTIVE_PEOPLE)
    return people - active + _below(rng, active + LEAD)


def random_auction(rng: np.random.Generator, events: np.ndarray) -> np.ndarray:
    """nextBase0AuctionId: one of the last 100 auctions, or up to 10 not created yet."""
    newest = last_auction(events)
    oldest = np.maximum(newest - IN_FLIGHT_AUCTIONS, 0)
    return oldest + _below(rng, newest - oldest + 1 + LEAD)


def prices(rng: np.random.Generator, n: int) -> np.ndarray:
    """nextPrice: round(10^(6u) * 100), Java's round (half up)."""
    return np.floor(10.0 ** (rng.random(n) * 6.0) * 100.0 + 0.5).astype(np.int64)


def _below(rng: np.random.Generator, bound: np.ndarray | int) -> np.ndarray:
    """A uniform integer in [0, bound) per element (bound >= 1)."""
    return (rng.random(np.shape(bound)) * bound).astype(np.int64)


def _hot(rng: np.random.Generator, n: int, ratio: int) -> np.ndarray:
    """Java's `random.nextInt(ratio) > 0`: true with probability 1 - 1/ratio."""
    return rng.integers(0, ratio, n) > 0


# ---- strings, built as Arrow buffers (no per-row Python) -----------------------------------------

def _strings(data: np.ndarray, lengths: np.ndarray) -> pa.Array:
    offsets = np.zeros(lengths.size + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(lengths.size, pa.py_buffer(offsets), pa.py_buffer(data))


def exact_strings(rng: np.random.Generator, lengths: np.ndarray) -> pa.Array:
    """nextExactString: letters a-z, each string of its given length."""
    return _strings(rng.integers(ord("a"), ord("z") + 1, int(lengths.sum()), dtype=np.uint8), lengths)


def spaced_strings(rng: np.random.Generator, n: int, max_length: int) -> pa.Array:
    """nextString: 3 to max_length-1 characters, each a space with probability 1/13 else a
    letter, then trimmed of spaces at both ends."""
    lengths = 3 + rng.integers(0, max_length - 3, n)
    total = int(lengths.sum())
    chars = rng.integers(ord("a"), ord("z") + 1, total, dtype=np.uint8)
    space = rng.integers(0, 13, total) == 0
    chars[space] = ord(" ")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    at = np.arange(total)
    first = np.minimum.reduceat(np.where(space, total, at), starts)
    last = np.maximum.reduceat(np.where(space, -1, at), starts)
    keep = (at >= np.repeat(first, lengths)) & (at <= np.repeat(last, lengths))
    return _strings(chars[keep], np.maximum(last - first + 1, 0))


def extras(rng: np.random.Generator, current: np.ndarray, average: int) -> pa.Array:
    """nextExtra: letters making `current + len` average `average` (len within ±20 % of the gap)."""
    gap = average - current
    delta = np.floor(gap * 0.2 + 0.5).astype(np.int64)
    lengths = np.where(current > average, 0, gap - delta + _below(rng, np.maximum(2 * delta, 1)) * (delta > 0))
    return exact_strings(rng, lengths)


def _pick(rng: np.random.Generator, words: list[str], n: int) -> pa.Array:
    return pa.array(words).take(pa.array(rng.integers(0, len(words), n)))


def credit_cards(rng: np.random.Generator, n: int) -> pa.Array:
    """Four groups of four digits, space separated (`%04d %04d %04d %04d`)."""
    digits = rng.integers(ord("0"), ord("9") + 1, (n, 19), dtype=np.uint8)
    digits[:, 4::5] = ord(" ")
    return _strings(digits.reshape(-1), np.full(n, 19))


# ---- the three kinds of events ------------------------------------------------------------------

def people(rng: np.random.Generator, events: np.ndarray, rate: int) -> pa.Table:
    n = events.size
    name = pc.binary_join_element_wise(_pick(rng, FIRST_NAMES, n), _pick(rng, LAST_NAMES, n), " ")
    email = pc.binary_join_element_wise(
        pc.binary_join_element_wise(spaced_strings(rng, n, 7), spaced_strings(rng, n, 5), "@"), ".com", "")
    card, city, state = credit_cards(rng, n), _pick(rng, CITIES, n), _pick(rng, STATES, n)
    size = 8 + sum(pc.utf8_length(c).to_numpy() for c in (name, email, card, city, state))
    return pa.table([FIRST_ID + last_person(events), name, email, card, city, state,
                     pa.array(timestamps(events, rate), MS), extras(rng, size, AVG_SIZE["person"])],
                    schema=SCHEMAS["person"])


def auctions(rng: np.random.Generator, events: np.ndarray, rate: int) -> pa.Table:
    n = events.size
    hot = _hot(rng, n, HOT_SELLER_RATIO)
    seller = np.where(hot, last_person(events) // HOT_BATCH * HOT_BATCH, random_person(rng, events))
    category = FIRST_CATEGORY + rng.integers(0, CATEGORIES, n)
    initial = prices(rng, n)
    now = timestamps(events, rate)
    ahead = IN_FLIGHT_AUCTIONS * PROPORTION // 3            # events until 100 more auctions exist
    horizon = timestamps(events + ahead, rate) - now
    expires = now + 1 + _below(rng, np.maximum(horizon * 2, 1))
    item, description = spaced_strings(rng, n, 20), spaced_strings(rng, n, 100)
    reserve = initial + prices(rng, n)
    size = 8 + pc.utf8_length(item).to_numpy() + pc.utf8_length(description).to_numpy() + 40
    return pa.table([FIRST_ID + last_auction(events), item, description, initial, reserve, pa.array(now, MS),
                     pa.array(expires, MS), FIRST_ID + seller, category, extras(rng, size, AVG_SIZE["auction"])],
                    schema=SCHEMAS["auction"])


def bids(rng: np.random.Generator, events: np.ndarray, rate: int) -> pa.Table:
    n = events.size
    hot_auction = _hot(rng, n, HOT_AUCTION_RATIO)
    auction = np.where(hot_auction, last_auction(events) // HOT_BATCH * HOT_BATCH, random_auction(rng, events))
    hot_bidder = _hot(rng, n, HOT_BIDDER_RATIO)
    bidder = np.where(hot_bidder, last_person(events) // HOT_BATCH * HOT_BATCH + 1, random_person(rng, events))
    return pa.table([FIRST_ID + auction, FIRST_ID + bidder, prices(rng, n), pa.array(timestamps(events, rate), MS),
                     extras(rng, np.full(n, 32), AVG_SIZE["bid"])], schema=SCHEMAS["bid"])


KINDS = {"person": people, "auction": auctions, "bid": bids}


def blocks(events: int, seed: int, rate: int, block: int = BLOCK):
    """(kind, table) for each block of event numbers and kind, in event order; block `k` draws
    from its own stream (seed, k), so a block's values do not depend on the blocks before it."""
    for k, start in enumerate(range(0, events, block)):
        numbers = np.arange(start, min(start + block, events), dtype=np.int64)
        offset = numbers % PROPORTION
        rng = np.random.default_rng([seed, k])
        for kind, mask in (("person", offset < 1), ("auction", (offset >= 1) & (offset < 4)), ("bid", offset >= 4)):
            yield kind, KINDS[kind](rng, numbers[mask], rate)


def generate(events: int, out: Path, seed: int = 7, rate: int = 10_000) -> dict:
    """Write person/auction/bid.parquet and meta.json into `out`; returns the meta."""
    if events < 1 or rate < 1:
        raise ValueError(f"events ({events}) and rate ({rate}) must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    writers = {kind: pq.ParquetWriter(out / f"{kind}.parquet", SCHEMAS[kind]) for kind in KINDS}
    rows = dict.fromkeys(KINDS, 0)
    try:
        for kind, table in blocks(events, seed, rate):
            writers[kind].write_table(table, row_group_size=ROW_GROUP)
            rows[kind] += table.num_rows
    finally:
        for w in writers.values():
            w.close()
    meta = {"events": events, "seed": seed, "rate": rate, "rows": rows, "generator": "nexmark (Beam rules)"}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.nexmark.gen", description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--out", default="/tmp/nexmark-data")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate", type=int, default=10_000, help="events per second of event time")
    a = ap.parse_args()
    start = time.perf_counter()
    try:
        meta = generate(a.events, Path(a.out), a.seed, a.rate)
    except ValueError as e:
        raise SystemExit(f"python -m bench.nexmark.gen: {e}") from None
    print(json.dumps(meta), f"in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
