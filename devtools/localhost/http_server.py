"""Serves HTTP-triggered functions like the Functions host: routing under the route
prefix, function keys by auth level, `func.HttpRequest` in, `func.HttpResponse` out.

Every `make run` user runs it, so it is bounded like a server (`HttpLimits`): the route and
key are checked from the head before any body is read, framing is read one way only (RFC
9112: chunked decoded, Content-Length beside Transfer-Encoding refused), the head, body and
idle waits are deadlines, and connections (one thread each) are capped. It stays on the
standard library's `http.server`: WSGI servers such as waitress read and buffer the whole
body before the application runs, which would undo the authentication-first rule.
"""

from __future__ import annotations

import hmac
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from .app_loader import HttpFunction
from .eventgrid import MAX_BODY_BYTES as MAX_EVENT_GRID_BODY_BYTES
from .eventgrid import WEBHOOK_PATH as EVENT_GRID_WEBHOOK_PATH
from .eventgrid import EventGridWebhook
from .invoker import Invoker

_logger = logging.getLogger("devtools.localhost")

#: The host's default limit on request bodies.
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
#: Request line and headers together (Kestrel's MaxRequestHeadersTotalSize is 32 KB).
MAX_HEAD_BYTES = 64 * 1024
#: A refused body up to this size is read and dropped, so the connection can be kept; a larger
#: one is not read: the answer goes out and the connection closes.
MAX_DISCARDED_BODY_BYTES = 64 * 1024
#: After refusing a body, what is drained (without keeping it) so the close is not a reset
#: that could destroy the answer before the client reads it.
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0
#: Sending one answer (the client must read it).
WRITE_TIMEOUT_SECONDS = 30.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})(?:[ \t]*;[^\r\n]*)?")
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may take from the server. Timeouts are deadlines for the whole
    part, not per read: a client trickling a byte at a time does not extend them."""

    #: From a request's first byte to the end of its headers (Kestrel: 30 s).
    header_timeout: float = 10.0
    #: Reading the whole body, once the headers are in.
    body_timeout: float = 30.0
    #: A kept-alive connection waiting for its next request (Kestrel: 130 s).
    idle_timeout: float = 120.0
    #: Open connections, each served by one thread; more are answered 503 and closed.
    max_connections: int = 128


class _HeadTooLarge(Exception):
    pass


class _BadFraming(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _DeadlineReader(io.RawIOBase):
    """A socket's reads under a deadline (and, while the head is read, a byte budget)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline: float | None = None
        self.budget: int | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self.budget is not None:
            if self.budget <= 0:
                raise _HeadTooLarge()
            view = view[: self.budget]
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            self._sock.settimeout(remaining)
        count = self._sock.recv_into(view)
        if self.budget is not None:
            self.budget -= count
        return count


class FunctionsHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections when dozens of callers connect at
    # once (SYN retried after 1 s, or reset); the real host's Kestrel accepts 512.
    request_queue_size = 512

    def __init__(
        self,
        address: tuple[str, int],
        *,
        functions: list[HttpFunction],
        route_prefix: str,
        function_keys: Mapping[str, str],
        master_key: str,
        invoker: Invoker,
        function_timeout: float | None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        limits: HttpLimits | None = None,
        event_grid: EventGridWebhook | None = None,
        system_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.limits = limits or HttpLimits()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        super().__init__(address, _Handler)
        self.functions = functions
        self.route_prefix = route_prefix.strip("/")
        self.function_keys = dict(function_keys)
        self.master_key = master_key
        self.invoker = invoker
        self.function_timeout = function_timeout
        self.max_body_bytes = max_body_bytes
        self.event_grid = event_grid
        self.system_keys = dict(system_keys or {})

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection, as many as max_connections: past that, a short answer
        # from the accepting thread (a fresh socket's send buffer is empty, so it cannot block).
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def find(self, method: str, path: str) -> tuple[HttpFunction, dict[str, str]] | None:
        relative = path.strip("/")
        if self.route_prefix:
            prefix = self.route_prefix.lower()
            if relative.lower() != prefix and not relative.lower().startswith(prefix + "/"):
                return None
            relative = relative[len(prefix):]
        # Functions are sorted by route precedence, so the first match is the most specific.
        for function in self.functions:
            if function.methods and method not in function.methods:
                continue
            values = function.route.match(relative)
            if values is not None:
                return function, values
        return None

    def authorized(self, function: HttpFunction, presented: str | None) -> bool:
        if function.auth_level == "anonymous":
            return True
        if presented is None:
            return False
        if hmac.compare_digest(presented.encode(), self.master_key.encode()):
            return True
        if function.auth_level == "admin":
            return False
        return any(hmac.compare_digest(presented.encode(), key.encode()) for key in self.function_keys.values())

    def authorized_system(self, presented: str | None) -> bool:
        """The runtime's webhooks take a system key (or the master key), as in Azure."""
        if presented is None:
            return False
        keys = [self.master_key, *self.system_keys.values()]
        return any(hmac.compare_digest(presented.encode(), key.encode()) for key in keys)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; see the ACS emulator
    server_version = "localhost-functions"
    sys_version = ""
    server: FunctionsHttpServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 65536)
        self._served = 0
        self._expect_continue = False

    def handle_one_request(self) -> None:
        limits = self.server.limits
        reader = self._reader
        # Waiting for a request: a new connection gets the header timeout, a kept-alive one
        # the idle timeout. Closing an idle connection is silent, as servers do.
        reader.deadline = time.monotonic() + (limits.idle_timeout if self._served else limits.header_timeout)
        reader.budget = None
        try:
            if not self.rfile.peek(1):  # type: ignore[attr-defined]  # a BufferedReader (rbufsize -1)
                self.close_connection = True
                return
        except OSError:
            self.close_connection = True
            return
        reader.deadline = time.monotonic() + limits.header_timeout
        reader.budget = MAX_HEAD_BYTES
        try:
            super().handle_one_request()  # a TimeoutError in the head closes the connection
        except _HeadTooLarge:
            self.close_connection = True
            self._write_raw(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                            b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        self._served += 1

    def parse_request(self) -> bool:
        self._expect_continue = False
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        # "100 Continue" invites the body: only once the request is routed and authorized.
        self._expect_continue = True
        return True

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        self._reader.budget = None
        if not self.path.startswith("/"):
            return self._refuse(400)
        try:
            length, chunked = self._framing()
        except _BadFraming as bad:
            return self._refuse(bad.status)
        url = urlsplit(self.path)
        method = self.command.upper()
        if self.server.event_grid and url.path.rstrip("/").lower() == EVENT_GRID_WEBHOOK_PATH:
            return self._serve_event_grid(self.server.event_grid, method, url.query, length, chunked)
        match = self.server.find(method, url.path)
        if match is None:
            return self._refuse_unread(404, length, chunked)
        function, route_params = match
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        key = self.headers.get("x-functions-key") or params.get("code")
        if not self.server.authorized(function, key):
            return self._refuse_unread(401, length, chunked)
        if length > self.server.max_body_bytes:
            return self._refuse(413)
        body = self._read_body(length, chunked)
        if body is None:
            return None
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        request = func.HttpRequest(
            method=method,
            url=f"http://{host}{self.path}",
            headers=self._function_headers(),
            params=params,
            route_params=route_params,
            body=body,
        )
        # The function's name, not the path: a path can carry a phone number.
        _logger.debug("%s -> %s", method, function.name)
        try:
            response = self.server.invoker.call(
                function.user_function, {function.argument: request}, self.server.function_timeout
            )
        except Exception:
            _logger.exception("function %s failed", function.name)
            return self._answer(500)
        self._answer_function(response)

    def _serve_event_grid(self, webhook: EventGridWebhook, method: str, query: str, length: int,
                          chunked: bool) -> None:
        params = dict(parse_qsl(query, keep_blank_values=True))
        function = webhook.find(params.get("functionName"))
        if function is None:
            return self._refuse_unread(404, length, chunked)
        if not self.server.authorized_system(self.headers.get("x-functions-key") or params.get("code")):
            return self._refuse_unread(401, length, chunked)
        if length > MAX_EVENT_GRID_BODY_BYTES:
            return self._refuse(413)
        body = self._read_body(length, chunked)
        if body is None:
            return None
        if len(body) > MAX_EVENT_GRID_BODY_BYTES:
            return self._answer(413)
        _logger.debug("%s -> event grid webhook of %s", method, function.name)
        status, headers, answer = webhook.handle(function, method, self.headers, body)  # type: ignore[arg-type]
        self._answer(status, headers, answer)

    def _framing(self) -> tuple[int, bool]:
        """(Content-Length, chunked) as RFC 9112 reads a request, refusing what two parsers could
        read differently: Content-Length beside Transfer-Encoding, several or odd lengths."""
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            if lengths:
                raise _BadFraming(400)
            codings = [coding.strip().lower() for value in encodings for coding in value.split(",")]
            if codings != ["chunked"]:
                raise _BadFraming(501)  # no other transfer coding is implemented
            return 0, True
        if not lengths:
            return 0, False
        if len(lengths) != 1 or not _CONTENT_LENGTH.fullmatch(lengths[0].strip()):
            raise _BadFraming(400)
        return int(lengths[0].strip()), False

    def _read_exactly(self, length: int) -> bytes:
        if length <= 0:
            return b""
        body = self.rfile.read(length)
        if len(body) < length:
            raise TimeoutError("the client closed before sending the whole body")
        return body

    def _read_chunked(self) -> bytes:
        limit = self.server.max_body_bytes
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            match = _CHUNK_SIZE.fullmatch(line.rstrip(b"\r\n")) if line.endswith(b"\r\n") else None
            if match is None:
                raise _BadFraming(400)
            chunk_size = int(match.group(1), 16)
            if chunk_size == 0:
                break
            size += chunk_size
            if size > limit:
                raise _BadFraming(413)
            data = self.rfile.read(chunk_size + 2)
            if len(data) < chunk_size + 2:
                raise TimeoutError("the client closed inside a chunk")
            if data[-2:] != b"\r\n":
                raise _BadFraming(400)
            parts.append(data[:-2])
        for _ in range(100):  # trailer fields are read and ignored, as the host does
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return b"".join(parts)
            if not line.endswith(b"\n"):
                break
        raise _BadFraming(400)

    def _function_headers(self) -> dict[str, str]:
        # Like App Service's front end: X-Forwarded-For gets the connecting address appended,
        # so the last hop is one the caller cannot write (optouts.forwarding relies on it).
        headers = {name: value for name, value in self.headers.items() if name.lower() != "x-forwarded-for"}
        peer_host, peer_port = self.client_address[:2]
        peer = f"[{peer_host}]:{peer_port}" if ":" in peer_host else f"{peer_host}:{peer_port}"
        hops = [value for value in self.headers.get_all("X-Forwarded-For") or [] if value.strip()]
        headers["X-Forwarded-For"] = ", ".join([*hops, peer])
        return headers

    def _answer_function(self, response: Any) -> None:
        if not isinstance(response, func.HttpResponse):
            _logger.error("an HTTP function returned %s, not func.HttpResponse", type(response).__name__)
            return self._answer(500)
        body = response.get_body() or b""
        headers = dict(response.headers.items())
        if not any(name.lower() == "content-type" for name in headers) and response.mimetype:
            headers["Content-Type"] = f"{response.mimetype}; charset={response.charset or 'utf-8'}"
        self._answer(response.status_code, headers, body)

    def _answer(self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        self.connection.settimeout(WRITE_TIMEOUT_SECONDS)
        self.send_response(status)
        for name, value in (headers or {}).items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self, length: int, chunked: bool) -> bytes | None:
        """The body, once the request may be served; None when its failure (408, bad framing) was answered."""
        if self._expect_continue and (chunked or length > 0):
            self._write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._reader.deadline = time.monotonic() + self.server.limits.body_timeout
        try:
            return self._read_chunked() if chunked else self._read_exactly(length)
        except TimeoutError:
            self._refuse(408)
        except _BadFraming as bad:
            self._refuse(bad.status)
        return None

    def _refuse_unread(self, status: int, length: int, chunked: bool) -> None:
        """Refused before the body was read: a request with none keeps its connection as any other."""
        if chunked or length > 0:
            self._refuse(status, length, chunked)
        else:
            self._answer(status)

    def _refuse(self, status: int, length: int = 0, chunked: bool = False) -> None:
        """Answer without reading the body; then drop a small one to keep the connection, or
        close, draining a bounded amount first so the answer is not lost to a reset."""
        # A client that asked "Expect: 100-continue" was told no: it will not send the body.
        keep = (not chunked and not self._expect_continue and length <= MAX_DISCARDED_BODY_BYTES
                and status in (401, 404))
        if not keep:
            self.close_connection = True
        self._answer(status)
        if keep:
            self._reader.deadline = time.monotonic() + min(LINGER_SECONDS, self.server.limits.body_timeout)
            try:
                self._read_exactly(length)
            except (TimeoutError, OSError):
                self.close_connection = True
            return
        self._linger()

    def _linger(self) -> None:
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            return
        self._reader.deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        try:
            while drained < LINGER_BYTES:
                data = self.rfile.read1(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:  # TimeoutError included
            pass

    def _write_raw(self, data: bytes) -> None:
        try:
            self.connection.settimeout(WRITE_TIMEOUT_SECONDS)
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return
