"""The http.client transport against real local servers: connection reuse, a server
that drops kept-alive connections, refused and hanging servers, and TLS."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError, ServiceResponseTimeoutError
from azure.core.rest import HttpRequest

from devtools.azure_standins._server import JsonHandler, LocalServer
from optouts.acs import OptOutsClient
from optouts.acs.transport import KeepAliveTransport

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

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
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


def post(transport: KeepAliveTransport, url: str, body: str = '{"n":1}', **options: object):  # noqa: ANN201
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

    def recording_sendall(sock: socket.socket, data: bytes, *args: object) -> None:
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


def test_the_client_sends_through_it_by_default(emulator) -> None:  # noqa: ANN001 - the shared fixture
    with OptOutsClient.from_connection_string(emulator.connection_string) as client:
        assert isinstance(client._pipeline_client._pipeline._transport, KeepAliveTransport)
        results = client.remove(SENDER, ["+14255550100"] * 2 + ["+14255550101"])
    assert [r.to for r in results] == ["+14255550100", "+14255550100", "+14255550101"]
