"""A slow, dead or lost congregation: the Window Interface says "unreachable" and keeps taking
keys; it never waits on the congregation."""
from __future__ import annotations

import functools
import socket
import time

import trio

import hallelujah
from tests.sheets.screen import driven, row


async def test_a_congregation_that_never_answers_shows_as_unreachable():
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()          # accepts, reads nothing, answers nothing

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with driven(hallelujah.Database([f"127.0.0.1:{port}"]), timeout=0.5) as wi:
                assert "connecting..." in wi.screen()
                started = time.monotonic()
                wi.keys("?")                 # keys are taken while the describe waits
                assert "help" in wi.screen()
                assert time.monotonic() - started < 0.2
                wi.keys("esc")
                shown = await wi.until(lambda s: "unreachable: no answer in 0.5s" in s, "unreachable")
                assert row(shown, "tradecraft")[:2] == ["tradecraft", "state"]
                # it keeps trying: two more timed-out describes, and keys still work between them
                feed, first = wi.app.feed, wi.app.feed.attempts
                while feed.attempts < first + 2:
                    wi.keys("E")
                    assert "tradecrafts > events" in wi.screen()
                    wi.keys("esc")
                    assert "unreachable: no answer in 0.5s" in wi.screen()
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()


async def test_a_closed_port_shows_why():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]           # closed again when the block ends: nobody listens
    with trio.fail_after(20):
        async with driven(hallelujah.Database([f"127.0.0.1:{port}"]), timeout=1.0) as wi:
            shown = await wi.until(lambda s: "unreachable:" in s, "unreachable")
            assert f"127.0.0.1:{port}" in shown.split("\n")[0]


async def test_a_killed_congregation_keeps_its_last_answer_on_screen(daemon_factory):
    congregation = daemon_factory(workers=1)
    db = congregation.db()
    with trio.fail_after(60):
        await db.submit({"tradecraft": "tc", "analytics": [
            {"name": "x", "kind": "stream", "schema": {"id": "int64"}}]})
        async with driven(db, timeout=0.5) as wi:
            shown = await wi.until(lambda s: "tc " in s and "running" in s, "tc running")
            assert ", 1 worker" in shown.split("\n")[0] and "1 workers" not in shown
            congregation.kill()
            shown = await wi.until(lambda s: "unreachable" in s and "last answer" in s, "unreachable")
            assert row(shown, "tc")[:2] == ["tc", "running"]     # what it last said, still shown
            wi.keys("enter")
            assert "tradecrafts > tc" in wi.screen()
