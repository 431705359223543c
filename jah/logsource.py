"""LOGSOURCE: a pushed `stream` analytic, read from the input log that `publish` appends to.

It lives beside the log in the congregation, reads from the position its outputs committed and
then follows new appends; a publish with `end` closes the stream.
"""
from __future__ import annotations

from jah.base import Jah
from jah.envelope import Envelope


class LogSource(Jah):
    role = "logsource"

    async def run(self) -> None:
        logs = self.host.context["logs"]
        name = self.spec["log"]
        seq = int(self.spec.get("resume_from", 0))
        schema = self.schema("out")
        async for entry, batch in logs.follow(name, seq, schema):
            await self.emit_read(Envelope(batch, entry.seq + 1, self.spec["source_id"]))
