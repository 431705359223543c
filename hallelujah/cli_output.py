"""What the CLI shows people: rich tables and progress on a terminal, JSON for programs."""
from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import trio
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hallelujah import formats
from hallelujah.client import Database
from hallelujah.errors import InvalidInput

STATUS_EVERY = 5.0   # seconds between status lines when stderr is not a terminal


def print_list(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    clustered = any("congregation" in r for r in rows)     # (a cluster says where each runs)
    table = Table("tradecraft", "state", *(["congregation"] if clustered else []), "submitted", "error")
    for r in rows:
        table.add_row(r["name"], r["state"], *([r.get("congregation") or "-"] if clustered else []),
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["submitted_at"])), r["error"] or "")
    Console().print(table)


def print_validated(name: str, tc: Any, as_json: bool) -> None:
    """A valid document as `validate` shows it: each analytic, what it reads, the schema it makes."""
    from hallelujah.tradecraft import schema_to_json
    analytics = [{"name": a.name, "kind": a.kind, "reads": list(a.inputs), "schema": schema_to_json(a.schema),
                  "routes": list(a.routes), "retained": a.output} for a in tc.analytics]
    if as_json:
        print(json.dumps({"tradecraft": tc.name, "valid": True, "analytics": analytics}, indent=1))
        return
    print(f"{name}: tradecraft {tc.name} is valid: {len(analytics)} analytic{'s' if len(analytics) != 1 else ''}")
    for a in analytics:
        reads = f" reads {', '.join(a['reads'])}" if a["reads"] else ""
        routes = f" routes {', '.join(a['routes'])}" if a["routes"] else ""
        fields = ", ".join(f"{k} {v}" for k, v in a["schema"].items())
        print(f"  {a['name']} ({a['kind']}){reads}{routes}{' [retained]' if a['retained'] else ''}: {fields}")


def print_describe(info: dict[str, Any], as_json: bool, console: Console | None = None) -> None:
    """Per tradecraft: its Jahs with their live figures (held: rows of state, such as open
    windows or a join's window of rows), then what it retains, then its events and scaling.
    Figures are never cut or wrapped; a name too long for the terminal ends in an ellipsis."""
    if as_json:
        print(json.dumps(info, indent=1))
        return
    console = console or Console()
    console.print(described(info, console.width))


def described(info: dict[str, Any], width: int) -> Group:
    """`describe`'s answer as what `print_describe` shows, for a terminal `width` wide."""
    parts: list[Any] = []
    if "members" in info:        # a cluster: every member that joined, up or down
        now = time.time()
        parts.append(_table(["congregation", "address", "state", "workers", "tradecrafts", "since", "lease left"],
                            [[("* " if m["this"] else "") + m["name"], m["address"], "up" if m["up"] else "down",
                              str(m["workers"]), str(m["tradecrafts"]), f"{now - m['since']:.0f}s",
                              "-" if m.get("lease_left") is None else f"{m['lease_left']}s"]
                             for m in info["members"]], width))
        parts.append(f"etcd leader: {info.get('etcd_leader') or 'none'}")
    for tc in info["tradecrafts"]:
        stalled = f"  [red]stalled {tc['stalled_for']:.0f}s[/red] (`hallelujah debug {tc['name']}` says why)" \
            if tc.get("stalled_for") is not None else ""
        where = f"  on {tc['congregation']}" if tc.get("congregation") else ""
        parts.append(f"[bold]{tc['name']}[/bold]  {tc['state']}{where}{stalled}  {tc['error'] or ''}")
        parts.extend(f"  {time.strftime('%H:%M:%S', time.localtime(f['at']))} failover: {f['from']} -> {f['to']}: "
                     f"{f['reason']}" for f in tc.get("failovers", []))
        rows = [[j["id"].split("/", 1)[1], "-" if j["worker"] < 0 else str(j["worker"]),
                 f"{j.get('rows_in', 0):,}", f"{j.get('rows_out', 0):,}", f"{j.get('busy', 0):.2f}",
                 f"{j.get('backlog', 0):,}", f"{j.get('state_rows', 0):,}", j["state"]]
                for a in tc["analytics"] for j in a["jahs"]]
        parts.append(_table(["jah", "worker", "rows in", "rows out", "busy", "backlog", "held", "state"], rows, width))
        parts.append(_table(["retained output", "rows", "ended"],
                            [[name, f"{log['rows']:,}", "yes" if log["ended"] else "no"]
                             for a in tc["analytics"] for name, log in a["retained"].items()], width))
        parts.extend(f"  {time.strftime('%H:%M:%S', time.localtime(e['at']))} {e['kind']}: "
                     + ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("at", "kind"))
                     for e in tc["events"])
    return Group(*parts)


async def watch_describe(db: Database, target: str, every: float) -> None:
    """`describe --watch`: the same view, redrawn in place every `every` seconds until Ctrl-C
    (on a terminal; otherwise one snapshot after another)."""
    console = Console()
    if not console.is_terminal:
        while True:
            console.print(described(await db.describe(target), console.width))
            console.print()
            sys.stdout.flush()
            await trio.sleep(every)
    # Ctrl-C comes as a message, never as a KeyboardInterrupt raised in the middle of a redraw:
    # one that lands inside the terminal write, under rich's lock, can leave the process stuck.
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            async with trio.open_nursery() as nursery:
                async def redraw() -> None:
                    while True:
                        live.update(described(await db.describe(target), console.width), refresh=True)
                        await trio.sleep(every)
                nursery.start_soon(redraw)
                async for _ in interrupts:
                    nursery.cancel_scope.cancel()
                    break
    raise KeyboardInterrupt        # the CLI's own way out of an interrupt: exit code 130


