"""A local stand-in for the ACS SMS opt-out API: a real HTTP server on loopback.

It checks what ACS checks (HMAC signatures and their freshness, bearer tokens,
api-version, body shape, the 1..100 recipient limit, E.164 numbers, owned senders),
keeps an opt-out list per sender, and injects faults on demand: latency, 429 with
Retry-After, whole-call 5xx, per-recipient 500s and hangs, all from a seeded RNG.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import os
import random
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from optouts.acs import signing

SUPPORTED_API_VERSIONS = ("2026-01-23", "2025-05-29-preview")
OPERATIONS = ("add", "remove", "check")
MAX_RECIPIENTS = 100
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
VALIDATION_TYPE = "https://tools.ietf.org/html/rfc9110#section-15.5.1"


@dataclass
class FaultConfig:
    latency_seconds: float = 0.0
    latency_spike_rate: float = 0.0
    latency_spike_seconds: float = 0.0
    throttle_rate: float = 0.0
    retry_after_seconds: float = 1.0
    server_error_rate: float = 0.0
    server_error_status: int = 503
    recipient_error_rate: float = 0.0
    hang_seconds: float = 0.0
    seed: int = 0


class _Denied(Exception):
    """Answered 401 with ACS's error shape."""


class AcsEmulator:
    def __init__(
        self,
        access_key: str | None = None,
        owned_senders: Iterable[str] | None = None,
        bearer_tokens: Iterable[str] = (),
        faults: FaultConfig | None = None,
        state_file: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock_skew_seconds: float = 300,
        api_versions: Iterable[str] = SUPPORTED_API_VERSIONS,
    ) -> None:
        self._access_key = access_key or base64.b64encode(secrets.token_bytes(32)).decode()
        self._decoded_key = base64.b64decode(self._access_key)
        self.owned_senders = None if owned_senders is None else set(owned_senders)
        self.bearer_tokens: set[str] = set(bearer_tokens)
        self._faults = faults or FaultConfig()
        self._random = random.Random(self._faults.seed)
        self._state_file = Path(state_file) if state_file else None
        self._host = host
        self._port = port
        self.clock_skew_seconds = clock_skew_seconds
        self.api_versions = frozenset(api_versions)
        self._lock = threading.Lock()
        self._lists: dict[str, set[str]] = {}
        self._stats = _Stats()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if self._state_file and self._state_file.exists():
            saved = json.loads(self._state_file.read_text(encoding="utf-8"))
            self._lists = {sender: set(numbers) for sender, numbers in saved.items()}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "AcsEmulator":
        server = ThreadingHTTPServer((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.emulator = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="acs-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "AcsEmulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what tests and tools read and change --------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the emulator is not started"
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint}/;accesskey={self._access_key}"

    @property
    def access_key(self) -> str:
        return self._access_key

    def rotate_access_key(self, new_key: str | None = None) -> str:
        key = new_key or base64.b64encode(secrets.token_bytes(32)).decode()
        decoded = base64.b64decode(key, validate=True)
        with self._lock:
            self._access_key, self._decoded_key = key, decoded
        return key

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, faults: FaultConfig) -> None:
        with self._lock:
            self._faults = faults
            self._random = random.Random(faults.seed)

    def opted_out(self, sender: str) -> set[str]:
        with self._lock:
            return set(self._lists.get(sender, ()))

    def seed_opt_outs(self, sender: str, numbers: Iterable[str]) -> None:
        with self._lock:
            self._lists.setdefault(sender, set()).update(numbers)
            self._persist_locked()

    @property
    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    # -- request handling (called from server threads) --------------------------------------

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(target)
        operation = _operation(url.path)
        if operation is None:
            return 404, {}, {"error": {"code": "NotFound", "message": f"no resource at {url.path}"}}
        if method != "POST":
            return 405, {"Allow": "POST"}, {"error": {"code": "MethodNotAllowed", "message": "use POST"}}
        version = parse_qs(url.query).get("api-version", [None])[0]
        if not version:
            return 400, {}, {"error": {"code": "ApiVersionUnspecified",
                                       "message": "the api-version query parameter is required"}}
        if version not in self.api_versions:
            return 400, {}, {"error": {"code": "InvalidApiVersion",
                                       "message": f"api-version {version} is not supported"}}
        try:
            self._authenticate(method, target, headers, body)
        except _Denied as denied:
            return 401, {}, {"error": {"code": "Denied", "message": str(denied)}}

        fault = self._draw_faults()
        if fault is not None:
            return fault
        return self._process(operation, body)

    def _authenticate(self, method: str, target: str, headers: Any, body: bytes) -> None:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            if authorization[len("Bearer "):].strip() not in self.bearer_tokens:
                raise _Denied("the bearer token is not valid for this resource")
            return
        if not authorization.startswith("HMAC-SHA256 "):
            raise _Denied("missing or unsupported Authorization header")
        fields = dict(part.split("=", 1) for part in authorization[len("HMAC-SHA256 "):].split("&") if "=" in part)
        if fields.get("SignedHeaders", "").lower() != signing.SIGNED_HEADERS:
            raise _Denied(f"SignedHeaders must be {signing.SIGNED_HEADERS}")
        date = headers.get("x-ms-date") or headers.get("Date")
        host = headers.get("Host")
        claimed_hash = headers.get("x-ms-content-sha256")
        if not date or not host or claimed_hash is None:
            raise _Denied("x-ms-date, host and x-ms-content-sha256 headers are required")
        try:
            sent_at = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise _Denied("x-ms-date is not an RFC 1123 date") from None
        if abs(time.time() - sent_at) > self.clock_skew_seconds:
            raise _Denied("x-ms-date is too far from the current time")
        if not hmac.compare_digest(claimed_hash, signing.content_sha256(body)):
            raise _Denied("x-ms-content-sha256 does not match the body")
        with self._lock:
            key = self._decoded_key
        expected = signing.signature(key, signing.string_to_sign(method, target, date, host, claimed_hash))
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise _Denied("the request signature is not valid")

    def _draw_faults(self) -> tuple[int, dict[str, str], Any] | None:
        with self._lock:
            faults, rng = self._faults, self._random
            spike = rng.random() < faults.latency_spike_rate
            throttle = rng.random() < faults.throttle_rate
            server_error = rng.random() < faults.server_error_rate
        delay = faults.hang_seconds + faults.latency_seconds + (faults.latency_spike_seconds if spike else 0.0)
        if delay > 0:
            time.sleep(delay)
        if throttle:
            headers = {"Retry-After": str(max(1, math.ceil(faults.retry_after_seconds))),
                       "retry-after-ms": str(int(faults.retry_after_seconds * 1000))}
            return 429, headers, {"error": {"code": "TooManyRequests", "message": "the request was throttled"}}
        if server_error:
            return faults.server_error_status, {}, {"error": {"code": "ServiceUnavailable",
                                                              "message": "the service is temporarily unavailable"}}
        return None

    def _process(self, operation: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _validation_error("$", "the request body is not valid JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("from"), str) or not payload["from"]:
            return _validation_error("From", "the From field is required")
        recipients = payload.get("recipients")
        if not isinstance(recipients, list) or not all(
            isinstance(r, dict) and isinstance(r.get("to"), str) for r in recipients
        ):
            return _validation_error("Recipients", "recipients must be a list of objects with a string 'to'")
        if not 1 <= len(recipients) <= MAX_RECIPIENTS:
            return _validation_error("Recipients", f"between 1 and {MAX_RECIPIENTS} recipients are allowed")
        sender = payload["from"]
        if self.owned_senders is not None and sender not in self.owned_senders:
            return 401, {}, {"error": {"code": "Denied", "message": "the sender is not owned by this resource"}}

        self._stats.count_recipients(operation, len(recipients))
        answers = []
        with self._lock:
            faults, rng = self._faults, self._random
            numbers = self._lists.setdefault(sender, set())
            for recipient in recipients:
                to = recipient["to"]
                if not E164.match(to):
                    answers.append({"to": to, "httpStatusCode": 400,
                                    "errorMessage": "Invalid recipient phone number format"})
                elif rng.random() < faults.recipient_error_rate:
                    answers.append({"to": to, "httpStatusCode": 500, "errorMessage": "Internal server error"})
                elif operation == "add":
                    numbers.add(to)
                    answers.append({"to": to, "httpStatusCode": 200})
                elif operation == "remove":
                    numbers.discard(to)
                    answers.append({"to": to, "httpStatusCode": 200})
                else:
                    answers.append({"to": to, "httpStatusCode": 200, "isOptedOut": to in numbers})
            if operation != "check":
                self._persist_locked()
        return 200, {}, {"value": answers}

    def _persist_locked(self) -> None:
        if self._state_file is None:
            return
        temporary = self._state_file.with_suffix(self._state_file.suffix + ".tmp")
        temporary.write_text(json.dumps({s: sorted(n) for s, n in self._lists.items()}), encoding="utf-8")
        os.replace(temporary, self._state_file)


def _operation(path: str) -> str | None:
    prefix = "/sms/optouts:"
    if path.startswith(prefix) and path[len(prefix):] in OPERATIONS:
        return path[len(prefix):]
    return None


def _validation_error(field: str, message: str) -> tuple[int, dict[str, str], Any]:
    return 400, {}, {
        "type": VALIDATION_TYPE,
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": {field: [message]},
        "traceId": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00",
    }


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._calls = 0
            self._by_status: Counter[int] = Counter()
            self._recipients: Counter[str] = Counter()
            self._in_flight = 0
            self._max_in_flight = 0

    def enter(self) -> None:
        with self._lock:
            self._calls += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def leave(self, status: int) -> None:
        with self._lock:
            self._in_flight -= 1
            self._by_status[status] += 1

    def count_recipients(self, operation: str, count: int) -> None:
        with self._lock:
            self._recipients[operation] += count

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total_calls": self._calls,
                "by_status": dict(self._by_status),
                "recipients": {op: self._recipients.get(op, 0) for op in OPERATIONS},
                "max_concurrent": self._max_in_flight,
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, the body would wait
    # for the peer's delayed ACK (~40 ms) on every kept-alive request.
    disable_nagle_algorithm = True
    server_version = "acs-emulator"
    sys_version = ""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        emulator: AcsEmulator = self.server.emulator  # type: ignore[attr-defined]
        stats = emulator._stats
        stats.enter()
        status = 500
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            status, headers, payload = emulator.handle(self.command, self.path, self.headers, body)
        except (ConnectionError, binascii.Error, ValueError):
            stats.leave(status)
            self.close_connection = True
            return
        # Counted before answering, so a caller that has its answer sees it in the stats.
        stats.leave(status)
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ms-request-id", secrets.token_hex(16))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except ConnectionError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by design
        return
