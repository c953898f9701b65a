"""The local host (`make run`) as an attacker on the loopback sees it: unauthenticated bodies
are never read, message framing is unambiguous (no request smuggling), and half-sent requests
neither pile up threads nor hold connections open."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from devtools.localhost.http_server import HttpLimits

from ..conftest import SENDER
from .gateway import KEY, RawClient, running_gateway

LIMITS = HttpLimits(header_timeout=1.0, body_timeout=1.0, idle_timeout=5.0, max_connections=16)
#: Long enough for any answer on a loaded machine; far below a test timeout.
SOCKET_TIMEOUT = 30
CHECK = "/api/optouts/check"


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER}) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(azurite: Azurite, acs: AcsEmulator) -> Iterator[LocalHost]:
    with running_gateway(acs.connection_string, azurite.connection_string, limits=LIMITS) as host:
        yield host


def connect(host: LocalHost) -> socket.socket:
    address = host.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((address[0], int(address[1])), timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answers(sock: socket.socket) -> list[tuple[int, dict[str, str], bytes]]:
    """Every answer the server sends until it closes the connection (bounded by the socket timeout)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        answers.append((status, headers, rest[:length]))
        data = rest[length:]
    return answers


def exchange(host: LocalHost, raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    with connect(host) as sock:
        sock.sendall(raw)
        return read_answers(sock)


def head(method: str, path: str, *lines: str, key: str | None = KEY) -> bytes:
    all_lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *lines]
    if key is not None:
        all_lines.append(f"x-functions-key: {key}")
    return ("\r\n".join(all_lines) + "\r\n\r\n").encode()


SMUGGLED = b"GET /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_an_unauthenticated_body_is_refused_before_it_is_sent(gateway: LocalHost) -> None:
    # The client announces 50 MB and sends none of it: the 401 must come from the head alone.
    with connect(gateway) as sock:
        sock.settimeout(5)
        sock.sendall(head("POST", CHECK, "Content-Type: application/json", "Content-Length: 50000000", key=None))
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
    assert b"connection: close" in answer.lower()


def test_an_unauthenticated_body_that_is_sent_is_not_read(gateway: LocalHost) -> None:
    # The answer comes first and the connection closes after a bounded drain: a client pushing
    # 64 MB (the old host read up to 100 MB, into memory) is cut off long before the end.
    size = 64 * 1024 * 1024
    block = b"x" * 65536
    with connect(gateway) as sock:
        sock.sendall(head("POST", CHECK, f"Content-Length: {size}", key=None))
        sent = 0
        try:
            while sent < size:
                sent += sock.send(block)
        except OSError:  # reset or broken pipe: the server stopped reading
            pass
        answers = read_answers(sock)
    assert sent < size / 2, sent
    assert [status for status, _, _ in answers] in ([401], []), answers


