"""Safe off-host: a congregation with TLS admits congregations by certificate and clients by
token, refuses everyone else in one line, and serves on.

One daemon (TLS on loopback, metrics, a short idle timeout) serves every test here; what the
daemon logs goes to a file the tests read. A real client reads a real tradecraft's output, and it
is compared with what pyarrow computes here.
"""
from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest
import trio

import hallelujah
from congregation.tls import TlsConfig, init_ca, issue_cert
from hallelujah.errors import InvalidInput, Unavailable
from hallelujah.frames import connect, encode
from hallelujah.tokens import create_token, load_ca_key
from tests.conftest import Daemon
from tests.integration.helpers import assert_rows_equal, read
from tests.integration.test_metrics import free_port


class Cluster:
    """The CA, a daemon using its certificate, and another CA (a stranger's)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = root / "ca"
        init_ca(self.ca)
        issue_cert("west", self.ca, addresses=["127.0.0.1"])
        issue_cert("east", self.ca, addresses=["127.0.0.1"])     # a peer congregation
        init_ca(root / "other")
        issue_cert("stranger", root / "other", addresses=["127.0.0.1"])
        self.metrics = free_port()
        self.log = root / "daemon.log"
        self.daemon = Daemon(root / "data", workers=1, extra=[
            "--tls-cert", str(self.ca / "west.pem"), "--tls-key", str(self.ca / "west.key"),
            "--tls-ca", str(self.ca / "ca.pem"), "--metrics", f"127.0.0.1:{self.metrics}",
            "--idle-timeout", "2", "--source-root", str(root)])

    def token(self, ttl: float = 3600, ca: str = "ca", now: float | None = None) -> str:
        return create_token(load_ca_key(self.root / ca / "ca.key"), ttl, "tester", now=now)

    def db(self, token: str | None = None) -> hallelujah.Database:
        return hallelujah.Database([self.daemon.address], ca=self.ca / "ca.pem", token=token)

    def logged(self, event: str) -> list[dict]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == event]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("tls"))
    with open(c.log, "w") as log, contextlib.redirect_stderr(log):     # the daemon's stderr
        c.daemon.start()
    yield c
    assert c.daemon.stop() == 0


async def wait_logged(cluster: Cluster, event: str, count: int) -> list[dict]:
    with trio.fail_after(10):
        while len(cluster.logged(event)) < count:
            await trio.sleep(0.05)
    return cluster.logged(event)


async def serves(cluster: Cluster) -> None:
    """The daemon still answers a client with a valid token."""
    with trio.fail_after(10):
        assert isinstance(await cluster.db(cluster.token()).list(), list)


async def test_a_client_with_a_token_submits_and_reads_what_pyarrow_computes(cluster: Cluster) -> None:
    rng = np.random.default_rng(14)
    table = pa.table({"id": np.arange(5_000, dtype=np.int64), "amount": rng.uniform(0, 100, 5_000).round(2)})
    path = cluster.root / "payments.csv"
    pcsv.write_csv(table, path)
    db = cluster.db(cluster.token())
    with trio.fail_after(30):
        await db.submit({"tradecraft": "pay", "analytics": [
            {"name": "p", "kind": "stream", "source": {"path": str(path)},
             "schema": {"id": "int64", "amount": "float64"}},
            {"name": "big", "kind": "transform", "input": "p", "derive": {"twice": "amount * 2"},
             "where": "amount > 10"}]})
        got = await read(db, "pay/big")
    kept = table.filter(pc.greater(table["amount"], 10))
    assert_rows_equal(got.sort_by("id"), kept.append_column("twice", pc.multiply(kept["amount"], 2)), "pay/big")


@pytest.mark.parametrize("which, why", [
    ("none", "refused: no token"),
    ("expired", "refused: token expired at 2023-11-14T22:14:20Z"),
    ("other CA", "refused: token not signed by this cluster's CA"),
])
async def test_a_client_without_a_valid_token_is_refused_in_one_line_and_logged(cluster: Cluster, which: str,
                                                                                why: str) -> None:
    token = {"none": None, "expired": cluster.token(60, now=1_700_000_000),
             "other CA": cluster.token(ca="other")}[which]
    before = len(cluster.logged("connection_refused"))
    with trio.fail_after(10), pytest.raises(InvalidInput) as refused:
        await cluster.db(token).list()
    assert str(refused.value).startswith(why) and "\n" not in str(refused.value)
    logged = await wait_logged(cluster, "connection_refused", before + 1)
    assert logged[-1]["reason"].startswith(why) and logged[-1]["peer"] == "127.0.0.1"
    await serves(cluster)


async def test_a_congregation_with_a_certificate_from_the_cluster_ca_needs_no_token(cluster: Cluster) -> None:
    east = TlsConfig(cluster.ca / "east.pem", cluster.ca / "east.key", cluster.ca / "ca.pem")
    with trio.fail_after(10):
        conn = await connect(cluster.daemon.address, tls=east.client_context())
        try:
            await conn.send("cmdReq", {"id": 1, "command": "list", "args": "{}"})
            kind, fields, _ = await conn.receive()
        finally:
            await conn.aclose()
    assert kind == "cmdCfm" and "tradecrafts" in json.loads(fields["result"]), fields


async def test_a_peer_with_a_certificate_from_another_ca_fails_the_handshake(cluster: Cluster) -> None:
    stranger = ssl.create_default_context(cafile=str(cluster.ca / "ca.pem"))   # it trusts us; we do not trust it
    stranger.load_cert_chain(cluster.root / "other" / "stranger.pem", cluster.root / "other" / "stranger.key")
    before = len(cluster.logged("tls_handshake_failed"))
    with trio.fail_after(10), pytest.raises(Unavailable):
        conn = await connect(cluster.daemon.address, tls=stranger)
        try:
            await conn.send("cmdReq", {"id": 1, "command": "list", "args": "{}"})
            await conn.receive()
        finally:
            await conn.aclose()
    logged = await wait_logged(cluster, "tls_handshake_failed", before + 1)
    assert "certificate" in logged[-1]["reason"].lower(), logged[-1]
    # and a client that holds the stranger's CA does not trust this congregation
    with trio.fail_after(10), pytest.raises(Unavailable, match="TLS with .* failed: .*certificate"):
        await hallelujah.Database([cluster.daemon.address], ca=cluster.root / "other" / "ca.pem",
                                  token=cluster.token()).list()
    await serves(cluster)


async def test_plain_tcp_garbage_and_silence_are_closed_and_the_daemon_serves_on(cluster: Cluster) -> None:
    host, _, port = cluster.daemon.address.rpartition(":")
    before = len(cluster.logged("tls_handshake_failed"))
    with trio.fail_after(10):
        for sent in (encode("cmdReq", {"id": 1, "command": "list", "args": "{}"}), b"\x16\x03\x01" + b"\xff" * 600,
                     b""):
            stream = await trio.open_tcp_stream(host, int(port))
            try:
                if sent:
                    await stream.send_all(sent)
                while await stream.receive_some(4096):    # whatever alert comes, then the close
                    pass
            except trio.BrokenResourceError:
                pass                                      # (a reset is a close too)
            finally:
                await stream.aclose()
    await wait_logged(cluster, "tls_handshake_failed", before + 3)
    # the library without --ca hears a hint, not a riddle
    with trio.fail_after(10), pytest.raises(Unavailable, match="if it runs TLS: give --ca and --token"):
        await hallelujah.Database([cluster.daemon.address], token=cluster.token()).list()
    await serves(cluster)


def scrape(cluster: Cluster, token: str | None = None, cert: str | None = None) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(cluster.ca / "ca.pem"))
    if cert:
        context.load_cert_chain(cluster.ca / f"{cert}.pem", cluster.ca / f"{cert}.key")
    request = urllib.request.Request(f"https://127.0.0.1:{cluster.metrics}/metrics",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


async def test_metrics_are_https_for_a_ca_certificate_or_a_token_only(cluster: Cluster) -> None:
    assert await trio.to_thread.run_sync(scrape, cluster) == (
        401, "refused: no token (a client must present one over TLS: hallelujah --token TOKEN, "
             "or $HALLELUJAH_TOKEN)\n")
    for by in ({"token": cluster.token()}, {"cert": "east"}):
        status, text = await trio.to_thread.run_sync(lambda: scrape(cluster, **by))
        assert status == 200 and "hallelujah_workers 1.0" in text, (by, status, text[:200])
    status, text = await trio.to_thread.run_sync(lambda: scrape(cluster, token=cluster.token(ca="other")))
    assert status == 401 and "not signed by this cluster's CA" in text


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)


async def test_the_cli_talks_tls_with_a_token_and_says_why_without_one(cluster: Cluster) -> None:
    at = ["-m", "hallelujah", "--at", cluster.daemon.address, "--ca", str(cluster.ca / "ca.pem")]
    done = await trio.to_thread.run_sync(lambda: run(*at, "--token", cluster.token(), "list", "--json"))
    assert done.returncode == 0 and isinstance(json.loads(done.stdout), list), done.stderr
    done = await trio.to_thread.run_sync(lambda: run(*at, "list"))
    assert done.returncode == 2 and done.stderr.startswith("hallelujah: refused: no token") \
        and done.stderr.count("\n") == 1, done.stderr


def test_the_blocking_facade_takes_a_ca_and_a_token(cluster: Cluster) -> None:
    db = hallelujah.connect(cluster.daemon.address, ca=str(cluster.ca / "ca.pem"), token=cluster.token())
    assert isinstance(db.list(), list)


@pytest.mark.parametrize("flags, says", [
    (["--listen", "0.0.0.0:0"], "--listen 0.0.0.0:0: only loopback addresses without TLS; a non-loopback "
                                "address needs --tls-cert, --tls-key and --tls-ca"),
    (["--metrics", "0.0.0.0:0"], "--metrics 0.0.0.0:0: only loopback addresses without TLS"),
    (["--listen", "0.0.0.0:0", "--tls-cert", "x.pem"], "--tls-cert, --tls-key and --tls-ca go together"),
])
def test_beyond_loopback_without_tls_is_refused_before_anything_starts(tmp_path: Path, flags: list[str],
                                                                       says: str) -> None:
    started = time.monotonic()
    done = run("-m", "congregation", "--data-dir", str(tmp_path / "d"), *flags, timeout=30)
    assert done.returncode == 2 and done.stderr.startswith(f"congregation: {says}"), done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "d").exists()
    assert time.monotonic() - started < 30


def test_a_key_that_is_not_the_certificates_is_refused_in_one_line(cluster: Cluster, tmp_path: Path) -> None:
    ca = cluster.ca
    done = run("-m", "congregation", "--data-dir", str(tmp_path / "d"), "--listen", "0.0.0.0:0",
               "--tls-cert", str(ca / "west.pem"), "--tls-key", str(ca / "east.key"), "--tls-ca", str(ca / "ca.pem"))
    assert done.returncode == 2 and done.stderr.startswith("congregation: --tls-cert") \
        and done.stderr.count("\n") == 1, done.stderr


def test_init_ca_and_issue_cert_on_the_command_line(tmp_path: Path) -> None:
    assert run("-m", "congregation", "init-ca", str(tmp_path / "ca")).returncode == 0
    done = run("-m", "congregation", "issue-cert", "north", "--ca", str(tmp_path / "ca"), "--out",
               str(tmp_path / "north"), "--address", "10.0.0.5")
    assert done.returncode == 0 and (tmp_path / "north" / "north.key").exists(), done.stderr
    again = run("-m", "congregation", "init-ca", str(tmp_path / "ca"))
    assert again.returncode == 2 and again.stderr.strip().endswith("exists already (not overwritten)")
