"""The Window Interface (`hallelujah wi`, `python -m sheets.wi --at ADDR`): urwid on its trio
event loop, beside the App's background tasks in one nursery."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
import trio
import urwid

import hallelujah
from hallelujah.client import addresses_from
from hallelujah.logs import configure_logging
from sheets.app import PALETTE, App

log = structlog.get_logger("sheets")


def bad_address(address: str) -> str | None:
    """Why `address` is not HOST:PORT (or a Unix socket path), or None when it is."""
    if address.startswith("/"):
        return None
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"--at {address!r}: expected HOST:PORT, e.g. 127.0.0.1:7077"
    return None


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Nothing may print under the screen: while it is up, log lines (JSON) go to the file
    $HALLELUJAH_WI_LOG names, or nowhere; the logging set before is put back afterwards."""
    before = structlog.get_config()
    path = os.environ.get("HALLELUJAH_WI_LOG")
    with open(path or os.devnull, "a", buffering=1) as stream:
        configure_logging("json")
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream))
        try:
            yield
        finally:
            structlog.configure(**before)


async def serve(addresses: list[str], read_only: bool) -> None:
    """Draw and take keys until `q`; the refresh and reads run in the same trio run."""
    app = App(hallelujah.Database(addresses), read_only)
    event_loop = urwid.TrioEventLoop()
    loop = urwid.MainLoop(app.widget, palette=PALETTE, event_loop=event_loop, handle_mouse=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(app.run)
        with loop.start():
            app.redraw = loop.draw_screen
            try:
                await event_loop.run_async()
            finally:
                app.redraw = lambda: None
        nursery.cancel_scope.cancel()


def main(addresses: list[str], read_only: bool = False) -> int:
    """Run the Window Interface against `addresses` until the user quits; returns the exit code."""
    addresses = addresses_from(addresses)
    problem = next((p for p in map(bad_address, addresses) if p), None) or (
        None if sys.stdin.isatty() and sys.stdout.isatty() else "needs a terminal (stdin and stdout)")
    if problem:
        print(f"hallelujah wi: {problem}", file=sys.stderr)
        log.warning("wi_refused", reason=problem)
        return 2
    with quiet_logs():
        trio.run(serve, addresses, read_only)
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sheets.wi", description=(
        "The Window Interface: tradecrafts, their analytics and Jahs, live."))
    parser.add_argument("--at", action="append", default=[], metavar="HOST:PORT",
                        help="a congregation's address (repeatable; default $HALLELUJAH_AT or 127.0.0.1:7077)")
    parser.add_argument("--read-only", action="store_true", help="show, never change (cancel is refused)")
    args = parser.parse_args(argv)
    configure_logging("console")
    return main(args.at, args.read_only)


if __name__ == "__main__":
    sys.exit(cli())
