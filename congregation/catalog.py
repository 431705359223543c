"""The SQLite catalog (sqlite-utils): what exists — tradecrafts, analytics, Jahs, datastreams.

The only module that writes catalog.db. Calls run in one thread at a time through a
CapacityLimiter(1), so the trio loop never blocks on SQLite. On a full disk a write the
congregation makes for itself (a Jah's state, an event) waits for space, so the catalog follows
the work that a full disk only pauses; a submit is refused (NoSpace).
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import sqlite_utils
import trio

from congregation.space import is_no_space, no_space, waiting_for_space

T = TypeVar("T")


class Catalog:
    def __init__(self, data_dir: Path) -> None:
        conn = sqlite3.connect(str(Path(data_dir) / "catalog.db"), check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.table("tradecrafts").create({"name": str, "document": str, "state": str, "error": str,
                                       "submitted_at": float, "finished_at": float},
                                      pk="name", if_not_exists=True)
        self.db.table("analytics").create({"tradecraft": str, "name": str, "idx": int, "kind": str,
                                     "output": int}, pk=("tradecraft", "name"), if_not_exists=True)
        self.db.table("jahs").create({"id": str, "tradecraft": str, "analytic": str, "role": str,
                                "host": int, "state": str, "error": str},
                               pk="id", if_not_exists=True)
        self.db.table("datastreams").create({"id": str, "tradecraft": str, "sender": str,
                                       "sender_port": str, "receiver": str, "receiver_port": str},
                                      pk="id", if_not_exists=True)
        self.db.table("events").create({"id": int, "tradecraft": str, "at": float, "kind": str,
                                  "detail": str}, pk="id", if_not_exists=True)
        # a complete checkpoint: the positions its sources resume from, each Jah's state file
        self.db.table("checkpoints").create({"tradecraft": str, "id": int, "completed_at": float, "seconds": float,
                                       "bytes": int, "positions": str, "files": str},
                                      pk=("tradecraft", "id"), if_not_exists=True)
        self.data_dir = Path(data_dir)
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _write(self, fn: Callable[[], None], what: str, wait: bool = True) -> None:
        """A write (rolled back whole if it fails); a full disk raises NoSpace, or is waited out."""
        def write() -> None:
            try:
                fn()
            except sqlite3.Error as exc:
                if self.db.conn.in_transaction:     # a failed COMMIT may leave it open
                    self.db.conn.rollback()
                if is_no_space(exc):
                    raise no_space(self.data_dir, exc) from None
                raise
        if wait:
            await waiting_for_space(lambda: self._run(write), what)
        else:
            await self._run(write)

    async def add_tradecraft(self, name: str, document: dict[str, Any],
                             analytics: list[dict[str, Any]]) -> None:
        def add() -> None:
            with self.db.conn:
                self.db.table("tradecrafts").insert({"name": name, "document": json.dumps(document),
                                               "state": "running", "error": "",
                                               "submitted_at": time.time(), "finished_at": None})
                self.db.table("analytics").insert_all([{"tradecraft": name, **a} for a in analytics])
        await self._write(add, f"catalog: add {name}", wait=False)

    async def tradecrafts(self, state: str | None = None) -> list[dict[str, Any]]:
        def rows() -> list[dict[str, Any]]:
            where, args = ("state = ?", [state]) if state else (None, None)
            return list(self.db.table("tradecrafts").rows_where(where, args, order_by="submitted_at"))
        return await self._run(rows)

    async def tradecraft(self, name: str) -> dict[str, Any] | None:
        def row() -> dict[str, Any] | None:
            found = list(self.db.table("tradecrafts").rows_where("name = ?", [name]))
            return found[0] if found else None
        return await self._run(row)

    async def set_state(self, name: str, state: str, error: str = "") -> None:
        def update() -> None:
            with self.db.conn:
                self.db.table("tradecrafts").update(name, {
                    "state": state, "error": error,
                    "finished_at": time.time() if state != "running" else None})
        await self._write(update, f"catalog: {name} {state}")

    async def record_event(self, tradecraft: str, kind: str, detail: dict[str, Any]) -> None:
        def add() -> None:
            with self.db.conn:
                self.db.table("events").insert({"tradecraft": tradecraft, "at": time.time(),
                                          "kind": kind, "detail": json.dumps(detail)})
        await self._write(add, f"catalog: {tradecraft} event {kind}")

    async def events(self, tradecraft: str) -> list[dict[str, Any]]:
        def rows() -> list[dict[str, Any]]:
            return list(self.db.table("events").rows_where("tradecraft = ?", [tradecraft], order_by="id"))
        return await self._run(rows)

    async def set_deployment(self, tradecraft: str, jahs: list[dict[str, Any]],
                             streams: list[dict[str, Any]]) -> None:
        """Replace the Jahs and datastreams recorded for a tradecraft (at each (re)deployment)."""
        def replace() -> None:
            with self.db.conn:
                for table in ("jahs", "datastreams"):
                    self.db.execute(f"DELETE FROM {table} WHERE tradecraft = ?", [tradecraft])
                self.db.table("jahs").insert_all([{"tradecraft": tradecraft, **j} for j in jahs])
                self.db.table("datastreams").insert_all([{"tradecraft": tradecraft, **s} for s in streams])
        await self._write(replace, f"catalog: {tradecraft} deployment")

    async def jahs_and_events(self, tradecraft: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Both in one trip to the catalog's thread (what `describe` reads of a tradecraft)."""
        def rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            return (list(self.db.table("jahs").rows_where("tradecraft = ?", [tradecraft], order_by="id")),
                    list(self.db.table("events").rows_where("tradecraft = ?", [tradecraft], order_by="id")))
        return await self._run(rows)

    async def set_jah_state(self, jah: str, state: str, error: str = "") -> None:
        def update() -> None:
            with self.db.conn:
                self.db.execute("UPDATE jahs SET state = ?, error = ? WHERE id = ?",
                                [state, error, jah])
        await self._write(update, f"catalog: {jah} {state}")

    async def add_checkpoint(self, tradecraft: str, row: dict[str, Any]) -> None:
        """Commit a complete checkpoint (its files are synced already); older ones are dropped."""
        def add() -> None:
            with self.db.conn:
                self.db.table("checkpoints").insert({"tradecraft": tradecraft, **row})
                self.db.execute("DELETE FROM checkpoints WHERE tradecraft = ? AND id < ?", [tradecraft, row["id"]])
        await self._write(add, f"catalog: {tradecraft} checkpoint {row['id']}")

    async def last_checkpoint(self, tradecraft: str) -> dict[str, Any] | None:
        def last() -> dict[str, Any] | None:
            rows = list(self.db.table("checkpoints").rows_where("tradecraft = ?", [tradecraft], order_by="id desc",
                                                          limit=1))
            return rows[0] if rows else None
        return await self._run(last)

    async def delete_tradecraft(self, name: str) -> None:
        def delete() -> None:
            with self.db.conn:
                for table in ("analytics", "jahs", "datastreams", "events", "checkpoints"):
                    self.db.execute(f"DELETE FROM {table} WHERE tradecraft = ?", [name])
                self.db.execute("DELETE FROM tradecrafts WHERE name = ?", [name])
        await self._write(delete, f"catalog: delete {name}")

    async def counts(self) -> dict[str, int]:
        """Rows per table: what a refused command must leave unchanged."""
        def count() -> dict[str, int]:
            return {t: self.db[t].count for t in ("tradecrafts", "analytics", "jahs", "datastreams")}
        return await self._run(count)

    def close(self) -> None:
        self.db.conn.close()
