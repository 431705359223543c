"""`hallelujah`: the command line, a thin shell over the client library (each command one method).

Exit codes: 0 success; 2 invalid input (the message names the field at fault); 1 other failure.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio

from hallelujah.client import Database, addresses_from
from hallelujah.errors import HallelujahError, InvalidInput, collapsed

EXAMPLES = {
    "submit": "hallelujah submit tradecrafts/gps.json",
    "list": "hallelujah list --json",
    "describe": "hallelujah describe gps --json",
    "publish": "hallelujah publish gps/positions events.parquet",
    "stream": "hallelujah stream gps/tiled --from-start --limit 10",
    "cancel": "hallelujah cancel gps",
    "run": "hallelujah run tradecrafts/gps.json --format parquet --output-dir out/",
    "demo": "hallelujah demo --rows 2000000",
    "schema": "hallelujah schema > tradecraft.schema.json",
    "query": "hallelujah query clicks/hourly --group action=click",
    "wi": "hallelujah wi",
    "debug": "hallelujah debug gps",
}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hallelujah", description="Hallelujah stream-processing database.")
    ap.add_argument("--at", action="append", default=[], metavar="HOST:PORT",
                    help="a congregation to talk to (repeatable; default $HALLELUJAH_AT or 127.0.0.1:7077)")
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text,
                              epilog=f"example: {EXAMPLES[name]}")

    p = add("submit", "Submit a tradecraft document.")
    p.add_argument("file")
    p = add("list", "List tradecrafts and their state.")
    p.add_argument("--json", action="store_true")
    p = add("describe", "Describe tradecrafts, analytics and Jahs.")
    p.add_argument("target", nargs="?", default="", metavar="TRADECRAFT[/ANALYTIC]")
    p.add_argument("--json", action="store_true")
    p = add("publish", "Publish a file's rows into a pushed stream.")
    p.add_argument("stream", metavar="TRADECRAFT/STREAM")
    p.add_argument("file")
    p.add_argument("--format", choices=["parquet", "csv", "jsonl", "arrow"])
    p.add_argument("--end", action="store_true", help="close the stream after these rows")
    p.add_argument("--publisher-id", help="name this publisher: publishing again with the same id "
                                          "(after a lost acknowledgement) keeps each batch once")
    p = add("stream", "Stream an analytic's retained output.")
    p.add_argument("analytic", metavar="TRADECRAFT/ANALYTIC")
    p.add_argument("--from-start", action="store_true")
    p.add_argument("--limit", type=int)
    p.add_argument("--format", choices=["jsonl", "csv", "parquet", "arrow"], default="jsonl")
    p.add_argument("--output")
    p = add("cancel", "Stop a tradecraft and delete its logs.")
    p.add_argument("tradecraft")
    p = add("run", "Run a document to the end of its bounded sources in an embedded congregation.")
    p.add_argument("file")
    p.add_argument("--output-dir")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet", "arrow"], default="jsonl")
    p.add_argument("--workers", type=int, default=None)
    p = add("demo", "Run a bundled tradecraft on generated data and print a summary.")
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--workers", type=int, default=None)
    add("schema", "Print the JSON Schema of the tradecraft document.")
    p = add("query", "Current partial values of an aggregate's open windows.")
    p.add_argument("analytic", metavar="TRADECRAFT/ANALYTIC")
    p.add_argument("--group", action="append", default=[], metavar="K=V")
    add("wi", "The terminal Window Interface.")
    p = add("debug", "Why a stream is not moving: every process's tasks, Jahs and datastreams.")
    p.add_argument("tradecraft", nargs="?", default="")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from hallelujah.logs import configure_logging
    configure_logging("console")
    try:
        with collapsed():
            code = dispatch(args)
    except HallelujahError as exc:
        print(f"hallelujah: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except (FileNotFoundError, IsADirectoryError) as exc:
        print(f"hallelujah: {exc.filename}: {exc.strerror}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "schema":
        from hallelujah.tradecraft import json_schema
        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.command == "run":
        from hallelujah.run import run_file
        run_file(Path(args.file), output_dir=args.output_dir, fmt=args.format, workers=args.workers)
        return 0
    if args.command == "demo":
        from hallelujah.demo import demo
        demo(rows=args.rows, workers=args.workers)
        return 0
    if args.command == "wi":
        raise HallelujahError(f"`{args.command}` is not available in this version yet")
    db = Database(addresses_from(args.at))
    return trio.run(_remote, db, args)


async def _remote(db: Database, args: argparse.Namespace) -> int:
    from hallelujah import cli_output as out
    if args.command == "submit":
        document = _read_document(Path(args.file))
        result = await db.submit(document, base_dir=Path(args.file).resolve().parent)
        print(f"submitted {result['tradecraft']}: outputs {', '.join(result['outputs']) or '(none)'}")
    elif args.command == "list":
        out.print_list(await db.list(), args.json)
    elif args.command == "describe":
        out.print_describe(await db.describe(args.target), args.json)
    elif args.command == "cancel":
        await db.cancel(args.tradecraft)
        print(f"cancelled {args.tradecraft}")
    elif args.command == "publish":
        await out.publish_file(db, args.stream, Path(args.file), args.format, args.end, args.publisher_id)
    elif args.command == "stream":
        await out.stream_to(db, args.analytic, args.from_start, args.limit, args.format, args.output)
    elif args.command == "query":
        out.write_rows(await db.query(args.analytic, _groups(args.group)))
    elif args.command == "debug":
        sys.stdout.write(await db.debug(args.tradecraft))
    return 0


def _groups(pairs: list[str]) -> dict[str, str]:
    """--group k=v options as {k: v}."""
    groups = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f'--group {pair!r} is not FIELD=VALUE')
        groups[key] = value
    return groups


def _read_document(path: Path) -> Any:
    from hallelujah.errors import TradecraftError
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TradecraftError("", f"{path}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


if __name__ == "__main__":
    main()
