"""The cluster CA, certificates and tokens (hallelujah/tokens.py, congregation/tls.py), and frames
carried alike over a plain socket, a generic stream and a TLS stream."""
from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import trio
import trio.testing
from cryptography import x509

from congregation.tls import TlsConfig, init_ca, issue_cert
from hallelujah import cli
from hallelujah.errors import InvalidInput
from hallelujah.frames import STREAM_CHUNK, Connection, open_batch, serialize_batch
from hallelujah.tokens import MAX_TOKEN, TokenRefused, create_token, load_ca_key, verify_token


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    init_ca(tmp_path / "ca")
    issue_cert("west", tmp_path / "ca", addresses=["127.0.0.1", "localhost"])
    return tmp_path / "ca"


def test_init_ca_writes_a_private_key_only_its_owner_reads_and_never_overwrites(ca: Path) -> None:
    assert stat.S_IMODE(os.stat(ca / "ca.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ca / "west.key").st_mode) == 0o600
    with pytest.raises(InvalidInput, match="exists already"):
        init_ca(ca)


def test_issue_cert_names_its_addresses_and_serves_both_ends(ca: Path) -> None:
    cert = x509.load_pem_x509_certificate((ca / "west.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["west", "localhost"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u._name for u in usages} == {"serverAuth", "clientAuth"}
    with pytest.raises(InvalidInput, match="letters, digits"):
        issue_cert("../escape", ca)


def test_tls_config_refuses_a_key_that_is_not_its_certificates(ca: Path) -> None:
    issue_cert("east", ca)
    with pytest.raises(InvalidInput, match="--tls-cert"):
        TlsConfig(ca / "west.pem", ca / "east.key", ca / "ca.pem")
    with pytest.raises(InvalidInput, match="not a PEM certificate"):
        TlsConfig(ca / "west.pem", ca / "west.key", ca / "west.key")


def test_a_token_admits_until_it_expires(ca: Path) -> None:
    key = load_ca_key(ca / "ca.key")
    token = create_token(key, 3600, "alice")
    claims = verify_token(token, key.public_key())
    assert claims.subject == "alice" and claims.expires - claims.issued == 3600
    old = create_token(key, 60, "bob", now=1_700_000_000)
    with pytest.raises(TokenRefused, match=r"^refused: token expired at 2023-11-14T22:14:20Z$"):
        verify_token(old, key.public_key())
    with pytest.raises(TokenRefused, match="issued in the future"):     # a clock far behind
        verify_token(token, key.public_key(), now=time.time() - 3000)


def test_a_token_is_refused_when_another_ca_signed_it_or_its_claims_were_changed(ca: Path, tmp_path: Path) -> None:
    init_ca(tmp_path / "other")
    ours = load_ca_key(ca / "ca.key").public_key()
    with pytest.raises(TokenRefused, match="not signed by this cluster's CA"):
        verify_token(create_token(load_ca_key(tmp_path / "other" / "ca.key"), 3600), ours)
    payload, signature = create_token(load_ca_key(ca / "ca.key"), 3600, "alice").split(".")
    forged = json.dumps({"sub": "root", "iat": int(time.time()), "exp": int(time.time()) + 10**6}).encode()
    forged_payload = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    with pytest.raises(TokenRefused, match="not signed by this cluster's CA"):
        verify_token(f"{forged_payload}.{signature}", ours)


@pytest.mark.parametrize("token, why", [
    ("", "no token"),
    ("x" * (MAX_TOKEN + 1), "over|limit"),
    ("only-one-part", "malformed"),
    ("a.b.c", "malformed"),
    ("a b.c", "malformed"),
    ("YQ.+/==", "malformed"),
])
def test_a_malformed_token_is_refused_before_anything_is_decoded(ca: Path, token: str, why: str) -> None:
    with pytest.raises(TokenRefused, match=why) as refused:
        verify_token(token, load_ca_key(ca / "ca.key").public_key())
    assert "\n" not in str(refused.value)


def test_token_create_prints_a_token_the_ca_verifies(ca: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["token", "create", "--ttl", "1h", "--ca-key", str(ca / "ca.key"), "--subject", "ops"])
    assert done.value.code == 0
    out, err = capsys.readouterr()
    assert verify_token(out.strip(), load_ca_key(ca / "ca.key").public_key()).subject == "ops"
    assert "valid until" in err
    with pytest.raises(SystemExit) as done:
        cli.main(["token", "create", "--ttl", "soon", "--ca-key", str(ca / "ca.key")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hallelujah: --ttl") and err.count("\n") == 1
    with pytest.raises(SystemExit) as done:
        cli.main(["token", "create", "--ttl", "1h", "--ca-key", str(ca / "west.pem")])
    assert done.value.code == 2 and "not an unencrypted PEM private key" in capsys.readouterr().err


SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def big_batch() -> pa.RecordBatch:
    """A batch whose body is several STREAM_CHUNKs (sent in pieces over a non-socket stream)."""
    n = 200_000
    batch = pa.record_batch([pa.array(np.arange(n)), pa.array([f"n{i % 977}" for i in range(n)])], schema=SCHEMA)
    assert serialize_batch(batch).size > 2 * STREAM_CHUNK
    return batch


async def carried(a: Connection, b: Connection) -> list[tuple[str, dict, pa.RecordBatch | None]]:
    """What `b` receives of a cmdReq, a dataReq with a large body, a small one, a bare marker."""
    got = []
    batches = [big_batch(), big_batch().slice(0, 3), None]

    async def send() -> None:
        await a.send("cmdReq", {"id": 7, "command": "list", "args": "{}", "token": "t"})
        for seq, batch in enumerate(batches):
            body = serialize_batch(batch) if batch is not None else None
            await a.send("dataReq", {"seq": seq, "bodyLength": body.size if body else 0,
                                     "rows": batch.num_rows if batch else 0}, body)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            for _ in range(1 + len(batches)):
                kind, fields, body = await b.receive()
                got.append((kind, fields, open_batch(body, SCHEMA) if body is not None else None))
    return got


def expected() -> list[tuple]:
    return [("cmdReq", 7, None), ("dataReq", 0, big_batch()), ("dataReq", 1, big_batch().slice(0, 3)),
            ("dataReq", 2, None)]


def summary(got: list[tuple[str, dict, pa.RecordBatch | None]]) -> list[tuple]:
    return [(kind, fields.get("id", fields.get("seq")), batch) for kind, fields, batch in got]


async def test_frames_and_bodies_are_the_same_over_a_socket_and_over_a_generic_stream() -> None:
    a, b = trio.socket.socketpair()
    sockets = Connection(trio.SocketStream(a)), Connection(trio.SocketStream(b))
    left, right = trio.testing.memory_stream_pair()
    streams = Connection(left), Connection(right)
    try:
        plain, generic = await carried(*sockets), await carried(*streams)
    finally:
        for conn in (*sockets, *streams):
            await conn.aclose()
    assert summary(plain) == summary(generic) == expected()
    assert plain[0][1] == generic[0][1] and plain[0][1]["token"] == "t"
    assert streams[0].sock is None and sockets[0].sock is not None


async def test_frames_cross_a_mutual_tls_stream_between_two_congregations(ca: Path) -> None:
    issue_cert("east", ca, addresses=["127.0.0.1"])
    west = TlsConfig(ca / "west.pem", ca / "west.key", ca / "ca.pem")
    east = TlsConfig(ca / "east.pem", ca / "east.key", ca / "ca.pem")
    a, b = trio.socket.socketpair()
    client = trio.SSLStream(trio.SocketStream(a), east.client_context(), server_hostname="west")
    server = trio.SSLStream(trio.SocketStream(b), west.server_context(), server_side=True)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
    assert server.getpeercert()["subject"] == ((("commonName", "east"),),)
    assert summary(await carried(Connection(client), Connection(server))) == expected()
    await Connection(client).aclose()
    await Connection(server).aclose()
