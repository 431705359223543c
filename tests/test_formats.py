"""File formats: readers, writers, conform and following a growing file.

Expected values are built independently on the test side (Python's json, datetime, sqlite3, and the
`to_pylist` of the input), never from our own earlier output.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import math
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio

from hallelujah import formats, formats_write
from hallelujah.errors import NotFound, SchemaMismatch
from hallelujah.formats import (
    BATCH_ROWS,
    READ_FORMATS,
    WRITE_FORMATS,
    batch_to_jsonl,
    conform,
    follow_batches,
    format_of,
    open_writer,
    read_batches,
    source_schema,
)

TRICKY = [
    'say "hi"', "back\\slash", "new\nline", "tab\there", "cr\rlf\r\n", "unicode é ü 中文 🎉",
    "".join(chr(c) for c in range(32)), "del\x7f", "line sep \u2028 \u2029", "", "\\\"", "}{,:",
    "NA", "null", "ends with backslash\\",
]
TS = 1_700_000_000  # 2023-11-14T22:13:20Z


def iso(value: dt.datetime, unit: str) -> str:
    """Reference ISO-8601 UTC text, independent of the code under test."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    digits = {"s": 0, "ms": 3, "us": 6}[unit]
    fraction = f"{value.microsecond:06d}"[:digits]
    return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"


