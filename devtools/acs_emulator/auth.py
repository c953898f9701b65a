"""Checks a request's credentials the way ACS does: HMAC-SHA256 or a bearer token.

The HMAC check is written here from ACS's documented algorithm, on purpose without
`optouts.providers.acs.signing`: an emulator that verified with the client's own code would accept
whatever that code got wrong. tests/test_acs_emulator.py keeps the two apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Collection, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

HMAC_SCHEME = "HMAC-SHA256 "
BEARER_SCHEME = "Bearer "
#: The headers ACS requires in the signature, in the order they are joined.
REQUIRED_SIGNED_HEADERS = ("x-ms-date", "host", "x-ms-content-sha256")


class Denied(Exception):
    """Answered 401 Denied; the message says what was wrong and never holds a secret."""


def new_access_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def decode_access_key(access_key: str) -> bytes:
    try:
        return base64.b64decode(access_key, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the access key must be base64 text") from None


def authenticate(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    decoded_key: bytes,
    bearer_tokens: Collection[str],
    clock_skew_seconds: float,
) -> None:
    """Raise Denied unless the request carries a valid credential.

    `target` is the path and query exactly as received: ACS signs what was sent,
    so re-encoding it here would hide client bugs.
    """
    authorization = headers.get("Authorization") or ""
    if authorization.startswith(BEARER_SCHEME):
        if authorization[len(BEARER_SCHEME):].strip() not in bearer_tokens:
            raise Denied("the bearer token is not valid for this resource")
        return
    if not authorization.startswith(HMAC_SCHEME):
        raise Denied("missing or unsupported Authorization header (expected HMAC-SHA256 or Bearer)")
    fields = _hmac_fields(authorization[len(HMAC_SCHEME):])
    signed_headers = fields.get("SignedHeaders", "")
    if tuple(signed_headers.lower().split(";")) != REQUIRED_SIGNED_HEADERS:
        raise Denied(f"SignedHeaders must be {';'.join(REQUIRED_SIGNED_HEADERS)}")
    claimed_signature = fields.get("Signature")
    if not claimed_signature:
        raise Denied("the Authorization header has no Signature")
    date = headers.get("x-ms-date") or headers.get("Date")
    if not date:
        raise Denied("the x-ms-date header is missing")
    host = headers.get("Host")
    if not host:
        raise Denied("the host header is missing")
    claimed_hash = headers.get("x-ms-content-sha256")
    if claimed_hash is None:
        raise Denied("the x-ms-content-sha256 header is missing")
    _check_freshness(date, clock_skew_seconds)
    actual_hash = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    if not hmac.compare_digest(claimed_hash.encode(), actual_hash.encode()):
        raise Denied("x-ms-content-sha256 does not match the body received")
    # The string to sign: the verb, the path and query as received, then the signed
    # headers' values in SignedHeaders order, joined by ";".
    signed_values = {"x-ms-date": date, "host": host, "x-ms-content-sha256": actual_hash}
    string_to_sign = "\n".join(
        (method.upper(), target, ";".join(signed_values[name] for name in REQUIRED_SIGNED_HEADERS))
    )
    expected = base64.b64encode(hmac.new(decoded_key, string_to_sign.encode("utf-8"), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, claimed_signature.encode()):
        raise Denied("the request signature is not valid (wrong key or signed content)")


def _hmac_fields(text: str) -> dict[str, str]:
    # Split on the first "=" only: base64 signatures end in "=" padding.
    return dict(part.strip().split("=", 1) for part in text.split("&") if "=" in part)


def _check_freshness(date: str, clock_skew_seconds: float) -> None:
    try:
        sent = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise Denied("x-ms-date is not an RFC 1123 date") from None
    if sent.tzinfo is None:  # "-0000" means UTC with no offset known
        sent = sent.replace(tzinfo=UTC)
    if abs(time.time() - sent.timestamp()) > clock_skew_seconds:
        raise Denied("x-ms-date is too far from the current time")
