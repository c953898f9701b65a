"""A local stand-in for the ACS SMS opt-out API: a real HTTP server on loopback.

It checks what ACS checks (HMAC signatures and their freshness, bearer tokens,
api-version, body shape, the 1..100 recipient limit, E.164 numbers, owned senders),
keeps an opt-out list per sender, and injects faults on demand: latency, 429 with
Retry-After, whole-call 5xx, per-recipient 500s and hangs, all from a seeded RNG.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devtools.azure_standins.certificate import LocalCertificate
from optouts.domain.keywords import KeywordEffect, match_keyword

from . import auth
from .faults import RECIPIENT_ERROR_MESSAGES, FaultConfig, FaultDice
from .inbound import EventSubscription, sms_received_data
from .stats import OPERATIONS, CallStats
from .store import OptOutStore

#: Every api-version the REST spec defines for the opt-out operations (docs/emulator.md).
SUPPORTED_API_VERSIONS = ("2026-01-23", "2025-09-17", "2025-08-01-preview", "2025-05-29-preview", "2024-12-10-preview")
MAX_RECIPIENTS = 100
MAX_BODY_BYTES = 1024 * 1024
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
#: Senders ACS can own: an E.164 number, a short code (3-8 digits, as the gateway's settings accept), or an
#: alphanumeric sender ID.
SENDER = re.compile(r"^(?:\+[1-9][0-9]{6,14}|[0-9]{3,8}|(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11})$")
VALIDATION_TYPE = "https://tools.ietf.org/html/rfc9110#section-15.5.1"
OPERATION_PREFIX = "/sms/optouts:"
#: The emulator's own route (not ACS's): an end user's SMS to one of the resource's numbers.
INBOUND_SMS_PATH = "/emulator/sms:receive"
#: ACS delivers messages of a few thousand characters; the route takes no more.
MAX_INBOUND_MESSAGE_CHARS = 4096
#: Echoed only when it is a plain token (a uuid, as the SDKs send): never a header injection.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")

Answer = tuple[int, dict[str, str], Any]


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           *, inner_error: bool = False) -> Answer:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner_error:  # the API-versioning errors carry it, as in the spec's 400 example
        error["innerError"] = None
    return status, headers or {}, {"error": error}


def _validation_error(field: str, message: str) -> Answer:
    return 400, {}, {
        "type": VALIDATION_TYPE,
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": {field: [message]},
        "traceId": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00",
    }


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
        tls: bool = False,
    ) -> None:
        self._access_key = access_key or auth.new_access_key()
        self._decoded_key = auth.decode_access_key(self._access_key)
        self._key_lock = threading.Lock()
        self.owned_senders: set[str] | None = None if owned_senders is None else set(owned_senders)
        self.bearer_tokens: set[str] = set(bearer_tokens)
        self.clock_skew_seconds = clock_skew_seconds
        self.api_versions = frozenset(api_versions)
        self._dice = FaultDice(faults or FaultConfig())
        self._store = OptOutStore(state_file)
        self._stats = CallStats()
        self._host = host
        self._port = port
        self._stopping = threading.Event()
        self._server: _EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        #: With `tls`, a throwaway self-signed certificate for 127.0.0.1; clients trust
        #: `certificate.ca_bundle` (REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS).
        self.certificate: LocalCertificate | None = LocalCertificate(host) if tls else None
        #: Where SMSReceived events go (`subscribe`), as an Event Grid subscription would send them.
        self.event_subscription: EventSubscription | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> AcsEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        server = _EmulatorServer((self._host, self._port), self)
        if self.certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certificate.certificate_path, self.certificate.key_path)
            # The handshake then happens in the handler's thread, not in the accept loop.
            server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="acs-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes calls sleeping on injected latency or hangs
        server.shutdown()
        server.server_close()
        # Kept-alive connections would otherwise still be served after stop(),
        # which would hide "ACS went away" from the tests that simulate it.
        server.close_open_connections()
        if thread is not None:
            thread.join(timeout=10)
        self._server, self._thread = None, None

    def __enter__(self) -> AcsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self.certificate is not None:
            self.certificate.close()

    # -- what tests and tools read and change --------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "https" if self.certificate is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint}/;accesskey={self.access_key}"

    @property
    def access_key(self) -> str:
        return self._access_key

    def rotate_access_key(self, new_key: str | None = None) -> str:
        key = new_key or auth.new_access_key()
        decoded = auth.decode_access_key(key)
        with self._key_lock:
            self._access_key, self._decoded_key = key, decoded
        return key

    @property
    def faults(self) -> FaultConfig:
        return self._dice.config

    @faults.setter
    def faults(self, faults: FaultConfig) -> None:
        self._dice.reconfigure(faults)

    def opted_out(self, sender: str) -> set[str]:
        return self._store.numbers(sender)

    def seed_opt_outs(self, sender: str, numbers: Iterable[str]) -> None:
        self._store.add(sender, numbers)

    def subscribe(self, url: str, schema: str = "eventgrid") -> EventSubscription:
        """Deliver SMSReceived events to `url` (an Event Grid webhook), after the schema's validation
        handshake, as Event Grid does when the subscription is created."""
        subscription = EventSubscription(url, schema)
        subscription.validate()
        self.event_subscription = subscription
        return subscription

    def receive_sms(self, end_user: str, sender: str, message: str) -> dict[str, Any]:
        """An end user's SMS to `sender`: ACS's automatic keyword handling on this emulator's lists,
        then the SMSReceived event to the subscription. What happened, as the inbound route answers."""
        keyword = match_keyword(message)
        if keyword is not None:
            if keyword.effect is KeywordEffect.OPT_OUT:
                self._store.add(sender, [end_user])
            else:
                self._store.remove(sender, [end_user])
        data = sms_received_data(sender, end_user, message)
        subscription = self.event_subscription
        delivery = subscription.deliver(data) if subscription is not None else None
        return {
            "messageId": data["messageId"],
            "keyword": keyword.word if keyword else None,
            "optedOut": self._store.contains(sender, [end_user])[0],
            "subscribed": subscription is not None,
            "delivered": delivery is not None and delivery.status is not None and 200 <= delivery.status < 300,
            "webhookStatus": delivery.status if delivery else None,
            "attempts": delivery.attempts if delivery else 0,
        }

    @property
    def stats(self) -> dict[str, Any]:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    # -- request handling (called from server threads) --------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        url = urlsplit(target)
        if url.path == INBOUND_SMS_PATH:
            return self._inbound(method, body)
        operation = url.path[len(OPERATION_PREFIX):] if url.path.startswith(OPERATION_PREFIX) else None
        if operation not in OPERATIONS:
            return _error(404, "NotFound", "no resource at this path")
        if method != "POST":
            return _error(405, "MethodNotAllowed", "use POST", {"Allow": "POST"})
        version = parse_qs(url.query).get("api-version", [""])[0]
        if not version:
            return _error(400, "ApiVersionUnspecified", "An API version is required, but was not specified.",
                          inner_error=True)
        if version not in self.api_versions:
            return _error(400, "UnsupportedApiVersion",
                          f"The HTTP resource that matches the request URI '{url.path}' does not support "
                          f"the API version '{version[:40]}'.", inner_error=True)
        with self._key_lock:
            decoded_key = self._decoded_key
        try:
            auth.authenticate(method=method, target=target, headers=headers, body=body, decoded_key=decoded_key,
                              bearer_tokens=self.bearer_tokens, clock_skew_seconds=self.clock_skew_seconds)
        except auth.Denied as denied:
            return _error(401, "Denied", str(denied))
        return self._faulted(operation) or self._process(operation, body)

    def _inbound(self, method: str, body: bytes) -> Answer:
        """`POST /emulator/sms:receive` `{"from": end user, "to": the resource's number, "message": text}`.
        The emulator's own development route, unauthenticated like the rest of a loopback-only tool."""
        if method != "POST":
            return _error(405, "MethodNotAllowed", "use POST", {"Allow": "POST"})
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _validation_error("$", "the request body is not valid JSON")
        if not isinstance(payload, dict):
            return _validation_error("$", "the request body must be an object")
        end_user, sender, message = payload.get("from"), payload.get("to"), payload.get("message")
        if not isinstance(end_user, str) or not E164.match(end_user):
            return _validation_error("From", "must be the end user's number in E.164")
        if not isinstance(sender, str) or not SENDER.match(sender) or (
                self.owned_senders is not None and sender not in self.owned_senders):
            return _validation_error("To", "must be a number this resource owns")
        if not isinstance(message, str) or len(message) > MAX_INBOUND_MESSAGE_CHARS:
            return _validation_error("Message", f"must be a string of at most {MAX_INBOUND_MESSAGE_CHARS} characters")
        return 200, {}, self.receive_sms(end_user, sender, message)

    def _faulted(self, operation: str) -> Answer | None:
        drawn = self._dice.draw_call()
        if drawn.delay_seconds > 0:
            # An Event wait, not time.sleep: other calls go on, and stop() cuts it short.
            self._stopping.wait(drawn.delay_seconds)
        if drawn.throttle:
            return _error(429, "TooManyRequests", "the request was throttled",
                          drawn.config.retry_after_headers())
        if drawn.server_error:
            return _error(drawn.config.server_error_status, "ServiceUnavailable",
                          "the service is temporarily unavailable")
        return None

    def _process(self, operation: str, body: bytes) -> Answer:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _validation_error("$", "the request body is not valid JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("from"), str) or not payload["from"]:
            return _validation_error("From", "The From field is required.")
        if not SENDER.match(payload["from"]):
            return _validation_error("From", "Invalid From phone number format")
        recipients = payload.get("recipients")
        if not isinstance(recipients, list) or not all(
            isinstance(item, dict) and isinstance(item.get("to"), str) for item in recipients
        ):
            return _validation_error("Recipients", "The Recipients field is required.")
        if len(recipients) < 1:
            return _validation_error("Recipients",
                                     "The field Recipients must be a string or array type with a minimum length of '1'.")
        if len(recipients) > MAX_RECIPIENTS:
            return _validation_error("Recipients", "The field Recipients must be a string or array type with a "
                                     f"maximum length of '{MAX_RECIPIENTS}'.")
        sender = payload["from"]
        if self.owned_senders is not None and sender not in self.owned_senders:
            return _error(401, "Denied", "the sender is not owned by this resource")

        self._stats.count_recipients(operation, len(recipients))
        numbers = [item["to"] for item in recipients]
        failures = self._dice.draw_recipient_errors(len(numbers))
        answers: list[dict[str, Any]] = []
        accepted: list[str] = []
        for number, failed in zip(numbers, failures, strict=True):
            if not E164.match(number):
                answers.append({"to": number, "httpStatusCode": 400,
                                "errorMessage": "Invalid recipient phone number format"})
            elif failed is not None:
                answers.append({"to": number, "httpStatusCode": failed,
                                "errorMessage": RECIPIENT_ERROR_MESSAGES[failed]})
            else:
                answers.append({"to": number, "httpStatusCode": 200})
                accepted.append(number)
        if operation == "add":
            self._store.add(sender, accepted)
        elif operation == "remove":
            self._store.remove(sender, accepted)
        else:
            flags = iter(self._store.contains(sender, accepted))
            for answer in answers:
                if answer["httpStatusCode"] == 200:
                    answer["isOptedOut"] = next(flags)
        return 200, {}, {"value": answers}


class _EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for idle kept-alive connections or calls hung on purpose.
    block_on_close = False
    # 32+ callers connecting at once overflow the default backlog of 5 (connection resets).
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], emulator: AcsEmulator) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall startup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller hanging up is routine under load tests; anything else is an emulator bug.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _BadFraming(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer[0])
        self.answer = answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one send: handle_one_request flushes wfile after each call,
    # and with Nagle off nothing waits for the peer's delayed ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    timeout = 300  # idle kept-alive connections are dropped eventually, like a real service
    server_version = "acs-emulator"
    sys_version = ""
    server: _EmulatorServer

    def _serve(self) -> None:
        stats = self.server.emulator._stats
        stats.enter()
        try:
            answer = self._answer()
        except ConnectionError:
            stats.leave(None)
            self.close_connection = True
            return
        # Counted before answering, so a caller that has its answer sees it in the stats.
        stats.leave(answer[0])
        self._send(*answer)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def handle_expect_100(self) -> bool:
        # wfile is buffered (see wbufsize): the interim answer must leave before the body is read.
        self.send_response_only(100)
        self.end_headers()
        self.wfile.flush()
        return True

    def _answer(self) -> Answer:
        try:
            body = self._read_body()
            # email.message.Message: a case-insensitive mapping of the request headers.
            return self.server.emulator.handle(self.command, self.path, self.headers, body)  # type: ignore[arg-type]
        except _BadFraming as bad:
            self.close_connection = True
            return bad.answer
        except ConnectionError:
            raise
        except Exception as failure:
            self.close_connection = True
            return _error(500, "InternalError", f"the emulator failed ({type(failure).__name__})")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise _BadFraming(_error(411, "LengthRequired", "send the body with a Content-Length"))
        declared = self.headers.get("Content-Length") or "0"
        if not declared.isdigit():
            raise _BadFraming(_error(400, "BadRequest", "Content-Length is not a number"))
        length = int(declared)
        if length > MAX_BODY_BYTES:
            raise _BadFraming(_error(413, "RequestEntityTooLarge", f"bodies are limited to {MAX_BODY_BYTES} bytes"))
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise ConnectionResetError("the caller hung up before sending the whole body")
        return body

    def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
        """Framed and labelled as ACS answers: chunked, with the service's headers (recorded
        answers in the official SDKs' tests show them; docs/emulator.md)."""
        data = json.dumps(payload).encode("utf-8")
        started = getattr(self, "_started", None)
        elapsed_ms = 0 if started is None else round((time.monotonic() - started) * 1000)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Request-Context", "appId=")
            self.send_header("MS-CV", f"{base64.b64encode(secrets.token_bytes(16)).decode()[:22]}.0")
            self.send_header("X-Processing-Time", f"{elapsed_ms}ms")
            self.send_header("X-Azure-Ref", base64.b64encode(secrets.token_bytes(48)).decode())
            self.send_header("api-supported-versions", ", ".join(sorted(self.server.emulator.api_versions)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            client_request_id = (self.headers.get("x-ms-client-request-id") or "") if self.headers else ""
            if _CLIENT_REQUEST_ID.match(client_request_id):
                self.send_header("x-ms-client-request-id", client_request_id)
            if self.close_connection:
                self.send_header("Connection", "close")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        except OSError:
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server answers by itself (a malformed request line, an unsupported
        method or protocol, headers too long): JSON like every other answer, never HTML."""
        self.close_connection = True
        if not hasattr(self, "headers"):
            self.headers = None  # type: ignore[assignment]  # the request line never parsed
        if not getattr(self, "command", None):
            self.command = "POST"
        if not getattr(self, "request_version", None) or self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"
        status = code if 400 <= code < 600 else 400
        text = (message or "Bad Request")[:200]
        self._send(status, {}, {"error": {"code": "BadRequest", "message": text}})

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        return
