"""A lean azure-core transport for the gateway's calls to ACS: small JSON POSTs to one host.

`requests` (azure-core's default transport) and even the standard library's `http.client`
spend more CPU per call than a fast network round trip takes: `http.client` sends headers
one by one and parses every answer's header block with the `email` package. That CPU is
what callers of the gateway pay. This transport keeps what the pipeline needs, no more:
pooled keep-alive HTTP/1.1 connections, each request written in one `sendall`, answers
parsed by `httptools` (the llhttp parser behind uvicorn), separate connect and read
timeouts, TLS with certificate verification, a bound on the size of an answer, and the
azure-core exception types its retry policy understands. Anything fancier (proxies,
client certificates) can pass `transport=RequestsTransport(...)` to the client instead.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping
from functools import lru_cache
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httptools
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import CaseInsensitiveDict

#: ACS answers 100 recipients in about 10 KB; an answer (head and body) near this is not ACS's.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
_RECEIVE_SIZE = 64 * 1024
#: A kept-alive connection the server closed meanwhile fails like this on reuse.
_DROPPED_CONNECTION_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

_Origin = tuple[str, str, int]


class _StaleConnection(Exception):
    """The server closed the connection before answering anything."""


class _Answer:
    """One answer, as httptools' callbacks report it. Interim 1xx answers (103 Early Hints,
    say) are skipped, as `http.client` does; bytes after the answer mean the connection is
    out of step, so it is not reused."""

    __slots__ = ("parser", "reason", "headers", "chunks", "headers_done", "keep_alive", "final")

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.keep_alive = False
        #: Set once the answer is complete: its status, reason, headers and body chunks, kept
        #: apart from any message that follows it.
        self.final: tuple[int, str, list[tuple[str, str]], list[bytes]] | None = None

    def on_message_begin(self) -> None:
        if self.final is not None:
            self.keep_alive = False
        self.reason, self.headers, self.chunks, self.headers_done = "", [], [], False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None  # nosec B101 - set until the answer is read
        status = self.parser.get_status_code()
        if self.final is not None or 100 <= status < 200:
            return
        self.finish(status)
        # Asked now: the parser forgets the answer's connection flags once it is complete.
        self.keep_alive = self.parser.should_keep_alive()

    def finish(self, status: int) -> None:
        self.final = (status, self.reason, self.headers, self.chunks)

    def delimited_by_close(self) -> bool:
        """Whether the body runs until the server closes (no length, not chunked)."""
        names = {name.lower() for name, _ in self.headers}
        return self.headers_done and "content-length" not in names and "transfer-encoding" not in names


class _Connection:
    """One HTTP/1.1 connection, used by one thread at a time."""

    __slots__ = ("_socket",)

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock

    def exchange(
        self, method: str, target: str, host_header: str, headers: Mapping[str, str], body: bytes | None,
        read_timeout: float,
    ) -> tuple[int, str, CaseInsensitiveDict, bytes, bool]:
        """Send one request and read its whole answer: status, reason, headers, body, keep-alive.

        Raises `_StaleConnection` when the server closed the connection before answering."""
        self._socket.settimeout(read_timeout)
        try:
            self._socket.sendall(_request_bytes(method, target, host_header, headers, body))
        except _DROPPED_CONNECTION_ERRORS:
            raise _StaleConnection() from None
        answer = _Answer()
        try:
            self._read_into(answer, read_timeout)
        finally:
            answer.parser = None  # no reference cycle left for the garbage collector
        assert answer.final is not None  # nosec B101 - _read_into returns only with the answer complete
        status, reason, fields, chunks = answer.final
        return status, reason, CaseInsensitiveDict(fields), b"".join(chunks), answer.keep_alive

    def _read_into(self, answer: _Answer, read_timeout: float) -> None:
        """`read_timeout` bounds the whole answer, not each receive: a server trickling
        bytes cannot hold the call longer, nor (with MAX_ANSWER_BYTES) grow its memory."""
        assert answer.parser is not None  # nosec B101 - a new answer has its parser
        received = 0
        deadline = time.monotonic() + read_timeout
        while answer.final is None:
            if received:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self._socket.settimeout(remaining)
            try:
                data = self._socket.recv(_RECEIVE_SIZE)
            except _DROPPED_CONNECTION_ERRORS:
                if received:
                    raise
                raise _StaleConnection() from None
            if not data:
                if not received:
                    raise _StaleConnection()
                if not answer.delimited_by_close():
                    raise ServiceResponseError("the connection closed in the middle of the answer")
                answer.finish(answer.parser.get_status_code())
                return
            received += len(data)
            if received > MAX_ANSWER_BYTES:
                raise ServiceResponseError(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
            try:
                answer.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                raise ServiceResponseError("the server asked to switch protocols") from None
            except httptools.HttpParserError as error:
                raise ServiceResponseError(f"the answer is not valid HTTP/1.1 ({error})") from None

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass


def _request_bytes(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
    # Host and Content-Length are the transport's to write: from the URL, and from the body as sent.
    lines = [f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() not in _TRANSPORT_HEADERS]
    fields = "".join(lines)
    # Each line ends in one CR LF; another CR or LF would let a name or value smuggle in headers.
    if fields.count("\n") != len(lines) or fields.count("\r") != len(lines):
        raise ServiceRequestError("a request header contains a line break")
    length = "" if body is None else f"Content-Length: {len(body)}\r\n"
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n{fields}{length}\r\n"
    try:
        encoded = head.encode("latin-1")
    except UnicodeEncodeError:
        raise ServiceRequestError("a request header is not Latin-1 text") from None
    return encoded + body if body else encoded


_TRANSPORT_HEADERS = frozenset({"host", "content-length"})


@lru_cache(maxsize=64)
def _split_url(url: str) -> tuple[_Origin, str, str]:
    """(origin, request target, Host header) of a URL; the client calls a handful of URLs only."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ServiceRequestError(f"cannot send to a URL with scheme {parts.scheme!r}")
    default_port = 443 if scheme == "https" else 80
    port = parts.port or default_port
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host_header = host if port == default_port else f"{host}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _CONTROL_OR_SPACE.search(target + host_header):
        # As in http.client: a space or control character would let the URL split the request line.
        raise ServiceRequestError("the URL contains a space or a control character")
    return (scheme, parts.hostname, port), target, host_header


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


