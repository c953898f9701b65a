"""KeepAliveTransport against real local servers: connection reuse, a server that drops
kept-alive connections, refused and hanging servers, TLS, and (through a raw-socket server
that writes scripted bytes) how answers are framed and parsed and how requests are written."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpRequest, HttpResponse

from devtools.azure_standins._server import JsonHandler, LocalServer
from optouts.providers.acs import OptOutsClient
from optouts.providers.acs import transport as transport_module
from optouts.providers.acs.transport import KeepAliveTransport

from .conftest import SENDER


@dataclass
class Behaviour:
    """How the test server answers, and what it saw."""

    mode: str = "keep-alive"  # keep-alive | drop-after-answer | slam | slow | close-header
    delay: float = 0.0
    client_ports: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(JsonHandler):
    def handle(self) -> None:
        if self.server.owner.mode == "slam":  # type: ignore[attr-defined]
            return  # the connection closes without a word
        super().handle()

    def do_POST(self) -> None:
        behaviour: Behaviour = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with behaviour.lock:
            behaviour.client_ports.append(self.client_address[1])
            behaviour.bodies.append(body)
        if behaviour.delay:
            time.sleep(behaviour.delay)
        payload = json.dumps({"echo": body.decode("utf-8"), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if behaviour.mode == "close-header":
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped waiting (the read-timeout test)
            return
        # Dropping the connection without saying so is what an idle-timeout on the far side looks like.
        self.close_connection = behaviour.mode in ("close-header", "drop-after-answer")


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour()


@pytest.fixture
def server(behaviour: Behaviour) -> Iterator[LocalServer]:
    running = LocalServer(_Handler, owner=behaviour, tls=False)
    yield running
    running.close()


def post(transport: KeepAliveTransport, url: str, body: str = '{"n":1}', **options: object):
    request = HttpRequest("POST", f"{url}/sms/optouts:check?api-version=x", content=body.encode(),
                          headers={"Content-Type": "application/json"})
    return transport.send(request, **options)


def test_answers_are_read_whole_and_connections_are_reused(server: LocalServer, behaviour: Behaviour) -> None:
    with KeepAliveTransport() as transport:
        answers = [post(transport, server.base_url, body=f'{{"n":{n}}}') for n in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["echo"] for a in answers] == [f'{{"n":{n}}}' for n in range(5)]
    assert answers[0].json()["path"] == "/sms/optouts:check?api-version=x"
    assert answers[0].headers["content-type"] == "application/json"
    assert len(set(behaviour.client_ports)) == 1


def test_each_request_goes_out_in_one_write(
    server: LocalServer, behaviour: Behaviour, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    real_sendall = socket.socket.sendall
    server_port = int(server.base_url.rsplit(":", 1)[1])

    def recording_sendall(sock: socket.socket, data: bytes, *args: int) -> None:
        if sock.getpeername()[1] == server_port:  # the server's own answers are written in-process too
            writes.append(bytes(data))
        real_sendall(sock, data, *args)

    with KeepAliveTransport() as transport:
        post(transport, server.base_url)  # connects outside the recording
        monkeypatch.setattr(socket.socket, "sendall", recording_sendall)
        answer = post(transport, server.base_url, body='{"n":2}')
    assert answer.json()["echo"] == '{"n":2}'
    assert len(writes) == 1
    assert writes[0].startswith(b"POST /sms/optouts:check?api-version=x HTTP/1.1\r\n")
    assert writes[0].endswith(b'\r\n\r\n{"n":2}')


def test_connection_close_answers_are_not_pooled(server: LocalServer, behaviour: Behaviour) -> None:
    behaviour.mode = "close-header"
    with KeepAliveTransport() as transport:
        for _ in range(3):
            assert post(transport, server.base_url).status_code == 200
    assert len(set(behaviour.client_ports)) == 3


def test_a_dropped_idle_connection_is_replaced_once(server: LocalServer, behaviour: Behaviour) -> None:
    behaviour.mode = "drop-after-answer"
    with KeepAliveTransport() as transport:
        first = post(transport, server.base_url, body='{"n":1}')
        time.sleep(0.05)  # lets the server's close reach the pooled socket
        second = post(transport, server.base_url, body='{"n":2}')
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["echo"] == '{"n":2}'
    assert behaviour.bodies == [b'{"n":1}', b'{"n":2}']
    assert len(set(behaviour.client_ports)) == 2


def test_a_fresh_connection_that_fails_is_not_retried_here(server: LocalServer, behaviour: Behaviour) -> None:
    behaviour.mode = "slam"
    with KeepAliveTransport() as transport, pytest.raises(ServiceResponseError):
        post(transport, server.base_url)


def test_a_refused_connection_is_a_request_error() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with KeepAliveTransport(connection_timeout=2) as transport, pytest.raises(ServiceRequestError):
        post(transport, f"http://127.0.0.1:{port}")


def test_read_timeout_is_a_response_timeout(server: LocalServer, behaviour: Behaviour) -> None:
    behaviour.delay = 1.0
    started = time.monotonic()
    with KeepAliveTransport() as transport, pytest.raises(ServiceResponseTimeoutError):
        post(transport, server.base_url, read_timeout=0.2)
    assert time.monotonic() - started < 1.0


def test_unsupported_scheme_is_refused() -> None:
    with KeepAliveTransport() as transport, pytest.raises(ServiceRequestError):
        post(transport, "ftp://127.0.0.1:1")


def test_tls_is_verified(behaviour: Behaviour) -> None:
    running = LocalServer(_Handler, owner=behaviour, tls=True)
    try:
        assert running.certificate is not None
        trusting = ssl.create_default_context(cafile=running.certificate.ca_bundle)
        with KeepAliveTransport(ssl_context=trusting) as transport:
            assert post(transport, running.base_url).status_code == 200
        with KeepAliveTransport() as transport, pytest.raises(ServiceRequestError):
            post(transport, running.base_url)  # a self-signed certificate the system does not trust
    finally:
        running.close()
    assert len(behaviour.bodies) == 1


def test_the_client_sends_through_it_by_default(emulator) -> None:
    with OptOutsClient.from_connection_string(emulator.connection_string) as client:
        assert isinstance(client._pipeline_client._pipeline._transport, KeepAliveTransport)
        results = client.remove(SENDER, ["+14255550100"] * 2 + ["+14255550101"])
    assert [r.to for r in results] == ["+14255550100", "+14255550100", "+14255550101"]


# -- a raw-socket server: scripted answer bytes, the request bytes exactly as they arrived --

_RAW_TIMEOUT = 2.0  # every blocking call of the raw server gives up after this


@dataclass
class Reply:
    """One scripted answer: `pieces` written one `sendall` each, `pause` seconds apart, then
    `then`: "keep" (wait for the next request), "half-close" (end the answer by shutting the
    write side, still recording anything the client sends) or "close"."""

    pieces: list[bytes]
    pause: float = 0.0
    then: str = "keep"


@dataclass
class Seen:
    """One request as the raw server read it."""

    connection: int
    client_port: int
    raw: bytes


class RawServer:
    """Accepts connections on 127.0.0.1 one at a time; reads each request's head and body
    (by its Content-Length) and answers with the next scripted `Reply`."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Seen] = []
        self.received: list[bytearray] = []  # every byte each connection carried, request or not
        self._ended = threading.Semaphore(0)  # released once per connection that has ended
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, name=f"raw-{self.port}", daemon=True)
        self._thread.start()

    def wait_for_ended_connections(self, count: int) -> None:
        """Block until `count` connections have ended (the client closed or the script did)."""
        for _ in range(count):
            assert self._ended.acquire(timeout=_RAW_TIMEOUT * 2), "the raw server saw too few connections end"

    def close(self) -> None:
        self._stop.set()
        for sock in list(self._open):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv that is waiting on it
            except OSError:
                pass
        self._thread.join(_RAW_TIMEOUT * 3)
        self._listener.close()
        assert not self._thread.is_alive(), "the raw server did not stop"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, (_, client_port) = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._open.append(sock)
            try:
                self._converse(sock, client_port)
            except OSError:
                pass  # the client went away; what it sent is already recorded
            finally:
                self._open.remove(sock)
                sock.close()
                self._ended.release()

    def _converse(self, sock: socket.socket, client_port: int) -> None:
        sock.settimeout(_RAW_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each piece its own segment
        index = len(self.received)
        received = bytearray()
        self.received.append(received)
        pending = b""
        while not self._stop.is_set():
            while b"\r\n\r\n" not in pending:
                data = sock.recv(65536)
                if not data:
                    return
                received += data
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                    break
            while len(pending) < length:
                data = sock.recv(65536)
                if not data:
                    return
                received += data
                pending += data
            body, pending = pending[:length], pending[length:]
            self.requests.append(Seen(index, client_port, head + b"\r\n\r\n" + body))
            if not self.replies:
                return
            reply = self.replies.pop(0)
            for number, piece in enumerate(reply.pieces):
                if number and reply.pause:
                    time.sleep(reply.pause)
                sock.sendall(piece)
            if reply.then == "close":
                return
            if reply.then == "half-close":
                sock.shutdown(socket.SHUT_WR)


@pytest.fixture
def raw() -> Iterator[RawServer]:
    running = RawServer()
    yield running
    running.close()


def quick_transport() -> KeepAliveTransport:
    """Timeouts short enough that a framing mistake fails the test instead of hanging it."""
    return KeepAliveTransport(connection_timeout=_RAW_TIMEOUT, read_timeout=_RAW_TIMEOUT)


def fixed(body: bytes, status: str = "200 OK", *headers: str) -> bytes:
    """A whole answer with a Content-Length."""
    fields = "".join(f"{header}\r\n" for header in headers)
    return f"HTTP/1.1 {status}\r\n{fields}Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_a_chunked_answer_is_reassembled_and_the_connection_reused(raw: RawServer) -> None:
    """Chunk boundaries, and chunks split across TCP segments, must not show in the body."""
    raw.replies = [
        Reply([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
               b"a\r\n{\"a\":[", b"1,2]\r\n",  # one chunk over two writes
               b"4\r\n,\"b", b"\"\r\n",
               b"5\r\n:\"xy\"\r\n1\r\n}\r\n",
               b"0\r\n", b"\r\n"], pause=0.02),
        Reply([fixed(b'{"second":true}')]),
    ]
    with quick_transport() as transport:
        first = post(transport, raw.url)
        second = post(transport, raw.url)
    assert first.status_code == 200
    assert first.content == b'{"a":[1,2],"b":"xy"}'
    assert first.json() == {"a": [1, 2], "b": "xy"}
    assert second.json() == {"second": True}
    assert [seen.connection for seen in raw.requests] == [0, 0]
    assert raw.requests[0].client_port == raw.requests[1].client_port


def test_an_answer_delimited_by_close_is_read_whole_and_not_reused(raw: RawServer) -> None:
    """No length and no chunking: the body runs to the server's close, and that connection is
    spent. The server only half-closes, so a wrongly pooled connection would carry the second
    request to it (and be recorded there) before the transport noticed."""
    raw.replies = [
        Reply([b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"first part, ", b"second part"],
              pause=0.02, then="half-close"),
        Reply([fixed(b"again")]),
    ]
    with quick_transport() as transport:
        first = post(transport, raw.url)
        second = post(transport, raw.url)
    assert first.status_code == 200
    assert first.text() == "first part, second part"
    assert second.text() == "again"
    assert [seen.connection for seen in raw.requests] == [0, 1]
    raw.wait_for_ended_connections(1)
    assert bytes(raw.received[0]) == raw.requests[0].raw  # nothing more arrived on the spent one


def test_a_body_cut_short_is_a_response_error(raw: RawServer) -> None:
    """Content-Length promises 100 bytes; 10 arrive, then the close: not a short success."""
    raw.replies = [Reply([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"0123456789"], pause=0.02,
                         then="close")]
    started = time.monotonic()
    with quick_transport() as transport, pytest.raises(ServiceResponseError) as raised:
        post(transport, raw.url)
    assert not isinstance(raised.value, ServiceResponseTimeoutError)
    assert time.monotonic() - started < _RAW_TIMEOUT
    assert len(raw.requests) == 1  # a fresh connection's failure is left to the retry policy


def test_garbage_instead_of_a_status_line_is_a_response_error(raw: RawServer) -> None:
    """The server keeps the connection open, so only the parser can end the wait early."""
    raw.replies = [Reply([b"NOT HTTP\r\n\r\n"])]
    started = time.monotonic()
    with quick_transport() as transport, pytest.raises(ServiceResponseError) as raised:
        post(transport, raw.url)
    assert not isinstance(raised.value, ServiceResponseTimeoutError)
    assert time.monotonic() - started < _RAW_TIMEOUT / 2


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",  # all of it arrives
        b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n",  # the rest never comes
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1388\r\n",  # one 5000-byte chunk
        b"HTTP/1.1 200 OK\r\n\r\n",  # delimited by a close that never comes
    ],
    ids=["whole", "promised-more", "chunked", "until-close"],
)
def test_an_answer_over_the_size_bound_is_refused_early(
    raw: RawServer, monkeypatch: pytest.MonkeyPatch, head: bytes
) -> None:
    """The bound is checked as bytes arrive: the connection stays open, so waiting for the
    end of the answer would only end at the read timeout."""
    monkeypatch.setattr(transport_module, "MAX_ANSWER_BYTES", 1000)
    raw.replies = [Reply([head] + [b"x" * 1000] * 5, pause=0.02)]
    started = time.monotonic()
    with quick_transport() as transport, pytest.raises(ServiceResponseError) as raised:
        post(transport, raw.url)
    assert not isinstance(raised.value, ServiceResponseTimeoutError)
    assert "larger than 1000 bytes" in str(raised.value)
    assert time.monotonic() - started < _RAW_TIMEOUT / 2


