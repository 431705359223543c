"""The cluster's TLS: its CA, the congregations' certificates, and the contexts that use them.

`congregation init-ca DIR` makes a self-signed ECDSA P-256 CA (`ca.pem`, `ca.key` mode 0600);
`congregation issue-cert NAME --ca DIR` signs a certificate for one congregation, usable as TLS
server and client alike, so congregations authenticate each other (mutual TLS). Clients present
no certificate but a token signed by the same CA key (hallelujah/tokens.py). Every primitive
comes from the `cryptography` package and the stdlib `ssl`; nothing here is hand-rolled.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import ssl
import sys
from pathlib import Path
from typing import Any, Sequence

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hallelujah.errors import InvalidInput
from hallelujah.tokens import Claims, load_ca_key, verify_token

CA_DAYS = 3650               # a CA's validity
CERT_DAYS = 365              # a congregation certificate's validity (default of --days)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")   # a certificate's name is also its file name


class TlsConfig:
    """This congregation's TLS, from `--tls-cert FILE --tls-key FILE --tls-ca FILE`.

    The files are read once, here: a missing or mismatched one is InvalidInput naming it.
    - `server_context()`: for accepting. TLS ≥ 1.2; a peer's certificate is optional but, when
      presented, must chain to the cluster CA (else the handshake fails). A peer with one is a
      congregation; without one, a client, which must present a token.
    - `client_context()`: for connecting to another congregation (`frames.connect(address,
      tls=config.client_context())`): presents this congregation's certificate and requires the
      peer's to chain to the CA and name the address dialled (a SAN of `issue-cert --address`).
    - `verify_token(token)`: a client's token's claims, or TokenRefused saying why in one line.
    """

    def __init__(self, cert: str | Path, key: str | Path, ca: str | Path) -> None:
        self.cert, self.key, self.ca = Path(cert), Path(key), Path(ca)
        self._ca_public_key = _ca_public_key(self.ca)
        self._server = self._context(ssl.PROTOCOL_TLS_SERVER)
        self._server.verify_mode = ssl.CERT_OPTIONAL
        self._server.num_tickets = 0        # no session resumption: nothing to keep or leak
        self._client = self._context(ssl.PROTOCOL_TLS_CLIENT)

    def _context(self, protocol: int) -> ssl.SSLContext:
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_verify_locations(cafile=str(self.ca))
            context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInput(f"--tls-cert {self.cert} --tls-key {self.key} --tls-ca {self.ca}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        return context

    def server_context(self) -> ssl.SSLContext:
        return self._server

    def client_context(self) -> ssl.SSLContext:
        return self._client

    def verify_token(self, token: str) -> Claims:
        return verify_token(token, self._ca_public_key)


def peer_certificate(stream: trio.abc.Stream) -> dict[str, Any] | None:
    """The verified certificate of a TLS peer (a congregation's), None for a peer without one."""
    if isinstance(stream, trio.SSLStream):
        return stream.getpeercert() or None
    return None


def _ca_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    except OSError as exc:
        raise InvalidInput(f"--tls-ca {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise InvalidInput(f"--tls-ca {path}: not a PEM certificate (congregation init-ca writes ca.pem)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidInput(f"--tls-ca {path}: not an EC certificate (congregation init-ca makes one)")
    return key


def init_ca(directory: str | Path, name: str = "Hallelujah cluster CA") -> tuple[Path, Path]:
    """Write a new CA into `directory`: (ca.pem, ca.key). Never overwrites a file."""
    directory = Path(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _write_pair(directory, "ca", cert, key)


def issue_cert(name: str, ca_dir: str | Path, out: str | Path | None = None, addresses: Sequence[str] = (),
               days: int = CERT_DAYS) -> tuple[Path, Path]:
    """Sign a certificate for congregation `name` with the CA in `ca_dir`: (NAME.pem, NAME.key) in
    `out` (default `ca_dir`). Its SANs are `name` and `addresses` (IP addresses as such), and it
    serves as TLS server and client both."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(f'issue-cert: name "{name}": letters, digits, ".", "_" and "-" only')
    if not days > 0:
        raise InvalidInput(f"issue-cert: --days {days}: must be more than 0")
    ca_dir = Path(ca_dir)
    ca_key = load_ca_key(ca_dir / "ca.key")
    try:
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    except ValueError:
        raise InvalidInput(f"{ca_dir / 'ca.pem'}: not a PEM certificate") from None
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName([_san(a) for a in dict.fromkeys([name, *addresses])]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _write_pair(Path(out) if out is not None else ca_dir, name, cert, key)


def _san(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return x509.DNSName(address)


def _write_pair(directory: Path, stem: str, cert: x509.Certificate,
                key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """Write STEM.pem and STEM.key (0600, created so: never readable by others, even briefly)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    for path in (cert_path, key_path):
        if path.exists():
            raise InvalidInput(f"{path}: exists already (not overwritten)")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


CERT_COMMANDS = ("init-ca", "issue-cert")


def certificates_main(argv: list[str]) -> None:
    """`congregation init-ca DIR` and `congregation issue-cert NAME --ca DIR ...`."""
    ap = argparse.ArgumentParser(prog="congregation", description="The cluster's certificates.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init-ca", help="make the cluster's CA (ca.pem, ca.key)",
                       epilog="example: congregation init-ca /etc/hallelujah/ca")
    p.add_argument("dir", help="where ca.pem and ca.key (mode 0600) are written")
    p = sub.add_parser("issue-cert", help="sign a congregation's certificate (NAME.pem, NAME.key)",
                       epilog="example: congregation issue-cert west --ca /etc/hallelujah/ca --address 10.0.0.5")
    p.add_argument("name", help="the congregation's name (also a DNS SAN, and the files' name)")
    p.add_argument("--ca", required=True, metavar="DIR", help="the CA's directory (ca.pem, ca.key)")
    p.add_argument("--out", metavar="DIR", help="where to write them (default: the CA's directory)")
    p.add_argument("--address", action="append", default=[], metavar="IP_OR_HOST",
                   help="an address peers and clients dial it by (repeatable)")
    p.add_argument("--days", type=int, default=CERT_DAYS, help=f"validity (default {CERT_DAYS})")
    args = ap.parse_args(argv)
    try:
        if args.command == "init-ca":
            written = init_ca(args.dir)
        else:
            written = issue_cert(args.name, args.ca, args.out, args.address, args.days)
    except InvalidInput as exc:
        print(f"congregation: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"congregation: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}",
              file=sys.stderr)
        sys.exit(2 if exc.filename else 1)
    print(f"wrote {written[0]} and {written[1]}")
