"""Access-key credentials for HMAC signing.

A credential hands out the current key and may be asked to refresh after ACS
rejected a key, which is how a rotated key is picked up without a restart.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Protocol

from optouts.providers.acs.errors import OptOutsError


class InvalidConnectionStringError(OptOutsError, ValueError):
    """The connection string is not `endpoint=...;accesskey=...`. The message never quotes the key."""


class AccessKeyCredential(Protocol):
    def get_key(self) -> bytes:
        """The base64-decoded access key to sign with."""

    def refresh_after_rejection(self, rejected_key: bytes) -> bool:
        """Called when ACS answered 401 to a request signed with `rejected_key`.

        Returns True when a different key is now available and the request is worth
        one more try.
        """


class StaticAccessKey:
    """A key that never changes; `update()` exists for callers that rotate it themselves."""

    def __init__(self, access_key: str) -> None:
        self._key = decode_access_key(access_key)
        self._lock = threading.Lock()

    def get_key(self) -> bytes:
        return self._key

    def update(self, access_key: str) -> None:
        with self._lock:
            self._key = decode_access_key(access_key)

    def refresh_after_rejection(self, rejected_key: bytes) -> bool:
        return self._key != rejected_key


def decode_access_key(access_key: str) -> bytes:
    try:
        key = base64.b64decode(access_key, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidConnectionStringError("the access key is not valid base64") from None
    if not key:
        raise InvalidConnectionStringError("the access key is empty")
    return key


def parse_connection_string(connection_string: str) -> tuple[str, str]:
    """Split `endpoint=https://x.communication.azure.com/;accesskey=BASE64` into (endpoint, key)."""
    parts: dict[str, str] = {}
    for segment in connection_string.strip().split(";"):
        if not segment.strip():
            continue
        name, separator, value = segment.partition("=")
        if not separator:
            raise InvalidConnectionStringError("each part must look like name=value")
        parts[name.strip().lower()] = value.strip()
    endpoint = parts.get("endpoint")
    access_key = parts.get("accesskey")
    if not endpoint or not access_key:
        raise InvalidConnectionStringError("the connection string needs both endpoint= and accesskey=")
    if not endpoint.lower().startswith(("https://", "http://")):
        raise InvalidConnectionStringError("the endpoint must start with https:// or http://")
    decode_access_key(access_key)
    return endpoint.rstrip("/"), access_key
