"""A followed file: rows appended to a growing JSON-lines file flow through as they are written."""
from __future__ import annotations

import json

import trio


def lines(start: int, n: int) -> str:
    return "".join(json.dumps({"id": i, "temp": 20.0 + i % 13}) + "\n" for i in range(start, start + n))


async def test_rows_appended_to_a_followed_file_reach_the_output(congregation, tmp_path):
    path = tmp_path / "readings.jsonl"
    path.write_text(lines(0, 1_000))
    db = congregation.db()
    await db.submit({"tradecraft": "tail", "analytics": [
        {"name": "readings", "kind": "stream", "schema": {"id": "int64", "temp": "float64"},
         "source": {"path": str(path), "follow": True}},
        {"name": "hot", "kind": "transform", "input": "readings", "where": "temp >= 30"}]})
    expected = [i for i in range(3_000) if 20.0 + i % 13 >= 30]
    got: list[int] = []
    with trio.fail_after(20):
        async with db.stream("tail/hot", from_start=True) as batches:
            appended = False
            async for batch in batches:
                got += batch.column("id").to_pylist()
                if not appended:
                    with path.open("a") as f:          # the file grows while it is followed
                        f.write(lines(1_000, 1_500))
                        f.flush()
                        f.write(lines(2_500, 500))
                    appended = True
                if len(got) >= len(expected):
                    break
    assert got == expected
    await db.cancel("tail")
