"""`hallelujah run`: an embedded congregation in this process, no daemon and no TCP.

Workers are forked from this process before its trio loop starts; the document runs to the end
of its bounded sources in a temporary data dir, and each retained output is written out (with
`--output-dir`, each `rejected` one too). A run whose tradecraft failed raises `RunFailed`, naming
the Jah and its reason, after writing what its outputs hold: never a silent success.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import trio

from hallelujah import formats
from hallelujah.allowed import Allowed
from hallelujah.client import Database
from hallelujah.errors import HallelujahError, TradecraftError


class RunFailed(HallelujahError):
    """A Jah of the run failed (its reason names it): exit 1, with whatever outputs it made written."""


@dataclass
class RunResult:
    rows: dict[str, int] = field(default_factory=dict)      # output ref -> rows written
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)


def run_file(path: Path, output_dir: str | None = None, fmt: str = "jsonl",
             workers: int | None = None, stdout: BinaryIO | None = None) -> RunResult:
    try:
        document = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise TradecraftError("", f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
    return run_document(document, Path(path).resolve().parent, output_dir, fmt, workers, stdout)


def uses_kernels(document: dict[str, Any]) -> bool:
    """Whether a document needs the Numba kernels (partitioned kinds, or the hash function)."""
    analytics = document.get("analytics") if isinstance(document, dict) else None
    kinds = {a.get("kind") for a in analytics if isinstance(a, dict)} if isinstance(analytics, list) else set()
    return bool(kinds & {"join", "aggregate"}) or "hash(" in json.dumps(document)


def run_document(document: dict[str, Any], base_dir: Path | None = None, output_dir: str | None = None,
                 fmt: str = "jsonl", workers: int | None = None,
                 stdout: BinaryIO | None = None) -> RunResult:
    """Validate, then run in an embedded congregation; raises TradecraftError (its workers gone)."""
    import os

    from congregation.workers import make_zygote, settled_heap
    with settled_heap():
        # first, so that the zygote's own loading overlaps this process's imports and validation
        zygote = make_zygote(warm_kernels=uses_kernels(document))
        import congregation.daemon  # noqa: F401 - loaded with the heap settled
        from hallelujah.tradecraft import parse_document
    data_dir = tempfile.mkdtemp(prefix="hallelujah-run-")
    try:
        base = Path(base_dir if base_dir is not None else os.getcwd()).resolve()
        allowed = Allowed.of([str(base)], [str(base), os.getcwd()])
        tc = parse_document(document, base_dir, allowed)
        pushed = [a.name for a in tc.analytics if a.kind == "stream" and not a.spec.get("source")]
        if pushed:
            raise TradecraftError("analytics", f'run needs bounded sources, but stream "{pushed[0]}" '
                                  f'has no "source" (submit it to a congregation and publish instead)')
        return trio.run(_run, tc.document, Path(data_dir), zygote, workers or os.cpu_count() or 1,
                        output_dir, fmt, stdout or sys.stdout.buffer, allowed)
    finally:
        zygote.close()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run(document: dict[str, Any], data_dir: Path, zygote: Any, workers: int,
               output_dir: str | None, fmt: str, stdout: BinaryIO, allowed: Allowed) -> RunResult:
    from congregation.daemon import Congregation
    result = RunResult()
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        congregation = Congregation(data_dir, zygote, workers, "embedded", allowed)
        address = await nursery.start(congregation.serve, None)
        db = Database([address])
        submitted = await db.submit(document)
        name = submitted["tradecraft"]
        outputs = submitted["retained"]
        if len(outputs) > 1 and output_dir is None:
            raise TradecraftError("", f"the document has {len(outputs)} outputs ({', '.join(outputs)}): "
                                  f"give --output-dir")
        # With an output dir, each `rejected` output is written beside the others, reasons and all.
        written = outputs + (submitted["rejected"] if output_dir is not None else [])
        async with trio.open_nursery() as writers:
            for ref in written:
                writers.start_soon(_write_output, congregation.logs, f"{name}/{ref}", ref, output_dir, fmt,
                                   stdout, result)
        info = (await db.describe(name))["tradecrafts"][0]
        for a in info["analytics"]:
            for ref, log in a["retained"].items():
                if ref in submitted["rejected"] and log["rows"]:
                    result.rejected[ref] = log["rows"]
        nursery.cancel_scope.cancel()
    result.seconds = time.perf_counter() - start
    for ref, rows in result.rejected.items():
        where = (f"their reasons are in {result.files[ref]}" if ref in result.files
                 else "give --output-dir to keep them with their reasons")
        print(f"hallelujah: {rows:,} rows rejected in {ref} ({where})", file=sys.stderr)
    if info["state"] == "failed":
        # Its logs were ended so that the outputs above hold what it made before; the run is no success.
        raise RunFailed(f'tradecraft "{name}" failed: {info["error"]}')
    return result


async def _write_output(logs: Any, log: str, ref: str, output_dir: str | None, fmt: str,
                        stdout: BinaryIO, result: RunResult) -> None:
    """Write one retained output as it grows, straight from its log (this process is the
    congregation: no socket between the log and the file)."""
    from hallelujah.frames import schema_of
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        path = Path(output_dir) / f"{ref}.{fmt}"
        target: BinaryIO = open(path, "wb")
        result.files[ref] = str(path)
    else:
        target = stdout
    schema = schema_of((await logs.info(log))["schema"])
    writer = formats.open_writer(target, fmt, schema)
    rows = 0
    try:
        async for _, batch in logs.follow(log, 0, schema):
            # Encoding (parquet, JSON lines) releases the GIL: off the loop, it overlaps with
            # the congregation's own work in this process.
            await trio.to_thread.run_sync(writer.write, batch)
            rows += batch.num_rows
        await trio.to_thread.run_sync(writer.close)
    finally:
        if output_dir is not None:
            target.close()
        else:
            target.flush()
    result.rows[ref] = rows
