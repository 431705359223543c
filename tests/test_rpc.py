"""Control connections: one reader task, a dispatch table by message kind, typed errors both ways."""
from __future__ import annotations

import pytest
import trio

from congregation.rpc import Peer
from hallelujah.errors import EvaluationError, InvalidInput, NoSpace
from hallelujah.frames import Connection


async def test_a_request_nobody_handles_gets_a_typed_error_and_errors_keep_their_type():
    a, b = trio.socket.socketpair()
    asker = Peer(Connection(trio.SocketStream(a), "worker"))

    async def evaluate(fields: dict) -> dict:
        raise EvaluationError("x / y at position 2 failed: divide by zero", 2)

    async def query(fields: dict) -> dict:
        raise NoSpace("the data dir is full")

    answerer = Peer(Connection(trio.SocketStream(b), "congregation"),
                    {"controlReq": evaluate, "queryReq": query})
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker.serve)
            nursery.start_soon(answerer.serve)
            with pytest.raises(InvalidInput, match="jahReq: not a request answered on this connection"):
                await asker.request("jahReq", {"jah": "t/a/transform-0", "spec": "{}", "stop": False})
            with pytest.raises(EvaluationError, match="divide by zero"):
                await asker.request("controlReq", {"jah": "t/a/prejoin", "args": "{}"})
            with pytest.raises(NoSpace, match="the data dir is full"):
                await asker.request("queryReq", {"jah": "t/a/aggregate-0"})
            nursery.cancel_scope.cancel()
    await asker.conn.aclose()
    await answerer.conn.aclose()
