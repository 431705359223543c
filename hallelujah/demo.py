"""`hallelujah demo`: generate GPS fixes, run the bundled `gps` tradecraft on them, summarize."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tradecrafts import HERE
from tradecrafts.generate import write_gps


def demo(rows: int = 2_000_000, workers: int | None = None) -> None:
    from hallelujah.run import run_document
    console = Console(stderr=True)
    work = Path(tempfile.mkdtemp(prefix="hallelujah-demo-"))
    try:
        with console.status(f"generating {rows:,} GPS fixes"):
            write_gps(rows, work)
        document = json.loads((HERE / "gps.json").read_text())
        console.print(f"running tradecraft [bold]{document['tradecraft']}[/bold]: "
                      f"{document['description']}")
        start = time.perf_counter()
        with console.status("running (stream → transform → director → retained outputs → parquet)"):
            result = run_document(document, work, output_dir=str(work / "out"), fmt="parquet",
                                  workers=workers)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table("output", "rows")
    for ref, n in sorted(result.rows.items()):
        table.add_row(ref, f"{n:,}")
    for ref, n in sorted(result.rejected.items()):
        table.add_row(ref, f"{n:,}")
    Console().print(table)
    Console().print(f"{rows:,} events in {seconds:.2f} s = [bold]{rows / seconds:,.0f} events/s[/bold] "
                    f"(whole run: workers forked, stream, transform, routing, logs, parquet output)")
