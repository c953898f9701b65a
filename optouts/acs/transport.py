"""A lean azure-core transport on the standard library's `http.client`.

The gateway's calls to ACS are small JSON POSTs to one host. `requests` (the default
azure-core transport) spends more CPU preparing, merging and wrapping each call than
the call's own round trip takes on a fast network, and that cost is what callers of
the gateway pay. This transport keeps what the pipeline needs, no more: pooled
keep-alive connections, separate connect and read timeouts, TLS with certificate
verification, and the azure-core exception types its retry policy understands.
Anything fancier (proxies, client certificates) can pass `transport=RequestsTransport(...)`
to the client instead.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator, MutableMapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import CaseInsensitiveDict

#: A kept-alive connection the server closed meanwhile fails like this on reuse.
_STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                            ConnectionAbortedError)

_Origin = tuple[str, str, int]


class _OneWriteRequests:
    """`http.client` sends a request's head and its body with two `send` calls: two
    packets and, for the calling thread, two trips out of and back into the GIL. This
    collects what one `request` sends and writes it at once."""

    _collected: list[bytes] | None = None

    def send(self, data: Any) -> None:
        if self._collected is not None:
            self._collected.append(bytes(data))
        else:
            super().send(data)  # type: ignore[misc]

    def request_in_one_write(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> None:
        self._collected = []
        try:
            self.request(method, target, body=body, headers=headers)  # type: ignore[attr-defined]
            data = b"".join(self._collected)
        finally:
            self._collected = None
        self.send(data)


class _HTTPConnection(_OneWriteRequests, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWriteRequests, http.client.HTTPSConnection):
    pass


_Connection = _HTTPConnection | _HTTPSConnection


class StdlibTransport(HttpTransport):  # type: ignore[type-arg]
    """Send azure-core requests with `http.client` over a pool of kept-alive connections.

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

    def __enter__(self) -> "StdlibTransport":
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

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        """Send one request and read its whole answer. The per-call `connection_timeout`
        and `read_timeout` options azure-core's policies set are honoured; other options
        (such as `stream`) do not apply to small JSON calls and are ignored."""
        url = urlsplit(request.url)
        scheme = url.scheme.lower()
        if scheme not in ("http", "https") or not url.hostname:
            raise ServiceRequestError(f"cannot send to a URL with scheme {url.scheme!r}")
        origin: _Origin = (scheme, url.hostname, url.port or (443 if scheme == "https" else 80))
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        body = _body_bytes(request)
        headers = dict(request.headers)
        connect_timeout = kwargs.get("connection_timeout") or self._connection_timeout
        read_timeout = kwargs.get("read_timeout") or self._read_timeout

        connection, reused = self._checkout(origin, connect_timeout)
        while True:
            try:
                status, reason, response_headers, content, keep = _exchange(
                    connection, request.method, target, body, headers, read_timeout
                )
            except _STALE_CONNECTION_ERRORS as error:
                connection.close()
                if not reused:
                    raise ServiceResponseError(f"the connection failed ({type(error).__name__})",
                                               error=error) from None
                # The server closed a kept-alive connection while it sat idle. Opt-out calls
                # are idempotent, so a second try on a fresh connection is safe.
                connection, reused = self._connect(origin, connect_timeout), False
                continue
            except BaseException:
                connection.close()
                raise
            break
        if keep:
            self._checkin(origin, connection)
        else:
            connection.close()
        return StdlibResponse(request, status, reason, response_headers, content)

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
        connection: _Connection
        if scheme == "https":
            connection = _HTTPSConnection(host, port, timeout=connect_timeout, context=self._ssl_context)
        else:
            connection = _HTTPConnection(host, port, timeout=connect_timeout)
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise ServiceRequestError(f"could not connect to {host}:{port} ({type(error).__name__})",
                                      error=error) from None
        # Small requests must not wait for the peer's delayed ACK of an earlier packet.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


def _exchange(
    connection: _Connection,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    read_timeout: float,
) -> tuple[int, str, CaseInsensitiveDict, bytes, bool]:
    try:
        if connection.sock is not None:  # pooled and fresh connections always have one
            connection.sock.settimeout(read_timeout)
        connection.request_in_one_write(method, target, body, headers)
        response = connection.getresponse()
        content = response.read()
    except _STALE_CONNECTION_ERRORS:
        raise
    except TimeoutError as error:  # socket.timeout is the same class
        raise ServiceResponseTimeoutError(f"no answer within {read_timeout:g} s", error=error) from None
    except (OSError, http.client.HTTPException) as error:
        raise ServiceResponseError(f"the exchange failed ({type(error).__name__})", error=error) from None
    response_headers = CaseInsensitiveDict(response.getheaders())
    return response.status, response.reason, response_headers, content, not response.will_close


def _body_bytes(request: HttpRequest) -> bytes | None:
    content = request.content
    if content is None:
        return None
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, (bytes, bytearray)):
        return bytes(content)
    raise ServiceRequestError(f"StdlibTransport sends bytes or str bodies, not {type(content).__name__}")


class StdlibResponse(HttpResponse):
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

    def __enter__(self) -> "StdlibResponse":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
