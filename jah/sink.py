"""SINK: keeps an output analytic's batches in its log, exactly once.

Each batch carries the source position it derives from; the SINK commits that position with the
batch, and skips anything at or before it after a replay, so a restart repeats nothing.
"""
from __future__ import annotations

from jah.base import Jah


class Sink(Jah):
    role = "sink"

    async def run(self) -> None:
        logs = self.host.context["logs"]
        name = self.spec["log"]
        progress: dict[str, int] = await logs.progress(name)
        async for env in self.inputs["in"]:
            if env.source and env.origin <= progress.get(env.source, 0):
                continue
            with self.busy():
                await logs.append(name, env.ipc() if env.rows else None, env.rows, env.source,
                                  env.origin)
            progress[env.source] = env.origin
        await logs.end(name)
