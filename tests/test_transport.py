"""The ACS client over azure-core's standard RequestsTransport, against real local servers:
connection reuse, an upstream that sends stray bytes after its answer, an answer with far
too many header lines, TLS, HTTPS_PROXY/NO_PROXY through a local CONNECT proxy, timeouts,
and refused connections."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from azure.core.pipeline.transport import RequestsTransport

from devtools.acs_emulator import AcsEmulator
from optouts.providers.acs import AcsUnavailableError, OptOutsClient

from .conftest import SENDER, fast_client
from .upstream import IO_TIMEOUT, ScriptedUpstream, Seen, answer, echo_value

NUMBER = "+14255550100"
OTHER = "+14255550101"


def quick(connection_string: str, **options: object) -> OptOutsClient:
    """Few, fast retries and short timeouts: a broken answer fails the test, never hangs it."""
    settings: dict[str, object] = {"retry_total": 1, "connection_timeout": 2.0, "read_timeout": 2.0,
                                   "recipient_retry_rounds": 0, "time_budget": 10.0}
    settings.update(options)
    return fast_client(connection_string, **settings)


def transport_of(client: OptOutsClient) -> RequestsTransport:
    return client._pipeline._transport  # type: ignore[attr-defined,no-any-return]


def test_the_client_sends_through_requests_with_a_pool_sized_to_its_concurrency(emulator: AcsEmulator) -> None:
    with OptOutsClient.from_connection_string(emulator.connection_string, max_concurrency=3) as client:
        transport = transport_of(client)
        assert type(transport) is RequestsTransport
        results = client.remove(SENDER, [NUMBER] * 2 + [OTHER])
        adapter = transport.session.get_adapter(emulator.endpoint)  # type: ignore[union-attr]
        assert adapter._pool_maxsize == 12  # type: ignore[attr-defined] # 4 x max_concurrency
        assert transport.session.trust_env  # type: ignore[union-attr] # proxies and CA bundles from the environment
    assert [r.to for r in results] == [NUMBER, NUMBER, OTHER]


def test_kept_alive_connections_are_reused() -> None:
    with ScriptedUpstream(lambda seen: (answer(200, echo_value(seen)), False)) as upstream, \
            quick(upstream.connection_string()) as client:
        for _ in range(3):
            assert client.add(SENDER, [NUMBER])[0].succeeded
        assert [seen.connection for seen in upstream.requests] == [0, 0, 0]


@pytest.mark.parametrize("arrival", ["with the answer", "after the answer"])
def test_stray_bytes_after_an_answer_are_never_read_as_the_next_answer(arrival: str) -> None:
    """The upstream follows its answer to the first check with a second, forged answer saying
    the number is opted out, in the same write or a moment later. Every later check must get
    its own answer (not opted out)."""
    forged = answer(200, {"value": [{"to": NUMBER, "httpStatusCode": 200, "isOptedOut": True}]})

    def script(seen: Seen) -> tuple[bytes | list[bytes], bool]:
        real = answer(200, echo_value(seen, isOptedOut=False))
        if len(upstream.requests) > 1:
            return real, False
        return (real + forged if arrival == "with the answer" else [real, forged]), False

    with ScriptedUpstream(script) as upstream, quick(upstream.connection_string()) as client:
        first = client.check(SENDER, [NUMBER])[0]
        time.sleep(0.2)  # the forged bytes have arrived before the next call
        second = client.check(SENDER, [NUMBER])[0]
        third = client.check(SENDER, [NUMBER])[0]
    assert (first.is_opted_out, second.is_opted_out, third.is_opted_out) == (False, False, False)
    assert len(upstream.requests) == 3
    if arrival == "after the answer":
        # Bytes waiting on an idle connection mean it is out of step: urllib3 discards it.
        assert upstream.requests[1].connection != upstream.requests[0].connection


def test_an_answer_with_a_huge_number_of_header_lines_is_refused_not_buffered() -> None:
    """100,000 header lines: http.client stops after 100, so the call fails as a bad answer
    instead of costing memory per line; the client answers a definite failure."""
    flood = "".join(f"X-Flood-{n}: {'y' * 10}\r\n" for n in range(100_000)).encode()

    def script(seen: Seen) -> tuple[bytes, bool]:
        return b"HTTP/1.1 200 OK\r\n" + flood + b"Content-Length: 2\r\n\r\n{}", True

    with ScriptedUpstream(script) as upstream, quick(upstream.connection_string()) as client:
        with pytest.raises(AcsUnavailableError):
            client.add(SENDER, [NUMBER])
    assert len(upstream.requests) == 2  # the first attempt and its one retry, nothing more


def test_an_answer_declared_over_the_bound_is_not_read() -> None:
    """A Content-Length of almost 1 GB is refused from the header alone: the client neither waits
    for nor holds the body; the numbers get a definite (transient) failure."""
    def script(seen: Seen) -> tuple[bytes, bool]:
        return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{", False

    with ScriptedUpstream(script) as upstream, quick(upstream.connection_string(), read_timeout=IO_TIMEOUT) as client:
        started = time.monotonic()
        result = client.add(SENDER, [NUMBER])[0]
        elapsed = time.monotonic() - started
    assert (result.succeeded, result.status_code) == (False, 502)
    assert elapsed < IO_TIMEOUT  # did not wait for the body


def test_a_streamed_answer_over_the_bound_is_cut_off() -> None:
    """A chunked answer of 8 MB: the client stops reading after 1 MiB and drops the connection."""
    piece = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(128)) + b"0\r\n\r\n"

    def script(seen: Seen) -> tuple[bytes, bool]:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        return head + body, False

    with ScriptedUpstream(script) as upstream, quick(upstream.connection_string()) as client:
        first = client.add(SENDER, [NUMBER])[0]
        second = client.add(SENDER, [NUMBER])[0]
    assert (first.status_code, second.status_code) == (502, 502)
    assert [seen.connection for seen in upstream.requests] == [0, 1]  # the cut-off connection was not reused


def test_a_hanging_upstream_is_bounded_by_the_read_timeout() -> None:
    release = threading.Event()

    def script(seen: Seen) -> tuple[bytes, bool]:
        release.wait(IO_TIMEOUT)  # answers nothing while the client waits
        return b"", True

    with ScriptedUpstream(script) as upstream, quick(upstream.connection_string(), read_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(AcsUnavailableError):
            client.add(SENDER, [NUMBER])
        elapsed = time.monotonic() - started
        release.set()
    assert len(upstream.requests) == 2
    assert elapsed < IO_TIMEOUT  # bounded by two read timeouts, not by the upstream


def test_the_time_budget_bounds_a_hanging_upstream_whatever_the_read_timeout() -> None:
    release = threading.Event()

    def script(seen: Seen) -> tuple[bytes, bool]:
        release.wait(IO_TIMEOUT)
        return b"", True

    with ScriptedUpstream(script) as upstream, \
            quick(upstream.connection_string(), read_timeout=30.0, time_budget=0.5) as client:
        started = time.monotonic()
        with pytest.raises(AcsUnavailableError):
            client.add(SENDER, [NUMBER])
        elapsed = time.monotonic() - started
        release.set()
    assert elapsed < IO_TIMEOUT


def test_a_refused_connection_is_a_definite_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with quick(f"endpoint=http://127.0.0.1:{port}/;accesskey=ZHVtbXk=") as client, \
            pytest.raises(AcsUnavailableError):
        client.add(SENDER, [NUMBER])


def test_a_connection_dropped_while_idle_is_replaced() -> None:
    """The upstream closes each connection after answering, without saying so."""
    with ScriptedUpstream(lambda seen: (answer(200, echo_value(seen)), True)) as upstream, \
            quick(upstream.connection_string(), retry_total=0) as client:
        for _ in range(3):
            assert client.add(SENDER, [NUMBER])[0].succeeded
            time.sleep(0.05)
    assert [seen.connection for seen in upstream.requests] == [0, 1, 2]


@pytest.fixture
def tls_emulator() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER}, tls=True) as running:
        yield running


def test_tls_is_verified_against_the_trusted_bundle(tls_emulator: AcsEmulator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls_emulator.certificate is not None and tls_emulator.endpoint.startswith("https://")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with quick(tls_emulator.connection_string) as client, pytest.raises(AcsUnavailableError):
        client.add(SENDER, [NUMBER])  # a self-signed certificate nobody said to trust
    assert tls_emulator.opted_out(SENDER) == set()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_emulator.certificate.ca_bundle)
    with quick(tls_emulator.connection_string) as client:
        assert client.add(SENDER, [NUMBER])[0].succeeded
    assert tls_emulator.opted_out(SENDER) == {NUMBER}


class ConnectProxy:
    """A forward proxy on 127.0.0.1 that tunnels CONNECT requests and records their targets."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(IO_TIMEOUT)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        client.settimeout(IO_TIMEOUT)
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            self.targets.append(f"{method} {target}")
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=IO_TIMEOUT) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                for _ in range(10_000):  # bounded: a few hundred round trips at most in these tests
                    readable, _, _ = select.select([client, upstream], [], [], IO_TIMEOUT)
                    if not readable or self._stop.is_set():
                        return
                    for source in readable:
                        data = source.recv(65536)
                        if not data:
                            return
                        (upstream if source is client else client).sendall(data)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    running = ConnectProxy()
    yield running
    running.close()


def test_https_proxy_and_no_proxy_come_from_the_environment(
    tls_emulator: AcsEmulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tls_emulator.certificate is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_emulator.certificate.ca_bundle)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with quick(tls_emulator.connection_string) as client:
        assert client.add(SENDER, [NUMBER])[0].succeeded
    assert proxy.targets == [f"CONNECT 127.0.0.1:{tls_emulator.port}"]

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with quick(tls_emulator.connection_string) as client:
        assert client.check(SENDER, [NUMBER])[0].is_opted_out is True
    assert len(proxy.targets) == 1  # straight to the endpoint this time
    assert tls_emulator.opted_out(SENDER) == {NUMBER}