def test_expect_100_continue_is_answered_only_after_authentication(gateway: LocalHost) -> None:
    with connect(gateway) as sock:
        sock.settimeout(5)
        sock.sendall(head("POST", CHECK, "Content-Length: 20", "Expect: 100-continue", key=None))
        assert sock.recv(65536).startswith(b"HTTP/1.1 401 ")
    body = json.dumps({"phoneNumbers": ["+14255550100"]}).encode()
    with connect(gateway) as sock:
        sock.sendall(head("POST", CHECK, "Content-Type: application/json", f"Content-Length: {len(body)}",
                          "Expect: 100-continue"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        sock.settimeout(SOCKET_TIMEOUT)
        first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 "), first[:200]


def test_content_length_with_transfer_encoding_is_refused_and_nothing_is_smuggled(gateway: LocalHost) -> None:
    raw = head("POST", CHECK, "Content-Length: 0", "Transfer-Encoding: chunked") + b"0\r\n\r\n" + SMUGGLED
    answers = exchange(gateway, raw)
    assert [status for status, _, _ in answers] == [400], answers


def test_a_transfer_encoding_without_content_length_is_not_ignored(gateway: LocalHost) -> None:
    # Before: the body was taken as empty and the chunk's content served as a second request.
    chunk = SMUGGLED
    raw = head("POST", CHECK, "Content-Type: application/json", "Transfer-Encoding: chunked")
    raw += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
    answers = exchange_one(gateway, raw)
    assert len(answers) == 1, answers
    status, headers, body = answers[0]
    assert status == 400 and json.loads(body)["code"] == "InvalidJson"  # the chunk's text, read as the body


def exchange_one(host: LocalHost, raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers to `raw` sent on a connection that is then half-closed by the client."""
    with connect(host) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        return read_answers(sock)


def test_a_chunked_body_reaches_the_function(gateway: LocalHost) -> None:
    body = json.dumps({"phoneNumbers": ["+14255550100", "+14255550101"]}).encode()
    raw = head("POST", CHECK, "Content-Type: application/json", "Transfer-Encoding: chunked")
    raw += b"".join(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:]))
    raw += b"0\r\nX-Trailer: ignored\r\n\r\n"
    answers = exchange_one(gateway, raw)
    assert [status for status, _, _ in answers] == [200], answers
    assert json.loads(answers[0][2])["summary"]["total"] == 2


@pytest.mark.parametrize("framing", [
    ("Transfer-Encoding: gzip",),
    ("Transfer-Encoding: gzip, chunked",),
    ("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
    ("Content-Length: 5", "Content-Length: 6"),
    ("Content-Length: abc",),
    ("Content-Length: -1",),
    ("Content-Length: +5",),
    ("Content-Length: 5, 5",),
])
def test_ambiguous_framing_is_a_4xx_or_501_and_the_connection_closes(gateway: LocalHost, framing: tuple[str, ...]) -> None:
    answers = exchange(gateway, head("POST", CHECK, *framing) + b"hello" + SMUGGLED)
    statuses = [status for status, _, _ in answers]
    assert len(statuses) == 1 and statuses[0] in (400, 501), (framing, answers)


@pytest.mark.parametrize("chunks", [
    b"zz\r\nhello\r\n0\r\n\r\n",            # not hex
    b"5\r\nhelloXX0\r\n\r\n",                # no CRLF after the data
    b"fffffffffffffffffff\r\n",              # larger than anything allowed
    b"-5\r\nhello\r\n0\r\n\r\n",
])
def test_malformed_chunks_are_a_400(gateway: LocalHost, chunks: bytes) -> None:
    answers = exchange_one(gateway, head("POST", CHECK, "Transfer-Encoding: chunked") + chunks)
    assert [status for status, _, _ in answers][:1] in ([400], [413]), answers


def thread_count() -> int:
    return threading.active_count()


def test_half_sent_requests_are_bounded_and_timed_out(gateway: LocalHost) -> None:
    baseline = thread_count()
    sockets = []
    try:
        for _ in range(100):
            sock = connect(gateway)
            sock.sendall(b"POST /api/optouts/check HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            sockets.append(sock)
        time.sleep(0.3)
        assert thread_count() - baseline <= LIMITS.max_connections + 2, thread_count() - baseline
        # Within the header timeout (plus scheduling slack), the server has let every one of them go.
        deadline = time.monotonic() + LIMITS.header_timeout + 15
        for sock in sockets:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.split(b" ", 2)[1] in (b"408", b"503"), data[:80]
    finally:
        for sock in sockets:
            sock.close()
    http = RawClient(gateway.base_url)
    try:
        assert http.request("GET", "/api/health").status == 200
    finally:
        http.close()


def test_a_body_that_stops_arriving_is_timed_out(gateway: LocalHost) -> None:
    with connect(gateway) as sock:
        sock.sendall(head("POST", CHECK, "Content-Type: application/json", "Content-Length: 100") + b'{"phone')
        started = time.monotonic()
        answers = read_answers(sock)
    assert time.monotonic() - started < SOCKET_TIMEOUT - 1
    assert [status for status, _, _ in answers] in ([408], []), answers


def test_a_slow_trickle_of_header_bytes_is_cut_at_the_header_deadline(gateway: LocalHost) -> None:
    # One byte every 0.2 s resets any per-read timeout; the deadline covers the whole head.
    with connect(gateway) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET /api/health HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > LIMITS.header_timeout + 10:
                break
        answers = [] if closed else read_answers(sock)
    assert closed or [status for status, _, _ in answers] in ([408], []), answers
    assert time.monotonic() - started < LIMITS.header_timeout + 10