def expected_rows(data: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    units = {f.name: f.type.unit for f in data.schema if pa.types.is_timestamp(f.type)}
    rows = data.to_pylist()
    for row in rows:
        for key, value in row.items():
            if key in units and value is not None:
                row[key] = iso(value, units[key])
            elif isinstance(value, float) and not math.isfinite(value):
                row[key] = None
    return rows


def parsed_lines(text: bytes) -> list[dict[str, Any]]:
    assert text == b"" or text.endswith(b"\n")
    return [json.loads(line) for line in text.decode("utf-8").split("\n")[:-1]]


def sample_table(rows: int = 50) -> pa.Table:
    """Every schema type, with a null in each column and tricky strings."""
    def with_nulls(values: list[Any]) -> list[Any]:
        return [None if i % 7 == 3 else v for i, v in enumerate(values)]
    n = range(rows)
    return pa.table({
        "i32": pa.array(with_nulls([i - 20 for i in n]), pa.int32()),
        "i64": pa.array(with_nulls([(i - 25) * 10**15 for i in n]), pa.int64()),
        "f64": pa.array(with_nulls([i / 3 - 5 for i in n]), pa.float64()),
        "flag": pa.array(with_nulls([i % 2 == 0 for i in n]), pa.bool_()),
        "text": pa.array(with_nulls([TRICKY[i % len(TRICKY)] for i in n]), pa.string()),
        "t_s": pa.array(with_nulls([TS + i for i in n]), pa.timestamp("s")),
        "t_ms": pa.array(with_nulls([TS * 1000 + i * 1001 for i in n]), pa.timestamp("ms")),
        "t_us": pa.array(with_nulls([TS * 10**6 + i * 1_000_001 for i in n]), pa.timestamp("us")),
    })


def write_all(path: Path, fmt: str, table: pa.Table, batch_rows: int = 16) -> None:
    with open_writer(path, fmt, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=batch_rows):
            writer.write(batch)


def read_all(source: dict[str, Any], schema: pa.Schema | None = None, **kw: Any) -> pa.Table:
    batches = list(read_batches(source, schema, **kw))
    if not batches:
        assert schema is not None
        return schema.empty_table()
    return pa.Table.from_batches(batches)


# ---- format_of ---------------------------------------------------------------------------------

def test_constants_are_the_contract():
    assert READ_FORMATS == ("parquet", "csv", "jsonl", "sqlite", "arrow")
    assert WRITE_FORMATS == ("jsonl", "csv", "parquet", "arrow")
    assert BATCH_ROWS == 65536


@pytest.mark.parametrize("name, fmt", [
    ("a.parquet", "parquet"), ("a.pq", "parquet"), ("a.CSV", "csv"), ("a.jsonl", "jsonl"),
    ("a.ndjson", "jsonl"), ("a.json", "jsonl"), ("a.sqlite", "sqlite"), ("a.db", "sqlite"),
    ("dir.x/a.sqlite3", "sqlite"),
])
def test_format_of_reads_the_extension(name, fmt):
    assert format_of(name) == fmt
    assert format_of(Path(name)) == fmt


def test_format_of_explicit_wins_and_unknown_names_the_path():
    assert format_of("data.csv", "parquet") == "parquet"
    assert format_of("data.txt", "jsonl") == "jsonl"
    with pytest.raises(ValueError, match="data.txt"):
        format_of("data.txt")
    with pytest.raises(ValueError, match="xml"):
        format_of("data.csv", "xml")


# ---- JSON lines writing ------------------------------------------------------------------------

def test_jsonl_lines_parse_and_equal_the_rows():
    table = sample_table()
    for batch in table.to_batches(max_chunksize=17):
        assert parsed_lines(batch_to_jsonl(batch)) == expected_rows(batch)


def test_jsonl_escapes_every_tricky_string_and_keeps_unicode():
    batch = pa.record_batch({"s": TRICKY, "t": pa.array(TRICKY, pa.large_string())})
    text = batch_to_jsonl(batch)
    assert parsed_lines(text) == [{"s": s, "t": s} for s in TRICKY]
    assert "中文 🎉".encode() in text  # non-ASCII stays UTF-8
    assert b'"tab\\there"' in text and b"\\u0001" in text


def test_jsonl_tricky_field_names_are_escaped():
    batch = pa.record_batch({'we"ird\\': [1], "ü": [2]})
    assert parsed_lines(batch_to_jsonl(batch)) == [{'we"ird\\': 1, "ü": 2}]


def test_jsonl_nulls_in_every_type_are_null():
    kinds = [pa.int32(), pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.timestamp("s"),
             pa.timestamp("ms"), pa.timestamp("us"), pa.null()]
    batch = pa.record_batch([pa.nulls(3, k) for k in kinds], names=[f"c{i}" for i in range(len(kinds))])
    assert parsed_lines(batch_to_jsonl(batch)) == [{f"c{i}": None for i in range(len(kinds))}] * 3


def test_jsonl_timestamps_show_the_unit_precision_in_utc():
    ts = {
        "s": pa.array([TS], pa.timestamp("s")),
        "ms": pa.array([TS * 1000 + 5], pa.timestamp("ms")),
        "us": pa.array([TS * 10**6 + 1], pa.timestamp("us")),
        "ns": pa.array([TS * 10**9 + 1], pa.timestamp("ns")),
        "zoned": pa.array([TS * 10**6], pa.timestamp("us", "Europe/Paris")),
        "early": pa.array([-1], pa.timestamp("s")),
    }
    assert parsed_lines(batch_to_jsonl(pa.record_batch(ts))) == [{
        "s": "2023-11-14T22:13:20Z", "ms": "2023-11-14T22:13:20.005Z",
        "us": "2023-11-14T22:13:20.000001Z", "ns": "2023-11-14T22:13:20.000000001Z",
        "zoned": "2023-11-14T22:13:20.000000Z", "early": "1969-12-31T23:59:59Z",
    }]


def test_jsonl_floats_nan_and_infinity_are_null_and_floats_stay_floats():
    values = [1.0, -0.0, 0.1, 1e20, 1e-7, float("nan"), float("inf"), -float("inf"), None, 2.0**53, 123.5]
    batch = pa.record_batch({"f": pa.array(values), "g": pa.array(values, pa.float32())})
    lines = batch_to_jsonl(batch).decode().splitlines()
    got = [json.loads(line) for line in lines]
    finite = [None if v is None or not math.isfinite(v) else v for v in values]
    assert [row["f"] for row in got] == finite
    # float32 is written in its own shortest form ("0.1"), which reads back as the same float32.
    as_float32 = [None if row["g"] is None else pa.scalar(row["g"], pa.float32()).as_py() for row in got]
    assert as_float32 == [None if v is None else pa.scalar(v, pa.float32()).as_py() for v in finite]
    assert all(isinstance(row["f"], float) for row in got if row["f"] is not None)
    assert lines[0] == '{"f":1.0,"g":1.0}'


def test_jsonl_bools_ints_and_empty_batches():
    batch = pa.record_batch({"b": [True, False], "u": pa.array([2**64 - 1, 0], pa.uint64()), "i": [-(2**63), 7]})
    assert batch_to_jsonl(batch) == (
        b'{"b":true,"u":18446744073709551615,"i":-9223372036854775808}\n{"b":false,"u":0,"i":7}\n')
    assert batch_to_jsonl(batch.slice(0, 0)) == b""
    assert batch_to_jsonl(pa.record_batch({"x": pa.array([], pa.float64())})) == b""


def test_jsonl_of_sliced_batch_across_encoding_slices(monkeypatch):
    monkeypatch.setattr(formats_write, "JSONL_SLICE_ROWS", 7)
    batch = sample_table(60).to_batches()[0].slice(5, 40)
    assert parsed_lines(batch_to_jsonl(batch)) == expected_rows(batch)


def test_jsonl_refuses_a_type_with_no_json_form():
    with pytest.raises(ValueError, match='field "l"'):
        batch_to_jsonl(pa.record_batch({"l": pa.array([[1]])}))


def test_jsonl_writer_to_a_stream_leaves_it_open_and_conforms():
    schema = pa.schema([("a", pa.int32()), ("t", pa.timestamp("ms"))])
    sink = io.BytesIO()
    with open_writer(sink, "jsonl", schema) as writer:
        writer.write(pa.record_batch({"t": ["2023-11-14T22:13:20Z"], "a": pa.array([5], pa.int64())}))
        writer.write(pa.table({"a": pa.array([6], pa.int32()), "t": pa.array([0], pa.timestamp("ms"))}))
    assert not sink.closed
    assert parsed_lines(sink.getvalue()) == [
        {"a": 5, "t": "2023-11-14T22:13:20.000Z"}, {"a": 6, "t": "1970-01-01T00:00:00.000Z"}]
    with pytest.raises(SchemaMismatch, match='field "b"'):
        open_writer(io.BytesIO(), "jsonl", schema).write(pa.record_batch({"a": [1], "t": [1], "b": [1]}))


def test_open_writer_refuses_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="sqlite"):
        open_writer(tmp_path / "x.db", "sqlite", pa.schema([("a", pa.int64())]))


