"""Client tokens: short-lived claims signed with the cluster CA's key, checked on every connection.

A token is `base64url(claims JSON) "." base64url(ECDSA-SHA256 signature)`; the claims are
`{"sub": who, "iat": issued, "exp": expires}` (Unix seconds). The signature covers a fixed context
line and the encoded claims, so no other thing the CA key signs (a certificate) reads as a token.
A congregation checks a token with its CA certificate's public key: the size first, then the
shape, then the signature, and only then what the claims say (an expiry is named only for a token
the CA signed). There is no revocation list: keep TTLs short (`hallelujah token create --ttl 1h`).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hallelujah.errors import InvalidInput

MAX_TOKEN = 4096              # characters of a token; a longer one is refused before it is decoded
CLOCK_SKEW = 300.0            # seconds a token's issue time may be ahead of the checker's clock
_CONTEXT = b"hallelujah token v1\n"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_SIGNATURE = ec.ECDSA(hashes.SHA256())


class TokenRefused(InvalidInput):
    """A token that does not admit its holder; the message says why, in one line."""


@dataclass(frozen=True)
class Claims:
    """What a valid token says: who holds it, when it was issued and when it expires."""

    subject: str
    issued: int
    expires: int


def create_token(ca_key: ec.EllipticCurvePrivateKey, ttl: float, subject: str = "client",
                 now: float | None = None) -> str:
    """A token for `subject` valid for `ttl` seconds from `now` (default: the clock)."""
    if not ttl > 0:
        raise InvalidInput(f"token: a time to live of {ttl:g} s; it must be more than 0")
    issued = int(time.time() if now is None else now)
    claims = json.dumps({"sub": subject, "iat": issued, "exp": issued + max(1, round(ttl))},
                        separators=(",", ":"), sort_keys=True).encode()
    payload = _encode(claims)
    return f"{payload}.{_encode(ca_key.sign(_CONTEXT + payload.encode(), _SIGNATURE))}"


def verify_token(token: str, ca_public_key: ec.EllipticCurvePublicKey, now: float | None = None) -> Claims:
    """The claims of a valid token; TokenRefused naming why not (no token, too large, malformed,
    not signed by this CA, expired, issued in the future)."""
    if not token:
        raise TokenRefused("refused: no token (a client must present one over TLS: "
                           "hallelujah --token TOKEN, or $HALLELUJAH_TOKEN)")
    if len(token) > MAX_TOKEN:
        raise TokenRefused(f"refused: a token of {len(token):,} characters (the limit is {MAX_TOKEN:,})")
    parts = token.split(".")
    if len(parts) != 2 or not all(_B64URL.fullmatch(p) for p in parts):
        raise TokenRefused("refused: malformed token (expected two base64url parts joined by a dot)")
    payload, signature = parts
    try:
        ca_public_key.verify(_decode(signature), _CONTEXT + payload.encode(), _SIGNATURE)
    except (InvalidSignature, ValueError):
        raise TokenRefused("refused: token not signed by this cluster's CA") from None
    claims = _claims(_decode(payload))
    at = time.time() if now is None else now
    if claims.expires <= at:
        raise TokenRefused(f"refused: token expired at {utc_text(claims.expires)}")
    if claims.issued > at + CLOCK_SKEW:
        raise TokenRefused(f"refused: token issued in the future ({utc_text(claims.issued)}); check the clocks")
    return claims


def load_ca_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    """The CA's private key (`congregation init-ca` wrote it); InvalidInput naming the file if
    it is not an unencrypted PEM EC key."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError):
        raise InvalidInput(f"{path}: not an unencrypted PEM private key (congregation init-ca writes ca.key)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"{path}: not an EC private key (congregation init-ca writes one)")
    return key


def _claims(raw: bytes) -> Claims:
    """Signed claims, checked for shape (the CA signed them, but a bug in a minting tool may not have)."""
    try:
        fields = json.loads(raw)
    except ValueError:
        fields = None
    if (not isinstance(fields, dict) or not isinstance(fields.get("sub"), str)
            or not all(type(fields.get(k)) is int for k in ("iat", "exp"))):
        raise TokenRefused("refused: malformed token claims (expected sub, iat, exp)")
    return Claims(fields["sub"], fields["iat"], fields["exp"])


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused("refused: malformed token (not base64url)") from None


def utc_text(seconds: int) -> str:
    """Unix seconds as ISO-8601 UTC, as messages name times ("2026-12-07T21:00:00Z")."""
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(seconds)
