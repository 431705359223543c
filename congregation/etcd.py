"""A small client for etcd's v3 JSON gateway (httpx under trio): leases, keys, transactions.

The cluster's shared truth lives in etcd, a well-tested Raft; this module only speaks its HTTP
API. Keys and values travel base64-encoded; revisions come back as strings. A request goes to
the endpoint that last answered, and on to the others when one does not.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Sequence

import httpx

from hallelujah.errors import Unavailable

REQUEST_TIMEOUT = 2.0      # seconds one request to one endpoint may take


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that makes a range request cover every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return _b64(bytes(raw))


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    def json(self) -> Any:
        return json.loads(self.value)


def _kv(raw: dict[str, Any]) -> KV:
    return KV(base64.b64decode(raw["key"]).decode(), base64.b64decode(raw.get("value", "")),
              int(raw.get("create_revision", 0)), int(raw.get("mod_revision", 0)), int(raw.get("lease", 0)))


def put_op(key: str, value: Any, lease: int = 0) -> dict[str, Any]:
    """A put inside a transaction (`value` as JSON)."""
    op: dict[str, Any] = {"key": _b64(key), "value": _b64(json.dumps(value))}
    if lease:
        op["lease"] = str(lease)
    return {"request_put": op}


def delete_op(key: str, prefix: bool = False) -> dict[str, Any]:
    op = {"key": _b64(key)}
    if prefix:
        op["range_end"] = _prefix_end(key)
    return {"request_delete_range": op}


def absent(key: str) -> dict[str, Any]:
    """A comparison that holds when `key` does not exist."""
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def created_at(key: str, revision: int) -> dict[str, Any]:
    """A comparison that holds while `key` is the one created at `revision` (a fencing token)."""
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}


class Etcd:
    """The etcd cluster at `endpoints` ("http://127.0.0.1:2379", …)."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT)
        self._current = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for step in range(len(self.endpoints)):
            index = (self._current + step) % len(self.endpoints)
            endpoint = self.endpoints[index]
            try:
                reply = await self._client.post(f"{endpoint}{path}", json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{endpoint}: {type(exc).__name__} {exc}".strip())
                continue
            if reply.status_code != 200:
                errors.append(f"{endpoint}: HTTP {reply.status_code} {reply.text[:200]}")
                continue
            self._current = index
            result: dict[str, Any] = reply.json()
            return result
        raise Unavailable(f"etcd did not answer {path}: {'; '.join(errors)}")

    async def grant(self, ttl: int) -> int:
        return int((await self._post("/v3/lease/grant", {"TTL": ttl}))["ID"])

    async def keepalive(self, lease: int) -> int:
        """The lease's TTL after this keepalive; 0 once it has expired (or was revoked)."""
        reply = await self._post("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        await self._post("/v3/lease/revoke", {"ID": str(lease)})

    async def time_to_live(self, lease: int) -> int:
        """Seconds left on a lease (-1: it has expired)."""
        return int((await self._post("/v3/lease/timetolive", {"ID": str(lease)})).get("TTL", -1))

    async def leader(self) -> str:
        """The name of etcd's current Raft leader ("" when there is none)."""
        leader = (await self._post("/v3/maintenance/status", {})).get("leader", "")
        members = (await self._post("/v3/cluster/member/list", {})).get("members", [])
        return next((str(m.get("name", "")) for m in members if m.get("ID") == leader), "")

    async def get(self, key: str) -> KV | None:
        kvs = (await self._post("/v3/kv/range", {"key": _b64(key)})).get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    async def prefix(self, prefix: str) -> list[KV]:
        reply = await self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return [_kv(raw) for raw in reply.get("kvs", [])]

    async def put(self, key: str, value: Any, lease: int = 0) -> int:
        """Put `value` (as JSON); the revision it made."""
        body = put_op(key, value, lease)["request_put"]
        return int((await self._post("/v3/kv/put", body))["header"]["revision"])

    async def delete(self, key: str, prefix: bool = False) -> None:
        await self._post("/v3/kv/deleterange", delete_op(key, prefix)["request_delete_range"])

    async def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                  failure: list[dict[str, Any]] | None = None) -> tuple[bool, int]:
        """Run `success` if every comparison holds, else `failure`: (held, revision after)."""
        reply = await self._post("/v3/kv/txn", {"compare": compare, "success": success,
                                                "failure": failure or []})
        return bool(reply.get("succeeded", False)), int(reply["header"]["revision"])