class KeepAliveTransport(HttpTransport):  # type: ignore[type-arg]
    """Send azure-core requests over a pool of kept-alive HTTP/1.1 connections.

    Thread-safe: each connection is used by one thread at a time, and at most
    `pool_size` idle connections per origin are kept for reuse.
    """

    def __init__(
        self,
        *,
        connection_timeout: float = 10.0,
        read_timeout: float = 30.0,
        pool_size: int = 32,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context` defaults to the system's trusted CAs with hostname checking."""
        self._connection_timeout = connection_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> KeepAliveTransport:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """Send one request and read its whole answer. The per-call `connection_timeout`
        and `read_timeout` options azure-core's policies set are honoured; other options
        (such as `stream`) do not apply to small JSON calls and are ignored."""
        try:
            origin, target, host_header = _split_url(request.url)
        except ValueError as error:  # a port that is not a number
            raise ServiceRequestError(f"cannot send to this URL ({error})") from None
        if not (request.method.isascii() and request.method.isalpha()):
            raise ServiceRequestError("the request method is not an HTTP method name")
        if request.method == "HEAD":
            # An answer to HEAD announces a body it does not send; these calls never need one.
            raise ServiceRequestError("KeepAliveTransport does not send HEAD requests")
        body = _body_bytes(request)
        connect_timeout = kwargs.get("connection_timeout") or self._connection_timeout
        read_timeout = kwargs.get("read_timeout") or self._read_timeout

        connection, reused = self._checkout(origin, connect_timeout)
        while True:
            try:
                status, reason, response_headers, content, keep = connection.exchange(
                    request.method, target, host_header, request.headers, body, read_timeout
                )
            except _StaleConnection:
                connection.close()
                if not reused:
                    raise ServiceResponseError("the server closed the connection without answering") from None
                # The server closed a kept-alive connection while it sat idle. Opt-out calls
                # are idempotent, so a second try on a fresh connection is safe.
                connection, reused = self._connect(origin, connect_timeout), False
                continue
            except TimeoutError as error:  # socket.timeout is the same class
                connection.close()
                raise ServiceResponseTimeoutError(f"no answer within {read_timeout:g} s", error=error) from None
            except OSError as error:
                connection.close()
                raise ServiceResponseError(f"the exchange failed ({type(error).__name__})", error=error) from None
            except BaseException:
                connection.close()
                raise
            break
        if keep:
            self._checkin(origin, connection)
        else:
            connection.close()
        return BufferedResponse(request, status, reason, response_headers, content)

    # -- the pool ----------------------------------------------------------------------

    def _checkout(self, origin: _Origin, connect_timeout: float) -> tuple[_Connection, bool]:
        with self._lock:
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        return self._connect(origin, connect_timeout), False

    def _checkin(self, origin: _Origin, connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._pool_size:
                idle.append(connection)
                return
        connection.close()

    def _connect(self, origin: _Origin, connect_timeout: float) -> _Connection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as error:
            raise ServiceRequestError(f"could not connect to {host}:{port} ({type(error).__name__})",
                                      error=error) from None
        try:
            # Small requests must not wait for the peer's delayed ACK of an earlier packet.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl_context.wrap_socket(sock, server_hostname=host)
        except OSError as error:  # ssl.SSLError (an untrusted certificate, say) is an OSError
            sock.close()
            raise ServiceRequestError(f"could not connect to {host}:{port} ({type(error).__name__})",
                                      error=error) from None
        return _Connection(sock)


def _body_bytes(request: HttpRequest) -> bytes | None:
    content = request.content
    if content is None:
        return None
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, (bytes, bytearray)):
        return bytes(content)
    raise ServiceRequestError(f"KeepAliveTransport sends bytes or str bodies, not {type(content).__name__}")


class BufferedResponse(HttpResponse):
    """A fully read answer; `azure.core.rest.HttpResponse` for the pipeline and callers."""

    def __init__(self, request: HttpRequest, status: int, reason: str,
                 headers: CaseInsensitiveDict, content: bytes) -> None:
        self._request = request
        self._status_code = status
        self._reason = reason
        self._headers = headers
        self._content = content
        self._encoding: str | None = None

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status_code

    @property
    def headers(self) -> MutableMapping[str, str]:
        return self._headers

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def content_type(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return True

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        return self._encoding

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        self._encoding = value

    @property
    def url(self) -> str:
        return self._request.url

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        return self._content.decode(encoding or self._encoding or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self._content)

    def read(self) -> bytes:
        return self._content

    def raise_for_status(self) -> None:
        if self._status_code >= 400:
            raise HttpResponseError(response=self)

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def close(self) -> None:
        pass

    def __enter__(self) -> BufferedResponse:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