# ---- round trips through files ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "arrow"])
def test_written_file_reads_back_equal(tmp_path, fmt):
    table = sample_table(120)
    path = tmp_path / f"out.{fmt}"
    write_all(path, fmt, table)
    back = read_all({"path": path}, table.schema, batch_rows=50)
    assert back.equals(table), (back.to_pylist()[:3], table.to_pylist()[:3])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "arrow"])
def test_empty_output_reads_back_empty(tmp_path, fmt):
    schema = sample_table().schema
    path = tmp_path / f"empty.{fmt}"
    with open_writer(path, fmt, schema) as writer:
        writer.write(pa.RecordBatch.from_pylist([], schema))
    assert read_all({"path": path}, schema).num_rows == 0
    if fmt == "csv":
        assert path.read_text().splitlines() == [",".join(f'"{n}"' for n in schema.names)]
    if fmt == "jsonl":
        assert path.read_bytes() == b""


def test_csv_keeps_nulls_apart_from_empty_strings_and_writes_iso_timestamps(tmp_path):
    table = pa.table({"s": ["", None, "NA"], "t": pa.array([TS, None, 0], pa.timestamp("s"))})
    path = tmp_path / "x.csv"
    write_all(path, "csv", table)
    assert path.read_text().splitlines() == ['"s","t"', '"","2023-11-14T22:13:20Z"', ",", '"NA","1970-01-01T00:00:00Z"']
    assert read_all({"path": path}, table.schema).equals(table)


def test_parquet_writer_uses_large_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(formats_write, "ROW_GROUP_ROWS", 100)
    table = sample_table(350)
    path = tmp_path / "x.parquet"
    write_all(path, "parquet", table, batch_rows=30)
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100, 100, 100, 50]
    assert conform(pq.read_table(path), table.schema).equals(table)  # Parquet stores seconds as ms


def test_read_batches_bounds_batch_rows_for_every_format(tmp_path):
    table = sample_table(1000)
    for fmt in ("csv", "jsonl", "parquet"):
        path = tmp_path / f"big.{fmt}"
        write_all(path, fmt, table, batch_rows=1000)
        sizes = [b.num_rows for b in read_batches({"path": path}, table.schema, batch_rows=64)]
        assert sum(sizes) == 1000 and max(sizes) <= 64, (fmt, sizes)


def test_read_batches_without_schema_gives_the_file_types(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,x,2.5\n2,,\n")
    table = read_all({"path": path, "format": "csv"})
    assert table.schema == pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64())])
    assert table.to_pylist() == [{"a": 1, "b": "x", "c": 2.5}, {"a": 2, "b": None, "c": None}]


