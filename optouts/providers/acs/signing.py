"""HMAC-SHA256 request signing as Azure Communication Services specifies it.

Kept free of any HTTP library so the client's policy and the emulator's verifier
share one definition of the string to sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"


def content_sha256(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def string_to_sign(method: str, path_and_query: str, date: str, host: str, body_hash: str) -> str:
    return f"{method.upper()}\n{path_and_query}\n{date};{host};{body_hash}"


def signature(access_key: bytes, text: str) -> str:
    """`access_key` is the base64-decoded key; the result is base64 text."""
    digest = hmac.new(access_key, text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization_header(signature_value: str) -> str:
    return f"HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature={signature_value}"
