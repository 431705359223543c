"""A history checker in the Jepsen manner: what publishers were told was kept, against what came
out. Every row carries its publisher's key and a sequence number per key, so a lost row, a row
twice and rows of one key out of order can each be told apart and counted."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa


@dataclass
class Verdict:
    acknowledged: int
    seen: int
    lost: int
    duplicated: int
    out_of_order: int       # rows of a key that came after a row of the same key with a higher seq

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order)


def check(acknowledged: list[pa.Table], output: pa.Table, key: str = "key", seq: str = "seq") -> Verdict:
    """`acknowledged`: the tables whose publish was acknowledged; `output`: what was read, in order."""
    sent = pa.concat_tables(acknowledged) if acknowledged else output.schema.empty_table()
    out = list(zip(output[key].to_pylist(), output[seq].to_pylist()))
    counts = Counter(out)
    duplicated = sum(c - 1 for c in counts.values())
    lost = sum(1 for row in zip(sent[key].to_pylist(), sent[seq].to_pylist()) if row not in counts)
    last: dict[str, int] = {}
    out_of_order = 0
    for k, s in out:
        if s < last.get(k, -1):
            out_of_order += 1
        last[k] = max(s, last.get(k, -1))
    return Verdict(sent.num_rows, output.num_rows, lost, duplicated, out_of_order)
