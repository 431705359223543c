"""Credits bound memory: a slow stage holds its sender back instead of letting batches pile up."""
from __future__ import annotations

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import trio

ROWS = 5_000_000
WARM_ROWS = 600_000
SLOW_UDF = '''
import time

def slow(batch):
    time.sleep(0.03)      # a consumer far slower than the source
    return batch
'''


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


async def test_a_slow_consumer_keeps_daemon_memory_flat_while_5_million_rows_pass(congregation, tmp_path):
    rng = np.random.default_rng(3)
    table = pa.table({"id": np.arange(ROWS, dtype=np.int64), "a": rng.integers(0, 1 << 40, ROWS),
                      "b": rng.random(ROWS), "c": rng.random(ROWS)})     # 160 MB of values
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=65536)
    (tmp_path / "slowudf.py").write_text(SLOW_UDF)
    doc = {"tradecraft": "mem", "analytics": [
        {"name": "big", "kind": "stream", "source": {"path": "big.parquet"}},
        {"name": "slowed", "kind": "transform", "input": "big", "udf": "slowudf:slow",
         "where": "b >= 0"}]}
    db = congregation.db()
    await db.submit(doc, base_dir=tmp_path)
    warm = peak = 0
    rows = 0
    async with db.stream("mem/slowed", from_start=True) as batches:
        async for batch in batches:
            rows += batch.num_rows
            await trio.sleep(0.01)           # and the client reads slowly too
            rss = tree_rss(congregation.proc.pid)
            if rows <= WARM_ROWS:
                warm = max(warm, rss)        # every process has touched its readers and kernels
            peak = max(peak, rss)
    assert rows == ROWS
    growth = peak - warm
    # Unbounded, the sources would read the rest of the 160 MB file (~140 MB) ahead of the slow
    # UDF; credits keep a few 2 MB batches in flight per datastream.
    assert growth < 40 << 20, f"daemon tree grew by {growth >> 20} MiB after the first {WARM_ROWS:,} rows"