def test_jsonl_reader_accepts_epoch_numbers_absent_keys_and_zoned_text(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_text('{"id": 1, "t": 1700000000}\n{"t": 1700000001}\n')
    schema = pa.schema([("id", pa.int64()), ("t", pa.timestamp("s"))])
    assert read_all({"path": path}, schema).to_pylist() == [
        {"id": 1, "t": dt.datetime(2023, 11, 14, 22, 13, 20)}, {"id": None, "t": dt.datetime(2023, 11, 14, 22, 13, 21)}]
    path.write_text('{"id": 1, "t": "2023-11-14T23:13:20+01:00"}\n{"id": 2, "t": "2023-11-14T22:13:21"}\n')
    assert read_all({"path": path}, schema).column("t").to_pylist() == [
        dt.datetime(2023, 11, 14, 22, 13, 20), dt.datetime(2023, 11, 14, 22, 13, 21)]


def test_reading_data_that_does_not_fit_names_the_field(tmp_path):
    schema = pa.schema([("id", pa.int64()), ("lat", pa.float64())])
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("id,lat\n1,2.5\n2,north\n")
    with pytest.raises(SchemaMismatch, match='field "lat"'):
        read_all({"path": csv_path}, schema)
    json_path = tmp_path / "bad.jsonl"
    json_path.write_text('{"id": 1, "lat": 2.5}\n{"id": 2, "lat": "north"}\n')
    with pytest.raises(SchemaMismatch, match='field "lat"'):
        read_all({"path": json_path}, schema)
    json_path.write_text('{"id": 1, "lat": 2.5, "extra": true}\n')
    with pytest.raises(SchemaMismatch, match='field "extra"'):
        read_all({"path": json_path}, schema)
    json_path.write_text('{"id": 1, "lat": 2.5}\n' * 50_000 + '{"id": 1, "lat": 2.5, "extra": true}\n')
    with pytest.raises(SchemaMismatch, match='field "extra"'):  # not a field of the file's first MiB
        read_all({"path": json_path}, schema, project=True)
    csv_path.write_text("id,b\n1,2\n")
    with pytest.raises(SchemaMismatch, match='field "b" is not in the schema'):  # not a subset: no projection
        read_all({"path": csv_path}, schema, project=True)


WIDE = pa.table({"d": pa.array([3, None, 1], pa.int32()), "id": [10, 20, 30], "name": ["a", None, "c"],
                 "lat": [1.5, 2.5, None]})


@pytest.mark.parametrize("fmt", READ_FORMATS)
def test_a_schema_that_is_some_of_the_file_s_fields_reads_only_those(tmp_path, fmt):
    path = tmp_path / f"wide.{fmt}"
    source: dict[str, Any] = {"path": path, "format": fmt}
    if fmt == "sqlite":
        with closing(sqlite3.connect(path)) as con, con:
            con.execute("CREATE TABLE t (d INTEGER, id INTEGER, name TEXT, lat REAL)")
            con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [tuple(r.values()) for r in WIDE.to_pylist()])
        source["table"] = "t"
    else:
        with open_writer(path, fmt, WIDE.schema) as w:
            w.write(WIDE.to_batches()[0])
    schema = pa.schema([("lat", pa.float64()), ("d", pa.int64())])  # in another order, d wider
    with pytest.raises(SchemaMismatch, match='field "id" is not in the schema'):  # a published file may not
        read_all(source, schema)
    got = read_all(source, schema, project=True)
    assert got.schema == schema
    assert got.to_pylist() == WIDE.select(["lat", "d"]).cast(schema).to_pylist()
    if fmt == "parquet":  # read in parts too, each row group with only the declared columns
        positioned = [b for _, b, _ in formats.read_positioned(source, schema, 0, 1)]
        assert pa.Table.from_batches(positioned).equals(got)


def test_projection_reads_only_the_declared_parquet_columns(tmp_path, monkeypatch):
    path = tmp_path / "wide.parquet"
    pq.write_table(WIDE, path)
    asked: list[Any] = []
    real = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kw: Any) -> Any:
        asked.append(kw.get("columns"))
        return real(self, *args, **kw)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)  # pyarrow's, not ours: what it is asked for
    read_all({"path": path}, pa.schema([("name", pa.string()), ("d", pa.int32())]), project=True)
    read_all({"path": path}, WIDE.schema, project=True)
    assert asked == [["d", "name"], None]


def test_an_undeclared_csv_field_is_never_parsed_so_its_values_cannot_fail_the_read(tmp_path):
    path = tmp_path / "wide.csv"
    n = 200_000  # past the first parse block, where pyarrow would have inferred "skip" an int
    path.write_text("id,skip\n" + "".join(f"{i},{i}\n" for i in range(n)) + f"{n},not a number\n")
    got = read_all({"path": path}, pa.schema([("id", pa.int64())]), project=True)
    assert got.column("id").to_pylist() == list(range(n + 1))


def test_a_jsonl_file_s_fields_are_those_of_its_first_lines(tmp_path):
    path = tmp_path / "wide.jsonl"
    path.write_text('{"id": 1, "skip": "x", "lat": 2.5}\n{"id": 2, "lat": 3.5, "other": [1]}\n')
    schema = pa.schema([("id", pa.int64()), ("lat", pa.float64())])
    assert read_all({"path": path}, schema, project=True).to_pylist() == [{"id": 1, "lat": 2.5}, {"id": 2, "lat": 3.5}]


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="nope.csv"):
        list(read_batches({"path": tmp_path / "nope.csv"}))
    with pytest.raises(NotFound):
        source_schema({"path": str(tmp_path / "nope.parquet")})


def test_source_schema_of_each_file_format(tmp_path):
    table = pa.table({"a": [1, 2], "b": ["x", None], "c": [0.5, 1.5]})
    pq.write_table(table, tmp_path / "x.parquet")
    (tmp_path / "x.csv").write_text("a,b,c\n1,x,0.5\n2,,1.5\n")
    (tmp_path / "x.jsonl").write_text('{"a": 1, "b": "x", "c": 0.5}\n{"a": 2, "b": null, "c": 1.5}\n')
    for name in ("x.parquet", "x.csv", "x.jsonl"):
        assert source_schema({"path": tmp_path / name}) == table.schema, name
    (tmp_path / "empty.csv").write_text("")
    assert source_schema({"path": tmp_path / "empty.csv"}) == pa.schema([])


