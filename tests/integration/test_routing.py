"""DIRECTOR routes each row by its key's value, MANAGER by its event time against `until` boundaries.

Every route is read back as its own retained log ("TRADECRAFT/ANALYTIC.ROUTE") and compared row for
row with a pyarrow/numpy reference computed here, never with the system's own output.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tests.integration.helpers import assert_rows_equal, read, retained_rows, wait_state


# ---- DIRECTOR ------------------------------------------------------------------------------

def orders(n: int, seed: int = 7) -> pa.Table:
    """id, region (int64 with nulls), country (string with nulls, odd cases), amount."""
    rng = np.random.default_rng(seed)
    countries = np.array(["fr", "de", "us", "FR", "jp", "", "br", "de-at"], dtype=object)
    return pa.table({
        "id": np.arange(n, dtype=np.int64),
        "region": pa.array(rng.integers(-2, 7, n), pa.int64(), mask=rng.random(n) < 0.03),
        "country": pa.array(countries[rng.integers(0, len(countries), n)].tolist(), pa.string(),
                            mask=rng.random(n) < 0.02),
        "amount": rng.integers(0, 100, n),
    })


INT_ROUTES = {"1": "east", "2": "east", "-1": "east", "3": "west", "4": "north"}
STRING_ROUTES = {"fr": "europe", "de": "europe", "us": "america", "": "blank"}


async def test_director_routes_int_and_string_key_values_to_their_routes_and_the_rest_to_default(
        congregation, tmp_path):
    table = orders(30_000)
    pq.write_table(table, tmp_path / "orders.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "shop", "analytics": [
        {"name": "orders", "kind": "stream", "source": {"path": str(tmp_path / "orders.parquet")}},
        {"name": "router", "kind": "director", "input": "orders", "key": "region",
         "routes": INT_ROUTES, "default": "other"},
        {"name": "by_country", "kind": "director", "input": "orders", "key": "country",
         "routes": STRING_ROUTES, "default": "rest", "output": True},
        {"name": "eu_big", "kind": "transform", "input": "by_country.europe", "where": "amount >= 50"}]})

    region = table["region"].to_numpy(zero_copy_only=False)   # nulls become NaN: never a route value
    by_region = {route: np.zeros(table.num_rows, dtype=bool) for route in {*INT_ROUTES.values(), "other"}}
    for value, route in INT_ROUTES.items():
        by_region[route] |= region == int(value)
    by_region["other"] = ~(by_region["east"] | by_region["west"] | by_region["north"])
    assert by_region["other"].sum() > table["region"].null_count > 0   # nulls and unlisted values occur

    country = table["country"]
    by_country = {
        "europe": pc.fill_null(pc.is_in(country, value_set=pa.array(["fr", "de"])), False),
        "america": pc.fill_null(pc.equal(country, "us"), False),
        "blank": pc.fill_null(pc.equal(country, ""), False),
    }
    by_country["rest"] = pc.invert(pc.or_(pc.or_(by_country["europe"], by_country["america"]),
                                          by_country["blank"]))
    # case matters ("FR" is not "fr"), a longer value is no prefix match ("de-at"), null is no value
    assert {"FR", "de-at", None} <= set(table.filter(by_country["rest"])["country"].to_pylist())

    for route, mask in sorted(by_region.items()):
        got = await read(db, f"shop/router.{route}")
        assert_rows_equal(got, table.filter(pa.array(mask)), f"shop/router.{route}")
    for route, mask in sorted(by_country.items()):
        got = await read(db, f"shop/by_country.{route}")
        assert_rows_equal(got, table.filter(mask), f"shop/by_country.{route}")
    europe = table.filter(by_country["europe"])
    got = await read(db, "shop/eu_big")
    assert_rows_equal(got, europe.filter(pc.greater_equal(europe["amount"], 50)), "shop/eu_big")

    await wait_state(db, "shop")
    retained = await retained_rows(db, "shop")
    assert {k: v for k, v in retained.items() if not k.endswith(".rejected")} == {
        **{f"router.{route}": int(mask.sum()) for route, mask in by_region.items()},
        **{f"by_country.{route}": pc.sum(mask).as_py() for route, mask in by_country.items()},
        "eu_big": pc.sum(pc.greater_equal(europe["amount"], 50)).as_py()}


# ---- MANAGER -------------------------------------------------------------------------------

DAY = np.datetime64("2024-05-01T00:00:00", "ms")
# until boundaries in the document, and the same instants computed here independently
UNTILS = ["2024-05-01T01:00:00Z", "2024-05-01T02:30:00.500Z", "2024-05-01T05:00:00+02:00"]
BOUNDS = [DAY + np.timedelta64(1, "h"),
          DAY + np.timedelta64(2 * 3600_000 + 30 * 60_000 + 500, "ms"),
          DAY + np.timedelta64(3, "h")]                      # 05:00+02:00 is 03:00 UTC


def readings(n: int, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = DAY + rng.integers(-600_000, 4 * 3600_000, n).astype("timedelta64[ms]")
    ts[:6] = [BOUNDS[0], BOUNDS[0] - np.timedelta64(1, "ms"), BOUNDS[1], BOUNDS[1] - np.timedelta64(1, "ms"),
              BOUNDS[2], BOUNDS[2] - np.timedelta64(1, "ms")]   # on and just before each boundary
    null_ts = rng.random(n) < 0.01
    null_ts[:6] = False
    return pa.table({
        "id": np.arange(n, dtype=np.int64),
        "ts": pa.array(ts, pa.timestamp("ms"), mask=null_ts),
        "value": rng.normal(size=n),
    })


async def test_manager_routes_by_event_time_before_each_until_boundary_and_rejects_null_times(
        congregation, tmp_path):
    table = readings(30_000)
    pq.write_table(table, tmp_path / "readings.parquet")
    db = congregation.db()
    await db.submit({"tradecraft": "sensors", "analytics": [
        {"name": "readings", "kind": "stream", "time": "ts",
         "source": {"path": str(tmp_path / "readings.parquet")}},
        {"name": "clock", "kind": "manager", "input": "readings", "time": "ts", "routes": [
            {"until": UNTILS[0], "to": "cold"},
            {"until": UNTILS[1], "to": "warm"},
            {"until": UNTILS[2], "to": "cold"},          # a route may take several time slices
            {"to": "hot"}]}]})
    assert pq.read_schema(tmp_path / "readings.parquet").field("ts").type == pa.timestamp("ms")

    ts = table["ts"].to_numpy(zero_copy_only=False)       # nulls become NaT: compares False
    null = table["ts"].is_null().to_numpy(zero_copy_only=False)
    slot0 = ts < BOUNDS[0]
    slot1 = (ts >= BOUNDS[0]) & (ts < BOUNDS[1])
    slot2 = (ts >= BOUNDS[1]) & (ts < BOUNDS[2])
    slot3 = (ts >= BOUNDS[2]) & ~null
    masks = {"cold": slot0 | slot2, "warm": slot1, "hot": slot3}
    assert (masks["cold"] | masks["warm"] | masks["hot"] | null).all()
    assert not (masks["cold"] & masks["warm"]).any() and not (masks["warm"] & masks["hot"]).any()

    for route, mask in sorted(masks.items()):
        got = await read(db, f"sensors/clock.{route}")
        assert_rows_equal(got, table.filter(pa.array(mask)), f"sensors/clock.{route}")

    got = await read(db, "sensors/clock.rejected")
    assert got.column_names == ["id", "ts", "value", "reason"]
    assert_rows_equal(got.select(["id", "ts", "value"]), table.filter(pa.array(null)), "sensors/clock.rejected")
    reasons = set(got["reason"].to_pylist())
    assert len(reasons) == 1 and "null" in reasons.pop()
    await wait_state(db, "sensors")