def _table(headers: list[str], rows: list[list[str]], width: int) -> Table:
    """A compact table whose first column (a name) gives way when `width` is narrow, ending in
    an ellipsis: the others keep their whole width, numbers to the right."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
    widths = [max([len(header)] + [len(r[i]) for r in rows]) for i, header in enumerate(headers)]
    room = width - sum(widths[1:]) - (len(headers) - 1)          # (one space between columns)
    table.add_column(headers[0], no_wrap=True, overflow="ellipsis", width=max(min(widths[0], room), 12))
    for i, header in enumerate(headers[1:], start=1):
        numeric = bool(rows) and all(r[i].replace(",", "").replace(".", "").replace("-", "").isdigit()
                                     for r in rows)
        table.add_column(header, no_wrap=True, width=widths[i], justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*row)
    return table


def rows_text(rows: int) -> str:
    """"1 row", "2,000 rows"."""
    return f"{rows:,} row" if rows == 1 else f"{rows:,} rows"


class RowProgress:
    """A rich progress bar on a terminal; a status line every few seconds otherwise."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty()
        # a CSV or JSON lines file's rows are not known before it is read: count up, bar pulsing
        counted = "{task.completed:,.0f} rows" if total is None else "{task.completed:,.0f} / {task.total:,.0f} rows"
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(counted),
                                 TimeElapsedColumn(), console=Console(stderr=True)) if self.tty else None
        self._last = 0.0

    def __enter__(self) -> "RowProgress":
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=self.total)
        return self

    def update(self, rows: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=rows)
        elif time.monotonic() - self._last >= STATUS_EVERY:
            self._last = time.monotonic()
            print(f"{self.label}: {rows_text(rows)} acknowledged", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()


async def publish_file(db: Database, stream: str, path: Path, fmt: str | None, end: bool,
                       publisher_id: str | None = None, table: str | None = None) -> int:
    """Publish a file (`-`: stdin, its --format named), conformed to the stream's schema first
    (a mismatch sends nothing); returns the rows acknowledged."""
    if str(path) != "-":
        return await _publish_path(db, stream, path, path.name, fmt, end, publisher_id, table)
    if fmt is None:
        raise InvalidInput("-: stdin has no file extension to tell its format by; name it with --format")
    with tempfile.TemporaryDirectory(prefix="hallelujah-stdin-") as spool:
        copy = Path(spool) / "stdin"
        with open(copy, "wb") as f:        # (parquet, arrow and sqlite readers need a file)
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        return await _publish_path(db, stream, copy, "stdin", fmt, end, publisher_id, table)


async def _publish_path(db: Database, stream: str, path: Path, label: str, fmt: str | None, end: bool,
                        publisher_id: str | None, table: str | None) -> int:
    source = {"path": str(path), "format": formats.format_of(path, fmt), "table": table}
    if source["format"] == "sqlite" and not table:
        raise InvalidInput(f"--table: {label} is a SQLite file: name the table to publish "
                           f"(it has: {', '.join(sqlite_tables(path)) or 'no tables'})")
    total = _rows_of(source)
    schema = await db.stream_schema(stream)
    batches = formats.read_batches(source, schema)
    with RowProgress(f"publish {label}", total) as progress:
        return await db.publish(stream, batches, end=end, schema=schema, progress=progress.update,
                                publisher_id=publisher_id)


def sqlite_tables(path: Path) -> list[str]:
    """The tables of a SQLite file, opened read-only."""
    import sqlite3
    if not path.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{path}: not a SQLite file ({exc})") from None
    finally:
        con.close()


def _rows_of(source: dict[str, Any]) -> int | None:
    if source["format"] == "parquet":
        import pyarrow.parquet as pq
        return pq.ParquetFile(source["path"]).metadata.num_rows
    if source["format"] == "arrow":
        with pa.ipc.open_file(pa.memory_map(str(source["path"]))) as f:
            return sum(f.get_batch(i).num_rows for i in range(f.num_record_batches))
    return None


def write_rows(table: pa.Table) -> None:
    """A table as JSON lines on stdout, as `stream` writes rows."""
    writer = formats.open_writer(sys.stdout.buffer, "jsonl", table.schema)
    for batch in table.to_batches():
        writer.write(batch)
    writer.close()
    sys.stdout.buffer.flush()


async def stream_to(db: Database, analytic: str, from_start: bool, limit: int | None, fmt: str,
                    output: str | None) -> None:
    target = open(output, "wb") if output else sys.stdout.buffer
    try:
        async with db.stream(analytic, from_start=from_start, limit=limit) as batches:
            writer = None
            async for batch in batches:
                if writer is None:
                    writer = formats.open_writer(target, fmt, batch.schema)
                writer.write(batch)
                target.flush()
            if writer is not None:
                writer.close()
    finally:
        if output:
            target.close()