def test_a_header_block_over_the_size_bound_is_refused_early(
    raw: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endless header block must hit the same bound as an endless body; otherwise a server
    trickling header lines holds the call (and grows its memory) past every timeout."""
    monkeypatch.setattr(transport_module, "MAX_ANSWER_BYTES", 1000)
    raw.replies = [Reply([b"HTTP/1.1 200 OK\r\n"] + [b"X-Pad-%d: %s\r\n" % (n, b"a" * 990) for n in range(5)],
                         pause=0.02)]
    started = time.monotonic()
    with KeepAliveTransport(connection_timeout=1, read_timeout=1) as transport, \
            pytest.raises(ServiceResponseError) as raised:
        post(transport, raw.url)
    assert not isinstance(raised.value, ServiceResponseTimeoutError)
    assert time.monotonic() - started < 0.5


def test_the_read_timeout_bounds_the_whole_answer(raw: RawServer) -> None:
    """A server trickling small pieces resets a per-receive timeout every time; the read
    timeout is for the whole answer, so the call still ends on time."""
    raw.replies = [Reply([b"HTTP/1.1 200 OK\r\n"] + [b"X-Pad-%d: a\r\n" % n for n in range(30)], pause=0.05)]
    started = time.monotonic()
    with KeepAliveTransport(connection_timeout=1, read_timeout=0.3) as transport, \
            pytest.raises(ServiceResponseTimeoutError):
        post(transport, raw.url)
    assert time.monotonic() - started < 0.9  # the trickle alone lasts 1.5 s


@pytest.mark.parametrize("value", ["ok\r\nX-Injected: 1", "ok\nX-Injected: 1", "ok\rX-Injected: 1"])
def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(raw: RawServer, value: str) -> None:
    """A header value must not be able to add header lines (or a second request)."""
    request = HttpRequest("POST", f"{raw.url}/x", content=b"{}", headers={"X-Caller": value})
    with quick_transport() as transport, pytest.raises(ServiceRequestError):
        transport.send(request)
    raw.wait_for_ended_connections(1)
    assert [bytes(received) for received in raw.received] == [b""]
    assert raw.requests == []


def test_a_line_break_in_a_header_name_is_refused(raw: RawServer) -> None:
    """Names are checked as well as values."""
    request = HttpRequest("GET", f"{raw.url}/x", headers={"X-Evil\r\nX-Injected": "1"})
    with quick_transport() as transport, pytest.raises(ServiceRequestError):
        transport.send(request)
    raw.wait_for_ended_connections(1)
    assert raw.requests == []


def test_the_request_head_arrives_as_sent(raw: RawServer) -> None:
    """Host carries a non-default port, the body its length, and answers are asked for
    uncompressed (the transport does not decode them); custom headers keep their spelling."""
    raw.replies = [Reply([fixed(b"{}")])]
    body = b'{"from":"+18005550100","recipients":[{"to":"+14255550100"}]}'
    headers = {"Content-Type": "application/json", "X-Ms-Client-Request-Id": "Abc-123; x=y"}
    request = HttpRequest("POST", f"{raw.url}/sms/optouts:add?api-version=2024-12-10-preview",
                          content=body, headers=headers)
    with quick_transport() as transport:
        assert transport.send(request).status_code == 200
    (seen,) = raw.requests
    head, _, sent_body = seen.raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /sms/optouts:add?api-version=2024-12-10-preview HTTP/1.1"
    assert f"Host: 127.0.0.1:{raw.port}".encode() in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert b"Accept-Encoding: identity" in lines
    assert b"Content-Type: application/json" in lines
    assert b"X-Ms-Client-Request-Id: Abc-123; x=y" in lines
    assert sent_body == body


def test_a_request_without_a_body_has_no_length(raw: RawServer) -> None:
    """A GET carries no body, so it must not announce one either."""
    raw.replies = [Reply([fixed(b"{}")])]
    with quick_transport() as transport:
        assert transport.send(HttpRequest("GET", f"{raw.url}/")).status_code == 200
    (seen,) = raw.requests
    assert seen.raw.startswith(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{raw.port}\r\n".encode())
    assert b"content-length" not in seen.raw.lower()
    assert seen.raw.endswith(b"\r\n\r\n")


def test_content_length_is_sent_once(raw: RawServer) -> None:
    """azure-core's HttpRequest puts Content-Length in its headers; a second copy is a message
    RFC 9110 (section 8.6) lets a server or proxy reject as invalid."""
    raw.replies = [Reply([fixed(b"{}")])]
    with quick_transport() as transport:
        assert post(transport, raw.url).status_code == 200
    (seen,) = raw.requests
    assert seen.raw.lower().count(b"\r\ncontent-length:") == 1


def test_reason_and_headers_of_the_answer_are_exposed(raw: RawServer) -> None:
    """Callers log the reason and read headers in any case; the buffered body reads again."""
    payload = b'{"value":[{"to":"+14255550100","httpStatusCode":200}]}'
    raw.replies = [Reply([fixed(payload, "207 Partly Done Here",
                                "Content-Type: application/json; charset=utf-8",
                                "X-Ms-Request-Id: 5f0c-Req")])]
    with quick_transport() as transport:
        answer: HttpResponse = post(transport, raw.url)
    assert answer.status_code == 207
    assert answer.reason == "Partly Done Here"
    assert answer.headers["x-ms-request-id"] == "5f0c-Req"
    assert answer.headers["X-MS-REQUEST-ID"] == "5f0c-Req"
    assert answer.headers.get("content-type") == "application/json; charset=utf-8"
    assert answer.content_type == "application/json; charset=utf-8"
    assert answer.headers.get("Retry-After") is None
    assert answer.text() == answer.text() == payload.decode()
    assert answer.json() == answer.json() == {"value": [{"to": "+14255550100", "httpStatusCode": 200}]}
    assert answer.read() == payload


def test_interim_answers_are_skipped(raw: RawServer) -> None:
    """A 103 Early Hints (or 100 Continue) comes before the real answer; its headers are not the answer's."""
    raw.replies = [
        Reply([b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n",
               fixed(b'{"n":1}', "200 OK", "X-Which: final")], pause=0.02),
        Reply([fixed(b'{"n":2}')]),
    ]
    with quick_transport() as transport:
        first = post(transport, raw.url)
        second = post(transport, raw.url)
    assert (first.status_code, first.reason, first.json()) == (200, "OK", {"n": 1})
    assert first.headers.get("X-Which") == "final" and first.headers.get("Link") is None
    assert second.json() == {"n": 2}
    assert [seen.connection for seen in raw.requests] == [0, 0]


def test_bytes_after_the_answer_keep_the_connection_out_of_the_pool(raw: RawServer) -> None:
    """A server that sent more than its answer is out of step: the next answer on that
    connection could be the leftover, so the connection is closed instead of reused."""
    raw.replies = [
        Reply([fixed(b'{"n":1}') + fixed(b'{"stray":true}')]),
        Reply([fixed(b'{"n":2}')]),
    ]
    with quick_transport() as transport:
        first = post(transport, raw.url)
        second = post(transport, raw.url)
    assert first.json() == {"n": 1}
    assert second.json() == {"n": 2}
    assert [seen.connection for seen in raw.requests] == [0, 1]


def test_head_requests_are_refused(raw: RawServer) -> None:
    """An answer to HEAD announces a body it does not send; waiting for it would hang."""
    raw.replies = [Reply([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"])]
    with quick_transport() as transport, pytest.raises(ServiceRequestError):
        transport.send(HttpRequest("HEAD", f"{raw.url}/x"))
    assert raw.received == [] and raw.requests == []


@pytest.mark.parametrize("path", ["/a b", "/a\x00b", "/x?q=\x7f", "/x\r\nX-Injected: 1"])
def test_a_url_that_could_split_the_request_line_is_refused(raw: RawServer, path: str) -> None:
    """As http.client does: refused before any connection is made."""
    raw.replies = [Reply([fixed(b"{}")])]
    with quick_transport() as transport, pytest.raises(ServiceRequestError):
        transport.send(HttpRequest("GET", f"{raw.url}{path}"))
    assert raw.received == [] and raw.requests == []


def test_a_method_that_is_not_a_name_is_refused(raw: RawServer) -> None:
    raw.replies = [Reply([fixed(b"{}")])]
    with quick_transport() as transport, pytest.raises(ServiceRequestError):
        transport.send(HttpRequest("GET /x HTTP/1.1\r\nX:", f"{raw.url}/x"))
    assert raw.received == [] and raw.requests == []