# ---- sqlite ------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiles.sqlite"
    con = sqlite3.connect(path)
    con.execute('CREATE TABLE "tile list" (tile INTEGER, country TEXT, area REAL, land BOOLEAN, '
                "seen DATETIME, misc)")
    rows = [(i, f"c{i % 3}" if i % 5 else None, i * 1.5, i % 2, f"2023-11-14T22:13:{i:02d}", i * 2)
            for i in range(10)]
    con.executemany('INSERT INTO "tile list" VALUES (?, ?, ?, ?, ?, ?)', rows)
    con.commit()
    con.close()
    return path


def test_sqlite_source_schema_from_declared_types_and_rows(sqlite_file):
    assert source_schema({"path": sqlite_file, "table": "tile list"}) == pa.schema([
        ("tile", pa.int64()), ("country", pa.string()), ("area", pa.float64()), ("land", pa.bool_()),
        ("seen", pa.timestamp("us")), ("misc", pa.int64())])


def test_sqlite_source_reads_rows_in_batches_and_conforms(sqlite_file):
    schema = pa.schema([("tile", pa.int32()), ("country", pa.string()), ("area", pa.float64()),
                        ("land", pa.bool_()), ("seen", pa.timestamp("s")), ("misc", pa.int64())])
    batches = list(read_batches({"path": sqlite_file, "table": "tile list"}, schema, batch_rows=4))
    assert [b.num_rows for b in batches] == [4, 4, 2]
    con = sqlite3.connect(sqlite_file)
    reference = [
        {"tile": t, "country": c, "area": a, "land": bool(land),
         "seen": dt.datetime.fromisoformat(s), "misc": m}
        for t, c, a, land, s, m in con.execute('SELECT * FROM "tile list"')]
    con.close()
    assert pa.Table.from_batches(batches).to_pylist() == reference


def test_sqlite_batches_can_be_pulled_from_another_thread(sqlite_file):
    batches = read_batches({"path": sqlite_file, "table": "tile list"}, batch_rows=4)
    first = [next(batches)]
    rest: list[pa.RecordBatch] = []
    thread = threading.Thread(target=lambda: rest.extend(batches))  # as trio.to_thread may do
    thread.start()
    thread.join()
    assert [b.num_rows for b in first + rest] == [4, 4, 2]


def test_sqlite_column_of_mixed_values_reads_as_text(tmp_path):
    path = tmp_path / "mixed.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (v)")
    con.executemany("INSERT INTO t VALUES (?)", [(1,), ("two",), (None,), (3.5,)])
    con.commit()
    con.close()
    source = {"path": path, "table": "t"}
    assert source_schema(source) == pa.schema([("v", pa.string())])
    assert read_all(source).column("v").to_pylist() == ["1", "two", None, "3.5"]


def test_sqlite_missing_table_and_badly_typed_values(sqlite_file):
    with pytest.raises(NotFound, match='"nope"'):
        list(read_batches({"path": sqlite_file, "table": "nope"}))
    con = sqlite3.connect(sqlite_file)
    con.execute("INSERT INTO \"tile list\" (tile) VALUES ('not a number')")
    con.commit()
    con.close()
    with pytest.raises(SchemaMismatch, match='field "tile"'):
        list(read_batches({"path": sqlite_file, "table": "tile list"}))


# ---- conform -----------------------------------------------------------------------------------

def test_conform_reorders_and_casts_safely():
    schema = pa.schema([("t", pa.timestamp("ms")), ("n", pa.int32()), ("x", pa.float64())])
    batch = pa.record_batch({"x": pa.array([1, 2], pa.int64()), "n": pa.array([3, None], pa.int64()),
                             "t": pa.array([1, 2], pa.int64())})
    out = conform(batch, schema)
    assert isinstance(out, pa.RecordBatch) and out.schema == schema
    assert out.to_pylist() == [
        {"t": dt.datetime(1970, 1, 1, 0, 0, 0, 1000), "n": 3, "x": 1.0},
        {"t": dt.datetime(1970, 1, 1, 0, 0, 0, 2000), "n": None, "x": 2.0}]
    table = conform(pa.table(batch), schema)
    assert isinstance(table, pa.Table) and table.equals(pa.table(out))


@pytest.mark.parametrize("unit, values, expected", [
    ("s", [1_700_000_000], [dt.datetime(2023, 11, 14, 22, 13, 20)]),
    ("ms", [1_700_000_000_123], [dt.datetime(2023, 11, 14, 22, 13, 20, 123000)]),
    ("us", [1_700_000_000_000_001], [dt.datetime(2023, 11, 14, 22, 13, 20, 1)]),
])
def test_conform_ints_are_epoch_values_of_the_unit(unit, values, expected):
    schema = pa.schema([("t", pa.timestamp(unit))])
    assert conform(pa.record_batch({"t": values}), schema).column(0).to_pylist() == expected


