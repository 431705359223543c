"""A blocking facade over the trio client, for scripts and notebooks: same methods, same errors."""
from __future__ import annotations

import functools
from typing import Any, Sequence

import pyarrow as pa
import trio

from hallelujah.client import Database, addresses_from, tls_from


class SyncDatabase:
    """Each method runs its trio counterpart to completion (no event loop may be running)."""

    def __init__(self, addresses: Sequence[str], *, ca: str | None = None, token: str | None = None) -> None:
        self._db = Database(addresses, ca=ca, token=token)

    def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return trio.run(functools.partial(getattr(self._db, name), *args, **kwargs))

    def submit(self, document: dict[str, Any] | str, base_dir: str | None = None) -> dict[str, Any]:
        return self._run("submit", document, base_dir)

    def list(self) -> list[dict[str, Any]]:
        return self._run("list")

    def describe(self, tradecraft: str = "") -> dict[str, Any]:
        return self._run("describe", tradecraft)

    def cancel(self, tradecraft: str) -> dict[str, Any]:
        return self._run("cancel", tradecraft)

    def debug(self, tradecraft: str = "") -> str:
        return self._run("debug", tradecraft)

    def query(self, analytic: str, group: dict[str, Any] | None = None) -> pa.Table:
        return self._run("query", analytic, group)

    def publish(self, stream: str, data: Any, *, end: bool = False, publisher_id: str | None = None,
                first_seq: int = 0) -> int:
        """See Database.publish: the same `publisher_id` makes publishing again safe."""
        return self._run("publish", stream, data, end=end, publisher_id=publisher_id, first_seq=first_seq)

    def read(self, analytic: str, *, from_start: bool = True, limit: int | None = None,
             follow: bool = True) -> pa.Table:
        """The retained output as a table, once it has ended (or `limit` rows); with
        `follow=False`, the rows it holds now, at once (for an output that has not ended)."""
        return self._run("read", analytic, from_start=from_start, limit=limit, follow=follow)

    stream = read


def connect(addresses: Sequence[str] | str | None = None, *, ca: str | None = None,
            token: str | None = None) -> SyncDatabase:
    """A blocking Database (see open_database: the same addresses, `ca` and `token`, and their
    environment variables)."""
    ca, token = tls_from(ca, token)
    return SyncDatabase(addresses_from(addresses), ca=ca, token=token)
