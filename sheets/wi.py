"""The Window Interface (`hallelujah wi`, `python -m sheets.wi --at ADDR`): urwid on its trio
event loop, beside the App's background tasks in one nursery."""
from __future__ import annotations

import argparse
import sys

import trio
import urwid

import hallelujah
from hallelujah.client import addresses_from
from sheets.app import PALETTE, App


async def serve(addresses: list[str], read_only: bool) -> None:
    """Draw and take keys until `q`; the refresh and reads run in the same trio run."""
    app = App(hallelujah.Database(addresses_from(addresses)), read_only)
    event_loop = urwid.TrioEventLoop()
    loop = urwid.MainLoop(app.widget, palette=PALETTE, event_loop=event_loop, handle_mouse=False)
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
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        print("hallelujah wi: needs a terminal (stdin and stdout)", file=sys.stderr)
        return 2
    trio.run(serve, addresses, read_only)
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sheets.wi", description=(
        "The Window Interface: tradecrafts, their analytics and Jahs, live."))
    parser.add_argument("--at", action="append", default=[], metavar="HOST:PORT",
                        help="a congregation's address (repeatable; default $HALLELUJAH_AT or 127.0.0.1:7077)")
    parser.add_argument("--read-only", action="store_true", help="show, never change (cancel is refused)")
    args = parser.parse_args(argv)
    return main(args.at, args.read_only)


if __name__ == "__main__":
    sys.exit(cli())