def test_conform_parses_iso_strings_naive_zoned_mixed_and_epoch_text():
    schema = pa.schema([("t", pa.timestamp("us"))])
    texts = ["2023-11-14T22:13:20.000001Z", "2023-11-14 22:13:20", "2023-11-14T23:13:20+01:00", None,
             "2023-11-14"]
    assert conform(pa.record_batch({"t": texts}), schema).column(0).to_pylist() == [
        dt.datetime(2023, 11, 14, 22, 13, 20, 1), dt.datetime(2023, 11, 14, 22, 13, 20),
        dt.datetime(2023, 11, 14, 22, 13, 20), None, dt.datetime(2023, 11, 14)]
    assert conform(pa.record_batch({"t": ["1700000000000001"]}), schema).column(0).to_pylist() == [
        dt.datetime(2023, 11, 14, 22, 13, 20, 1)]
    with pytest.raises(SchemaMismatch, match='field "t": expected timestamp\\[us\\], got string'):
        conform(pa.record_batch({"t": ["yesterday"]}), schema)


def test_conform_errors_name_the_field_and_both_types():
    schema = pa.schema([("id", pa.int32()), ("lat", pa.float64())])
    with pytest.raises(SchemaMismatch, match='^field "lat": expected float64, got string$'):
        conform(pa.record_batch({"id": [1], "lat": ["north"]}), schema)
    with pytest.raises(SchemaMismatch, match='^field "id": expected int32, got int64 '):
        conform(pa.record_batch({"id": [2**40], "lat": [1.0]}), schema)
    with pytest.raises(SchemaMismatch, match='^field "lat" is missing'):
        conform(pa.record_batch({"id": [1]}), schema)
    with pytest.raises(SchemaMismatch, match='^field "extra" is not in the schema'):
        conform(pa.record_batch({"id": [1], "lat": [1.0], "extra": [1]}), schema)
    with pytest.raises(SchemaMismatch, match='field "id": expected int32, got float64'):
        conform(pa.record_batch({"id": [1.5], "lat": [1.0]}), schema)
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False)])
    with pytest.raises(SchemaMismatch, match='field "id"'):
        conform(pa.record_batch({"id": [1, None]}), strict)


def test_conform_accepts_all_null_and_dictionary_columns():
    schema = pa.schema([("s", pa.string()), ("n", pa.float64())])
    batch = pa.record_batch({"s": pa.array(["a", "b", "a"]).dictionary_encode(), "n": pa.nulls(3)})
    assert conform(batch, schema).to_pylist() == [{"s": "a", "n": None}, {"s": "b", "n": None}, {"s": "a", "n": None}]


# ---- follow_batches ----------------------------------------------------------------------------

async def collect_follow(source: dict[str, Any], schema: pa.Schema, start_offset: int = 0):
    """Run follow_batches in a task; return (channel of its items, nursery cancel scope)."""
    send, receive = trio.open_memory_channel[tuple[int, pa.RecordBatch]](100)

    async def follow() -> None:
        async for item in follow_batches(source, schema, start_offset, poll_interval=0.01):
            await send.send(item)
    return follow, receive


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


async def test_follow_batches_yields_complete_appended_csv_lines(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"")
    schema = pa.schema([("id", pa.int64()), ("t", pa.timestamp("s"))])
    follow, receive = await collect_follow({"path": path}, schema)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            append(path, b"id,t\n1,2023-11-14T22:13:20Z\n2,")  # header, a line, half a line
            offset, batch, rejects = await receive.receive()
            assert rejects is None
            assert offset == len(b"id,t\n1,2023-11-14T22:13:20Z\n")
            assert batch.schema == schema and batch.to_pylist() == [{"id": 1, "t": dt.datetime(2023, 11, 14, 22, 13, 20)}]
            with trio.move_on_after(0.1):
                pytest.fail(f"half a line was read: {await receive.receive()}")
            append(path, b"1700000001\n3,1700000002\n")
            offset2, batch, _ = await receive.receive()
            assert offset2 == path.stat().st_size
            assert batch.column("id").to_pylist() == [2, 3]
            nursery.cancel_scope.cancel()
    # Resuming at a saved offset still reads the header, then only what follows the offset.
    follow, receive = await collect_follow({"path": path}, schema, start_offset=offset)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            assert (await receive.receive())[1].column("id").to_pylist() == [2, 3]
            nursery.cancel_scope.cancel()


async def test_follow_batches_tails_jsonl_rejects_bad_lines_and_refuses_a_field_not_in_the_schema(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"id": 1, "name": "a"}\n')
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    follow, receive = await collect_follow({"path": path, "format": "jsonl"}, schema)
    with pytest.raises(ExceptionGroup) as raised:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                assert (await receive.receive())[1].to_pylist() == [{"id": 1, "name": "a"}]
                append(path, b'{"id": 2, "name": "b\\n\\"q\\""}\n\n{"name": "c"}\n')
                offset, batch, rejects = await receive.receive()
                assert offset == path.stat().st_size and rejects is None
                assert batch.to_pylist() == [{"id": 2, "name": 'b\n"q"'}, {"id": None, "name": "c"}]
                append(path, b'{"id": 3, "name": 4}\n{"id": 4, "name": "d"}\n{"id": 5, "name": "e"\n')
                offset, batch, rejects = await receive.receive()
                assert offset == path.stat().st_size
                assert batch.to_pylist() == [{"id": 4, "name": "d"}]
                assert rejects.rows.to_pylist() == [{"id": None, "name": None}] * 2
                assert rejects.reasons == ['line 5: field "name": expected string', "line 7: not valid JSON lines"]
                append(path, b'{"id": 6, "name": "f", "extra": 1}\n')
                await trio.sleep_forever()
    assert raised.group_contains(SchemaMismatch, match='field "extra"')


