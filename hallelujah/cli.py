"""`hallelujah`: the command line, a thin shell over the client library (each command one method).

Exit codes: 0 success; 2 invalid input (the message names the field at fault); 1 other failure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

import trio

from hallelujah.client import Database, addresses_from, tls_from
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
    "checkpoint": "hallelujah checkpoint gps",
    "split": "hallelujah split gps_countries/by_country/join",
    "merge": "hallelujah merge gps_countries/by_country/join.1",
    "congestion": "hallelujah congestion gps --busy 0.5 --for 2s",
    "reload": "hallelujah reload gps_countries/countries",
    "validate": "hallelujah validate tradecrafts/gps.json",
    "explain": "hallelujah explain tradecrafts/gps_countries.json --workers 2",
    "completion": "hallelujah completion bash > ~/.local/share/bash-completion/completions/hallelujah",
    "token": "hallelujah token create --ttl 1h --ca-key ca/ca.key --subject alice",
}


class Parser(argparse.ArgumentParser):
    """argparse that refuses in one line (what is wrong, and where help is), not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


class DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in its help, unless it has none worth saying or says it itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], "", argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def counted(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be {minimum} or more")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    from hallelujah import __version__
    shown = DefaultsShown
    ap = Parser(prog="hallelujah", description="Hallelujah stream-processing database.", formatter_class=shown,
                epilog="environment: HALLELUJAH_AT (congregations, comma-separated, when no --at is given); "
                       "HALLELUJAH_CA, HALLELUJAH_TOKEN (when no --ca, --token is given); "
                       "HALLELUJAH_LOG_LEVEL (debug, info, warning (the default), error: what is logged "
                       "on stderr, here and by a congregation)")
    ap.add_argument("--version", action="version", version=f"hallelujah {__version__}")
    ap.add_argument("--at", action="append", default=[], metavar="HOST:PORT",
                    help="a congregation to talk to (repeatable; default $HALLELUJAH_AT or 127.0.0.1:7077)")
    ap.add_argument("--ca", metavar="FILE", help="the cluster CA's certificate (ca.pem): talk TLS, checking the "
                                                 "congregation's certificate with it (default $HALLELUJAH_CA)")
    ap.add_argument("--token", metavar="TOKEN", help="a token from `hallelujah token create`, for a congregation "
                                                     "that runs TLS (default $HALLELUJAH_TOKEN)")
    sub = ap.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=shown,
                              epilog=f"example: {EXAMPLES[name]}")

    def add_json(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON, for programs")

    p = add("submit", "Submit a tradecraft document.")
    p.add_argument("file", help="the tradecraft document (JSON; - for stdin)")
    add_json(p)
    p = add("validate", "Check a tradecraft document without a congregation: every analytic, what it reads, "
                        "the schema it makes, and what is retained.")
    p.add_argument("file", help="the tradecraft document (JSON; - for stdin)")
    add_json(p)
    p = add("explain", "The plan of a tradecraft document, without a congregation: each analytic's Jahs, "
                       "where they run and the partitions they own, the datastreams and the logs kept.")
    p.add_argument("file", help="the tradecraft document (JSON; - for stdin)")
    p.add_argument("--workers", type=counted(1), default=os.cpu_count() or 1, help="worker processes to plan for")
    add_json(p)
    p = add("list", "List tradecrafts and their state.")
    add_json(p)
    p = add("describe", "Describe tradecrafts, analytics and Jahs.")
    p.add_argument("target", nargs="?", default="", metavar="TRADECRAFT[/ANALYTIC]",
                   help="what to describe (all tradecrafts when left out)")
    add_json(p)
    p.add_argument("--watch", nargs="?", type=float, const=1.0, metavar="SECONDS",
                   help="redraw every SECONDS (default 1) until Ctrl-C")
    p = add("publish", "Publish a file's rows into a pushed stream.")
    p.add_argument("stream", metavar="TRADECRAFT/STREAM", help="a stream analytic without a source")
    p.add_argument("file", help="the rows to publish (- for stdin, with --format)")
    p.add_argument("--format", choices=["parquet", "csv", "jsonl", "arrow", "sqlite"],
                   help="the file's format (default: told by its extension)")
    p.add_argument("--table", help="the table to publish, of a SQLite file")
    p.add_argument("--end", action="store_true", help="close the stream after these rows")
    p.add_argument("--publisher-id", help="name this publisher: publishing again with the same id "
                                          "(after a lost acknowledgement) keeps each batch once")
    add_json(p)
    p = add("stream", "Stream an analytic's retained output.")
    p.add_argument("analytic", metavar="TRADECRAFT/ANALYTIC", help="a retained output, e.g. shop/by_country.nl")
    p.add_argument("--from-start", action="store_true", help="from its first row, not from now")
    p.add_argument("--limit", type=counted(0), help="stop after this many rows (default: at its end)")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet", "arrow"], default="jsonl",
                   help="how rows are written")
    p.add_argument("--output", help="a file to write (default: stdout)")
    p = add("cancel", "Stop a tradecraft and delete its logs.")
    p.add_argument("tradecraft", help="its name")
    add_json(p)
    p = add("run", "Run a document to the end of its bounded sources in an embedded congregation.")
    p.add_argument("file", help="the tradecraft document (JSON)")
    p.add_argument("--output-dir", help="write each retained output here (needed when there are several)")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet", "arrow"], default="jsonl",
                   help="how outputs are written")
    p.add_argument("--workers", type=counted(1), default=None, help="worker processes (default: the CPUs)")
    p = add("demo", "Run a bundled tradecraft on generated data and print a summary.")
    p.add_argument("--rows", type=counted(1), default=2_000_000, help="GPS fixes to generate")
    p.add_argument("--workers", type=counted(1), default=None, help="worker processes (default: the CPUs)")
    add("schema", "Print the JSON Schema of the tradecraft document.")
    p = add("query", "Current partial values of an aggregate's open windows.")
    p.add_argument("analytic", metavar="TRADECRAFT/ANALYTIC", help="an aggregate")
    p.add_argument("--group", action="append", default=[], metavar="K=V",
                   help="keep the rows of one group (repeatable)")
    p = add("wi", "The terminal Window Interface.")
    p.add_argument("--read-only", action="store_true", help="look, never change anything")
    p = add("completion", "Print a shell completion script (commands, options, their choices).")
    p.add_argument("shell", choices=["bash"], help="the shell")
    p = add("checkpoint", "Take a checkpoint of a running tradecraft now (its state, for recovery).")
    p.add_argument("tradecraft", help="a running tradecraft")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = add("split", "Split a dataset JOIN in two now (its partitions halved, as congestion splits it).")
    p.add_argument("jah", metavar="JAH", help="a JOIN's id, TRADECRAFT/ANALYTIC/join... (see describe)")
    add_json(p)
    p = add("merge", "Merge a dataset JOIN with the other JOIN of its split now.")
    p.add_argument("jah", metavar="JAH", help="a JOIN's id, TRADECRAFT/ANALYTIC/join... (see describe)")
    add_json(p)
    p = add("congestion", "Change a running tradecraft's congestion thresholds (until the congregation "
                          "restarts).")
    p.add_argument("tradecraft", help="a running tradecraft")
    p.add_argument("--busy", type=float, metavar="F", help="the busy fraction above which a Jah is congested")
    p.add_argument("--for", dest="for_", metavar="DURATION", help="how long it must stay above, e.g. 2s")
    add_json(p)
    p = add("reload", "Load the next version of a dataset (an ingest) now, as its timer would.")
    p.add_argument("analytic", metavar="TRADECRAFT/ANALYTIC", help="an ingest analytic")
    add_json(p)
    p = add("debug", "Why a stream is not moving: every process's tasks, Jahs and datastreams.")
    p.add_argument("tradecraft", nargs="?", default="", help="one tradecraft (default: all)")
    p = add("token", "Client tokens, for congregations that run TLS (signed with the cluster CA's key).")
    tokens = p.add_subparsers(dest="token_command", required=True, metavar="create")
    p = tokens.add_parser("create", help="print a new token on stdout (its expiry on stderr)",
                          description="Print a new token on stdout (its expiry on stderr).",
                          formatter_class=shown, epilog=f"example: {EXAMPLES['token']}")
    p.add_argument("--ttl", required=True, metavar="DURATION", help="how long it is valid, e.g. 1h, 30m, 7d")
    p.add_argument("--ca-key", required=True, metavar="FILE",
                   help="the CA's private key (congregation init-ca's ca.key)")
    p.add_argument("--subject", default="client",
                   help="who holds it (the congregation names it with the peer in its connection logs)")
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
    except BrokenPipeError:
        _quiet_broken_pipe()
    except OSError as exc:        # a file named on the command line (not found, a directory, denied)
        print(f"hallelujah: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}",
              file=sys.stderr)
        sys.exit(2 if exc.filename else 1)
    except BaseExceptionGroup as group:
        if group.subgroup(BrokenPipeError) is None:
            raise
        _quiet_broken_pipe()
    sys.exit(code)


