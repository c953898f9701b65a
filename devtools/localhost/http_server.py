"""Serves HTTP-triggered functions like the Functions host: routing under the route
prefix, function keys by auth level, `func.HttpRequest` in, `func.HttpResponse` out."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from .app_loader import HttpFunction
from .invoker import Invoker

_logger = logging.getLogger("devtools.localhost")

#: The host's default limit on request bodies.
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024


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
    ) -> None:
        super().__init__(address, _Handler)
        self.functions = functions
        self.route_prefix = route_prefix.strip("/")
        self.function_keys = dict(function_keys)
        self.master_key = master_key
        self.invoker = invoker
        self.function_timeout = function_timeout
        self.max_body_bytes = max_body_bytes

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; see the ACS emulator
    server_version = "localhost-functions"
    sys_version = ""
    server: FunctionsHttpServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        url = urlsplit(self.path)
        method = self.command.upper()
        match = self.server.find(method, url.path)
        length = int(self.headers.get("Content-Length") or 0)
        if match is None:
            self._discard_body(length)
            return self._answer(404)
        function, route_params = match
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        key = self.headers.get("x-functions-key") or params.get("code")
        if not self.server.authorized(function, key):
            self._discard_body(length)
            return self._answer(401)
        if length > self.server.max_body_bytes:
            self.close_connection = True
            return self._answer(413)
        body = self.rfile.read(length) if length > 0 else b""
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        request = func.HttpRequest(
            method=method,
            url=f"http://{host}{self.path}",
            headers=dict(self.headers.items()),
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
        self.send_response(status)
        for name, value in (headers or {}).items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _discard_body(self, length: int) -> None:
        if 0 < length <= self.server.max_body_bytes:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return