@pytest.mark.parametrize("fmt, head, line", [
    ("csv", b"id,skip,name\n", b"%d,x,n%d\n"),
    ("jsonl", b"", b'{"id": %d, "skip": "x", "name": "n%d"}\n'),
])
async def test_follow_batches_reads_only_the_declared_fields_even_after_a_resume(tmp_path, fmt, head, line):
    path = tmp_path / f"events.{fmt}"
    path.write_bytes(head + line % (1, 1))
    schema = pa.schema([("name", pa.string()), ("id", pa.int64())])
    for start, first in ((0, 1), (path.stat().st_size, 2)):
        follow, receive = await collect_follow({"path": path}, schema, start_offset=start)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                if start:
                    append(path, line % (2, 2))
                _, batch, rejects = await receive.receive()
                assert rejects is None and batch.schema == schema
                assert batch.to_pylist() == [{"name": f"n{first}", "id": first}]
                nursery.cancel_scope.cancel()


async def test_follow_batches_needs_an_existing_text_file(tmp_path):
    schema = pa.schema([("id", pa.int64())])
    with pytest.raises(NotFound):
        async for _ in follow_batches({"path": tmp_path / "nope.csv"}, schema):
            pass
    pq.write_table(pa.table({"id": [1]}), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="parquet"):
        async for _ in follow_batches({"path": tmp_path / "x.parquet"}, schema):
            pass


def test_formats_module_reexports_the_writers():
    assert formats.Writer is formats_write.Writer and formats.open_writer is formats_write.open_writer


def test_read_positioned_merges_back_in_file_order_and_resumes_after_a_position(tmp_path):
    import pyarrow.parquet as pq
    from hallelujah.formats import read_positioned
    table = pa.table({"x": list(range(1000))})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=100)
    source = {"path": str(tmp_path / "p.parquet")}
    parts = [list(read_positioned(source, None, k, 3, batch_rows=40)) for k in range(3)]
    merged = sorted((p for part in parts for p in part), key=lambda item: item[0])
    assert [v for _, b, _ in merged for v in b.column("x").to_pylist()] == list(range(1000))
    assert all(rejects is None for _, _, rejects in merged)
    cut = merged[len(merged) // 2][0]
    resumed = sorted((p for k in range(3) for p in read_positioned(source, None, k, 3, 40, after=cut)),
                     key=lambda item: item[0])
    assert resumed == [p for p in merged if p[0] > cut]


# ---- rows a source cannot read -----------------------------------------------------------------

SECRET = "hj-secret-row-text"


def pieces(source: dict[str, Any], schema: pa.Schema, **kw: Any) -> tuple[list[dict], list[dict], list[str]]:
    """(good rows, rejected rows, reasons) of read_pieces, in file order."""
    good: list[dict] = []
    bad: list[dict] = []
    reasons: list[str] = []
    for batch, rejects in formats.read_pieces(source, schema, **kw):
        good += batch.to_pylist()
        if rejects is not None:
            bad += rejects.rows.to_pylist()
            reasons += rejects.reasons
    assert not any(SECRET in r for r in reasons), reasons
    return good, bad, reasons


def test_timestamps_finer_than_their_unit_are_truncated_like_a_cast_between_units():
    text = ["2026-01-01T00:10:55.350999Z", "2026-01-01T00:10:55.123456789Z", "2026-01-01 00:10:55.999999",
            "2026-01-01T01:10:55.5+01:00", None]
    for unit, fraction in (("s", [0, 0, 0, 0]), ("ms", [350_000, 123_000, 999_000, 500_000]),
                           ("us", [350_999, 123_456, 999_999, 500_000])):
        got = conform(pa.record_batch({"t": text}), pa.schema([("t", pa.timestamp(unit))])).column(0).to_pylist()
        assert got == [dt.datetime(2026, 1, 1, 0, 10, 55, f) for f in fraction] + [None], unit


def test_a_csv_value_that_does_not_parse_rejects_its_row_and_the_rest_of_the_file_reads_on(tmp_path):
    """The failing block is read again as text; blocks before it are not repeated, rows after it
    still come, and reading twice gives the same positions (a restarted source resumes exactly)."""
    schema = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("t", pa.timestamp("ms"))])
    n = 60_000                                                  # 2.6 MB: three parse blocks of 1 MiB
    lines = ["id,x,t"] + [f"{i},{i / 4},2026-01-01T00:00:{i % 60:02d}.250999Z" for i in range(n)]
    lines[30_001] = f"30000,{SECRET},2026-01-01T00:00:00Z"      # the typed parse fails in the middle block
    lines[40_001] = f"40000,1.5,{SECRET}"                       # a timestamp that is no timestamp
    lines[50_001] = f'50000,"{SECRET}\nstill quoted",x,{SECRET}'   # too many fields (and a quoted newline)
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 2 << 20
    good, bad, reasons = pieces({"path": path}, schema, batch_rows=256)
    expected = [{"id": i, "x": i / 4, "t": dt.datetime(2026, 1, 1, 0, 0, i % 60, 250_000)} for i in range(n)
                if i not in (30_000, 40_000, 50_000)]
    assert good == expected
    # (a row with too many fields comes with the batch read when pyarrow met it, which may be earlier)
    assert dict(zip(reasons, bad)) == {
        'row 30001: field "x": expected float64, got string': {"id": 30_000, "x": None, "t": dt.datetime(2026, 1, 1)},
        'row 40001: field "t": expected timestamp[ms], got string': {"id": 40_000, "x": 1.5, "t": None},
        "line 50002: a row has 4 fields where the header has 3": {"id": None, "x": None, "t": None}}
    first = list(formats.read_positioned({"path": path}, schema, batch_rows=256))
    assert len(first) > 200
    again = list(formats.read_positioned({"path": path}, schema, batch_rows=256, after=first[100][0]))
    assert [(p, b.to_pylist(), r and r.reasons) for p, b, r in again] == \
        [(p, b.to_pylist(), r and r.reasons) for p, b, r in first[101:]]