def _quiet_broken_pipe() -> NoReturn:
    """The reader went away (`| head`): stop as Unix tools do, with no traceback and no second
    BrokenPipeError when Python flushes stdout at exit (141 = killed by SIGPIPE)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "schema":
        from hallelujah.tradecraft import json_schema
        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.command == "validate":
        from hallelujah import cli_output as out
        from hallelujah.tradecraft import parse_document
        out.print_validated(args.file, parse_document(*_read_document(args.file)), args.json)
        return 0
    if args.command == "completion":
        from hallelujah.completion import bash_script
        sys.stdout.write(bash_script(parser()))
        return 0
    if args.command == "explain":
        from hallelujah.explain import explain, explained_lines
        from hallelujah.tradecraft import parse_document
        plan = explain(parse_document(*_read_document(args.file)), args.workers)
        print(json.dumps(plan, indent=1) if args.json else "\n".join(explained_lines(plan)))
        return 0
    if args.command == "run":
        from hallelujah.run import run_file
        run_file(Path(args.file), output_dir=args.output_dir, fmt=args.format, workers=args.workers)
        return 0
    if args.command == "token":
        return _create_token(args)
    if args.command == "demo":
        from hallelujah.demo import demo
        demo(rows=args.rows, workers=args.workers)
        return 0
    if args.command == "wi":
        try:
            from sheets.wi import main as wi_main
        except ImportError as exc:
            raise HallelujahError(f"wi: the Window Interface cannot start here ({exc})") from None
        return wi_main(addresses_from(args.at), args.read_only)
    ca, token = tls_from(args.ca, args.token)
    db = Database(addresses_from(args.at), ca=ca, token=token)
    return trio.run(_remote, db, args)


def _create_token(args: argparse.Namespace) -> int:
    """`hallelujah token create`: the token alone on stdout (for `$(...)`), its expiry on stderr."""
    from hallelujah.durations import parse_duration
    from hallelujah.tokens import create_token, load_ca_key, utc_text, verify_token
    key = load_ca_key(args.ca_key)
    token = create_token(key, parse_duration(args.ttl, "--ttl"), args.subject)
    claims = verify_token(token, key.public_key())
    print(token)
    print(f"token for {claims.subject}, valid until {utc_text(claims.expires)}", file=sys.stderr)
    return 0


async def _remote(db: Database, args: argparse.Namespace) -> int:
    from hallelujah import cli_output as out
    if args.command == "submit":
        result = await db.submit(*_read_document(args.file))
        _said(args.json, f"submitted {result['tradecraft']}: outputs {', '.join(result['outputs']) or '(none)'}",
              result)
    elif args.command == "list":
        out.print_list(await db.list(), args.json)
    elif args.command == "describe" and args.watch is not None:
        if not args.watch > 0 or args.json:
            raise InvalidInput(f"--watch {args.watch}: must be more than 0 seconds, without --json")
        await out.watch_describe(db, args.target, args.watch)
    elif args.command == "describe":
        out.print_describe(await db.describe(args.target), args.json)
    elif args.command == "cancel":
        await db.cancel(args.tradecraft)
        _said(args.json, f"cancelled {args.tradecraft}", {"cancelled": args.tradecraft})
    elif args.command == "publish":
        rows = await out.publish_file(db, args.stream, Path(args.file), args.format, args.end,
                                      args.publisher_id, args.table)
        _said(args.json, f"published {out.rows_text(rows)} to {args.stream}",
              {"stream": args.stream, "rows": rows, "ended": args.end}, sys.stderr)
    elif args.command == "stream":
        await out.stream_to(db, args.analytic, args.from_start, args.limit, args.format, args.output)
    elif args.command == "query":
        out.write_rows(await db.query(args.analytic, _groups(args.group)))
    elif args.command in ("split", "merge", "congestion", "reload"):
        from hallelujah import updates
        result = await _change(db, args)
        _said(args.json, updates.done_text(args.command, result), result)
    elif args.command == "debug":
        sys.stdout.write(await db.debug(args.tradecraft))
    elif args.command == "checkpoint":
        done = await db.checkpoint(args.tradecraft)
        _said(args.json, f"checkpoint {done['id']} of {args.tradecraft}: {done['bytes']:,} bytes of state "
                         f"in {done['seconds']:.3f} s", done)
    return 0


async def _change(db: Database, args: argparse.Namespace) -> dict[str, Any]:
    """One hand-made change (hallelujah/updates.py), as its subcommand asks it."""
    from hallelujah import updates
    if args.command == "split":
        return await updates.split(db, args.jah)
    if args.command == "merge":
        return await updates.merge(db, args.jah)
    if args.command == "reload":
        return await updates.reload(db, args.analytic)
    thresholds = {k: v for k, v in (("busy", args.busy), ("for", args.for_)) if v is not None}
    if not thresholds:
        raise InvalidInput("congestion: give --busy, --for or both")
    return await updates.set_congestion(db, args.tradecraft, thresholds)


def _groups(pairs: list[str]) -> dict[str, str]:
    """--group k=v options as {k: v}."""
    groups = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f'--group {pair!r} is not FIELD=VALUE')
        groups[key] = value
    return groups


def _said(as_json: bool, text: str, result: Any, where: Any = None) -> None:
    """What a command did: a line for people (on `where`, default stdout), or JSON on stdout."""
    if as_json:
        print(json.dumps(result))
    else:
        print(text, file=where or sys.stdout)


def _read_document(name: str) -> tuple[Any, Path]:
    """A document's JSON from a file, or from stdin for `-`, and the directory its relative
    paths are resolved against (the file's, or the working directory)."""
    from hallelujah.errors import TradecraftError
    try:
        if name == "-":
            return json.loads(sys.stdin.read()), Path.cwd()
        return json.loads(Path(name).read_text()), Path(name).resolve().parent
    except json.JSONDecodeError as exc:
        raise TradecraftError("", f"{name}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise TradecraftError("", f"{name}: not JSON: not UTF-8 text") from None


if __name__ == "__main__":
    main()