def test_a_sqlite_value_of_another_type_than_its_column_is_rejected_with_its_row(sqlite_file):
    con = sqlite3.connect(sqlite_file)
    con.execute("INSERT INTO \"tile list\" (tile, country) VALUES (?, 'zz')", (SECRET,))
    con.execute("INSERT INTO \"tile list\" (tile, seen) VALUES (11, ?)", (SECRET,))
    con.commit()
    con.close()
    schema = formats.source_schema({"path": sqlite_file, "table": "tile list"})
    good, bad, reasons = pieces({"path": sqlite_file, "table": "tile list"}, schema)
    assert [r["tile"] for r in good] == list(range(10))
    assert [(r["tile"], r["country"], r["seen"]) for r in bad] == [(None, "zz", None), (11, None, None)]
    assert reasons == ['row 11: field "tile": expected int64', 'row 12: field "seen": expected timestamp[us], got string']


def test_a_declared_type_narrower_than_a_parquet_file_s_rejects_the_rows_that_do_not_fit(tmp_path):
    pq.write_table(pa.table({"n": pa.array([1, 2**40, 3, -2**40], pa.int64())}), tmp_path / "n.parquet",
                   row_group_size=2)
    good, bad, reasons = pieces({"path": tmp_path / "n.parquet"}, pa.schema([("n", pa.int32())]))
    assert good == [{"n": 1}, {"n": 3}] and bad == [{"n": None}, {"n": None}]
    assert reasons == ['row 2: field "n": expected int32, got int64', 'row 4: field "n": expected int32, got int64']
    with pytest.raises(SchemaMismatch, match='n.parquet: row 2: field "n": expected int32'):
        read_all({"path": tmp_path / "n.parquet"}, pa.schema([("n", pa.int32())]))


def test_no_read_error_quotes_the_file(tmp_path):
    files = {"ragged.csv": f"a,b\n1,2\n{SECRET},3,4\n", "quote.csv": f'a,b\n1,"{SECRET}\n',
             "bad.jsonl": f'{{"a": 1}}\n{SECRET}\n', "types.jsonl": f'{{"a": 1}}\n{{"a": "{SECRET}"}}\n',
             "shape.csv": f"a,{SECRET}\n1,2\n", "conv.csv": f"a,b\n1,2\n{SECRET},3\n"}
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    messages = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        for call in (lambda: formats.source_schema({"path": tmp_path / name}),
                     lambda: list(read_batches({"path": tmp_path / name})),
                     lambda: list(read_batches({"path": tmp_path / name}, schema))):
            try:
                call()
            except SchemaMismatch as e:
                messages.append(str(e))
    (tmp_path / "x.db").write_text(f"{SECRET}\n")
    for call in (lambda: formats.source_schema({"path": tmp_path / "x.db", "table": "t"}),
                 lambda: list(read_batches({"path": tmp_path / "x.db", "table": "t"}))):
        with pytest.raises(SchemaMismatch, match="cannot be read as an SQLite database") as e:
            call()
        messages.append(str(e.value))
    assert len(messages) >= 12
    for m in messages:
        assert str(tmp_path) in m and (SECRET not in m or 'field "hj-secret' in m), m
