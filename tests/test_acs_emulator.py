"""The ACS emulator over raw HTTP (`http.client`), independent of the project's client."""

from __future__ import annotations

import ast
import base64
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devtools.acs_emulator import AcsEmulator, FaultConfig, auth, running_emulator
from optouts.providers.acs import signing

SENDER = "+18005550100"
NUMBER = "+14255550100"
OTHER_NUMBER = "+14255550101"
Answer = tuple[int, dict[str, str], Any]


def signed_headers(
    emulator: Any,  # an AcsEmulator, or anything with .port and .access_key
    path: str,
    body: bytes,
    *,
    key: str | None = None,
    date: str | None = None,
    date_header: str = "x-ms-date",
    signed_host: str | None = None,
) -> dict[str, str]:
    date = date or formatdate(usegmt=True)
    host = signed_host or f"127.0.0.1:{emulator.port}"
    body_hash = signing.content_sha256(body)
    text = signing.string_to_sign("POST", path, date, host, body_hash)
    signature = signing.signature(base64.b64decode(key or emulator.access_key), text)
    return {
        "Content-Type": "application/json",
        date_header: date,
        "x-ms-content-sha256": body_hash,
        "Authorization": signing.authorization_header(signature),
    }


def post(
    emulator: Any,
    operation: str,
    payload: Any,
    *,
    api_version: str | None = "2026-01-23",
    tamper_body: bytes | None = None,
    authorization: str | None = None,
    drop_header: str | None = None,
    connection: http.client.HTTPConnection | None = None,
    extra_headers: dict[str, str] | None = None,
    **signing_options: Any,
) -> Answer:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    path = f"/sms/optouts:{operation}" + (f"?api-version={api_version}" if api_version else "")
    headers = {**signed_headers(emulator, path, body, **signing_options), **(extra_headers or {})}
    if authorization is not None:
        headers["Authorization"] = authorization
    if drop_header is not None:
        del headers[drop_header]
    sent = tamper_body if tamper_body is not None else body
    return request(emulator.port, "POST", path, sent, headers, connection=connection)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            *, connection: http.client.HTTPConnection | None = None) -> Answer:
    opened = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        opened.request(method, path, body=body, headers=headers or {})
        response = opened.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else None
    finally:
        if connection is None:
            opened.close()


def recipients(*numbers: str, sender: str = SENDER) -> dict[str, Any]:
    return {"from": sender, "recipients": [{"to": n} for n in numbers]}


def statuses(answer: Answer) -> list[int]:
    return [item["httpStatusCode"] for item in answer[2]["value"]]


@pytest.fixture
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER}) as emulator:
        yield emulator


# -- the three operations -------------------------------------------------------------------


def test_add_check_remove_change_state(acs: AcsEmulator) -> None:
    status, headers, body = post(acs, "add", recipients(NUMBER, OTHER_NUMBER))
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["x-ms-request-id"]
    assert body == {"value": [{"to": NUMBER, "httpStatusCode": 200}, {"to": OTHER_NUMBER, "httpStatusCode": 200}]}
    assert acs.opted_out(SENDER) == {NUMBER, OTHER_NUMBER}
    assert post(acs, "remove", recipients(NUMBER))[2] == {"value": [{"to": NUMBER, "httpStatusCode": 200}]}
    _, _, body = post(acs, "check", recipients(NUMBER, OTHER_NUMBER))
    assert body["value"] == [{"to": NUMBER, "httpStatusCode": 200, "isOptedOut": False},
                             {"to": OTHER_NUMBER, "httpStatusCode": 200, "isOptedOut": True}]
    assert acs.opted_out(SENDER) == {OTHER_NUMBER}


def test_lists_are_per_sender_and_seedable() -> None:
    with running_emulator() as emulator:  # no owned senders: any sender is accepted
        emulator.seed_opt_outs("+18005550111", [NUMBER])
        assert statuses(post(emulator, "add", recipients(OTHER_NUMBER, sender="+18005550122"))) == [200]
        _, _, body = post(emulator, "check", recipients(NUMBER, OTHER_NUMBER, sender="+18005550111"))
        assert [item["isOptedOut"] for item in body["value"]] == [True, False]
        assert emulator.opted_out("+18005550122") == {OTHER_NUMBER}


def test_answers_keep_request_order_and_duplicates(acs: AcsEmulator) -> None:
    numbers = [f"+1425555{n:04d}" for n in (7, 3, 9, 3)]
    _, _, body = post(acs, "add", recipients(*numbers))
    assert [item["to"] for item in body["value"]] == numbers


def test_non_e164_recipient_gets_per_recipient_400_and_no_state(acs: AcsEmulator) -> None:
    _, _, body = post(acs, "add", recipients("4255550100", NUMBER, "+04255550100", "+1"))
    assert body["value"][0] == {"to": "4255550100", "httpStatusCode": 400,
                                "errorMessage": "Invalid recipient phone number format"}
    assert [item["httpStatusCode"] for item in body["value"]] == [400, 200, 400, 400]
    assert acs.opted_out(SENDER) == {NUMBER}
    _, _, body = post(acs, "check", recipients("4255550100"))
    assert "isOptedOut" not in body["value"][0]


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"key": base64.b64encode(b"wrong" * 8).decode()}, "signature"),
        ({"date": "Wed, 13 Apr 2022 18:09:12 GMT"}, "current time"),
        ({"date": formatdate(time.time() + 3600, usegmt=True)}, "current time"),
        ({"date": "yesterday"}, "RFC 1123"),
        ({"tamper_body": json.dumps(recipients("+14255550199")).encode()}, "x-ms-content-sha256"),
        ({"signed_host": "127.0.0.1"}, "signature"),  # the port is part of the signed host
        ({"authorization": "HMAC-SHA256 SignedHeaders=host&Signature=abc"}, "SignedHeaders"),
        ({"authorization": f"HMAC-SHA256 SignedHeaders={signing.SIGNED_HEADERS}"}, "Signature"),
        ({"authorization": "Basic abc"}, "Authorization"),
        ({"drop_header": "Authorization"}, "Authorization"),
        ({"drop_header": "x-ms-date"}, "x-ms-date"),
        ({"drop_header": "x-ms-content-sha256"}, "x-ms-content-sha256"),
    ],
)
def test_authentication_failures_are_401_denied(acs: AcsEmulator, change: dict[str, Any], reason: str) -> None:
    status, _, body = post(acs, "add", recipients(NUMBER), **change)
    assert status == 401
    assert body["error"]["code"] == "Denied"
    assert reason in body["error"]["message"]
    assert acs.access_key not in json.dumps(body)
    assert acs.opted_out(SENDER) == set()


# The published ACS vectors (tests/test_signing.py checks the client against them too).
_VECTOR_KEY = base64.b64decode("pw==")
_VECTOR_DATE = "Wed, 13 Apr 2022 18:09:12 GMT"
_VECTOR_HEADERS = {"Host": "contoso.communicationservices.azure.com", "x-ms-date": _VECTOR_DATE,
                   "x-ms-content-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}
_VECTORS = [("/", "88MDmJhUR3m5QhFxb8ztShsSwlGrg7g/6XPnWf7QEO4="),
            ("/testPath?testQuery=yes", "il99+rd6V5O136roX/zVePCNle78HmvC4B7tu9zRH3I=")]


@pytest.mark.parametrize(("target", "published_signature"), _VECTORS)
def test_emulator_verifier_accepts_the_published_vectors_and_nothing_else(
    target: str, published_signature: str
) -> None:
    def verify(signature: str, *, method: str = "GET", signed_target: str = target) -> None:
        auth.authenticate(
            method=method, target=signed_target, body=b"", decoded_key=_VECTOR_KEY, bearer_tokens=(),
            headers={**_VECTOR_HEADERS,
                     "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"
                                      f"&Signature={signature}"},
            clock_skew_seconds=10 * 365 * 24 * 3600,  # the vectors are from 2022
        )

    verify(published_signature)
    flipped = ("A" if published_signature[0] != "A" else "B") + published_signature[1:]
    for wrong in (lambda: verify(flipped), lambda: verify(published_signature, method="POST"),
                  lambda: verify(published_signature, signed_target=target + "x")):
        with pytest.raises(auth.Denied, match="signature is not valid"):
            wrong()


def test_emulator_verifier_shares_no_code_with_the_client_signer() -> None:
    """A verifier built on optouts.providers.acs.signing would accept whatever that module gets wrong."""
    tree = ast.parse(Path(auth.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.startswith(("optouts", "."))}, imported


def test_date_header_is_accepted_when_x_ms_date_is_absent(acs: AcsEmulator) -> None:
    assert post(acs, "add", recipients(NUMBER), date_header="Date")[0] == 200


def test_clock_skew_is_configurable() -> None:
    with AcsEmulator(clock_skew_seconds=7200) as emulator:
        two_minutes_ago = formatdate(time.time() - 120, usegmt=True)
        assert post(emulator, "check", recipients(NUMBER), date=two_minutes_ago)[0] == 200
        emulator.clock_skew_seconds = 30
        assert post(emulator, "check", recipients(NUMBER), date=two_minutes_ago)[0] == 401


def test_bearer_tokens_can_change_at_runtime(acs: AcsEmulator) -> None:
    acs.bearer_tokens.add("good-token")
    assert post(acs, "check", recipients(NUMBER), authorization="Bearer good-token")[0] == 200
    status, _, body = post(acs, "check", recipients(NUMBER), authorization="Bearer bad-token")
    assert (status, body["error"]["code"]) == (401, "Denied")
    acs.bearer_tokens.discard("good-token")
    assert post(acs, "check", recipients(NUMBER), authorization="Bearer good-token")[0] == 401


def test_rotated_key_replaces_the_old_one(acs: AcsEmulator) -> None:
    old = acs.access_key
    new = acs.rotate_access_key()
    assert new != old and acs.access_key == new
    assert new in acs.connection_string
    assert post(acs, "check", recipients(NUMBER), key=old)[0] == 401
    assert post(acs, "check", recipients(NUMBER), key=new)[0] == 200
    chosen = base64.b64encode(b"c" * 32).decode()
    assert acs.rotate_access_key(chosen) == chosen
    assert post(acs, "check", recipients(NUMBER), key=chosen)[0] == 200


def test_access_keys_must_be_base64(acs: AcsEmulator) -> None:
    with pytest.raises(ValueError, match="base64"):
        acs.rotate_access_key("not base64!")
    with pytest.raises(ValueError, match="base64"):
        AcsEmulator(access_key="not base64!")


def test_unknown_sender_is_401_only_when_senders_are_configured(acs: AcsEmulator) -> None:
    status, _, body = post(acs, "add", recipients(NUMBER, sender="+18005559999"))
    assert (status, body["error"]["code"]) == (401, "Denied")
    assert post(acs, "add", recipients(NUMBER))[0] == 200


# -- routing, api-version, body validation, framing ---------------------------------------------


@pytest.mark.parametrize(("version", "code"), [(None, "ApiVersionUnspecified"), ("2020-01-01", "UnsupportedApiVersion")])
def test_api_version_errors(acs: AcsEmulator, version: str | None, code: str) -> None:
    status, _, body = post(acs, "add", recipients(NUMBER), api_version=version)
    assert (status, body["error"]["code"]) == (400, code)


def test_preview_api_version_and_configurable_list() -> None:
    with AcsEmulator() as emulator:
        assert post(emulator, "check", recipients(NUMBER), api_version="2025-05-29-preview")[0] == 200
    with AcsEmulator(api_versions=["2030-01-01"]) as emulator:
        assert post(emulator, "check", recipients(NUMBER), api_version="2030-01-01")[0] == 200
        assert post(emulator, "check", recipients(NUMBER))[0] == 400


def test_unknown_paths_and_methods(acs: AcsEmulator) -> None:
    for path in ("/sms/optouts:list?api-version=2026-01-23", "/", "/sms/optouts"):
        status, _, body = request(acs.port, "POST", path, b"{}")
        assert (status, body["error"]["code"]) == (404, "NotFound")
    status, headers, body = request(acs.port, "GET", "/sms/optouts:check?api-version=2026-01-23")
    assert (status, headers["Allow"]) == (405, "POST")
    assert request(acs.port, "HEAD", "/sms/optouts:check")[0] == 405


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (recipients(), "Recipients"),
        (recipients(*[f"+1425555{n:04d}" for n in range(101)]), "Recipients"),
        (b"{not json", "$"),
        (b"", "$"),
        ({"recipients": [{"to": NUMBER}]}, "From"),
        ([NUMBER], "From"),
        ({"from": SENDER, "recipients": NUMBER}, "Recipients"),
        ({"from": SENDER, "recipients": [{"to": 14255550100}]}, "Recipients"),
    ],
)
def test_body_validation_is_400_problem(acs: AcsEmulator, payload: Any, field: str) -> None:
    status, _, body = post(acs, "add", payload)
    assert status == 400
    assert body["type"] == "https://tools.ietf.org/html/rfc9110#section-15.5.1"
    assert (body["title"], body["status"]) == ("One or more validation errors occurred.", 400)
    assert list(body["errors"]) == [field] and body["errors"][field]
    version, trace, span, flags = body["traceId"].split("-")
    assert (version, len(trace), len(span), flags) == ("00", 32, 16, "00")


def test_exactly_100_recipients_are_accepted(acs: AcsEmulator) -> None:
    answer = post(acs, "add", recipients(*[f"+1425555{n:04d}" for n in range(100)]))
    assert statuses(answer) == [200] * 100


def raw_exchange(port: int, head: str, body: bytes = b"") -> bytes:
    """Send bytes as-is and read until the server closes; for framing a client library would not send."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.sendall(head.encode("ascii") + body)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        ("Content-Length: abc\r\n", b"400"),
        ("Content-Length: 2000000\r\n", b"413"),
        ("Transfer-Encoding: chunked\r\n", b"411"),
    ],
)
def test_bad_framing_is_answered_and_the_connection_closed(acs: AcsEmulator, framing: str, status: bytes) -> None:
    head = f"POST /sms/optouts:add?api-version=2026-01-23 HTTP/1.1\r\nHost: x\r\n{framing}\r\n"
    answer = raw_exchange(acs.port, head)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert b"Connection: close" in answer


# -- fault injection ---------------------------------------------------------------------------


def test_throttling_and_server_errors(acs: AcsEmulator) -> None:
    acs.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=2.5)
    status, headers, body = post(acs, "add", recipients(NUMBER))
    assert (status, headers["Retry-After"], headers["retry-after-ms"]) == (429, "3", "2500")
    assert body["error"]["code"] == "TooManyRequests"
    acs.faults = FaultConfig(server_error_rate=1.0, server_error_status=502)
    status, _, body = post(acs, "add", recipients(NUMBER))
    assert (status, body["error"]["code"]) == (502, "ServiceUnavailable")
    assert acs.opted_out(SENDER) == set()


def test_fault_order_auth_then_throttle_then_server_error(acs: AcsEmulator) -> None:
    acs.faults = FaultConfig(throttle_rate=1.0, server_error_rate=1.0)
    assert post(acs, "add", recipients(NUMBER), key=base64.b64encode(b"x" * 32).decode())[0] == 401
    assert post(acs, "add", recipients(NUMBER))[0] == 429
    acs.faults.throttle_rate = 0.0  # fields may be changed in place too
    assert post(acs, "add", recipients(NUMBER))[0] == 503


def test_per_recipient_errors_do_not_change_state(acs: AcsEmulator) -> None:
    acs.seed_opt_outs(SENDER, [OTHER_NUMBER])
    acs.faults = FaultConfig(recipient_error_rate=1.0)
    answer = post(acs, "add", recipients(NUMBER, "123"))
    assert answer[2]["value"][0] == {"to": NUMBER, "httpStatusCode": 500, "errorMessage": "Internal Server Error"}
    assert statuses(answer) == [500, 400]  # a malformed number is still a 400
    assert statuses(post(acs, "remove", recipients(OTHER_NUMBER))) == [500]
    assert acs.opted_out(SENDER) == {OTHER_NUMBER}


@pytest.mark.parametrize(
    ("status", "message"),
    [(408, "Request Timeout"), (429, "Too Many Requests"), (502, "Bad Gateway"), (503, "Service Unavailable")],
)
def test_per_recipient_statuses_other_than_500(acs: AcsEmulator, status: int, message: str) -> None:
    acs.seed_opt_outs(SENDER, [OTHER_NUMBER])
    acs.faults = FaultConfig(recipient_error_rate=1.0, recipient_error_statuses=(status,))
    answer = post(acs, "add", recipients(NUMBER, "123"))
    assert answer[0] == 200
    assert answer[2]["value"][0] == {"to": NUMBER, "httpStatusCode": status, "errorMessage": message}
    assert statuses(answer) == [status, 400]
    assert statuses(post(acs, "remove", recipients(OTHER_NUMBER))) == [status]
    check = post(acs, "check", recipients(OTHER_NUMBER))[2]["value"][0]
    assert check["httpStatusCode"] == status and "isOptedOut" not in check
    assert acs.opted_out(SENDER) == {OTHER_NUMBER}


def test_per_recipient_statuses_are_drawn_from_the_configured_set_by_seed() -> None:
    def drawn(seed: int) -> list[int]:
        faults = FaultConfig(recipient_error_rate=0.7, recipient_error_statuses=(408, 429, 502), seed=seed)
        with AcsEmulator(faults=faults) as emulator:
            return statuses(post(emulator, "check", recipients(*(f"+1425555{n:04d}" for n in range(60)))))

    first = drawn(5)
    assert first == drawn(5)
    assert set(first) == {200, 408, 429, 502}
    assert first != drawn(6)


def test_faults_are_deterministic_for_a_seed() -> None:
    def outcomes() -> list[int]:
        seen: list[int] = []
        with AcsEmulator(faults=FaultConfig(throttle_rate=0.5, recipient_error_rate=0.5, seed=42)) as emulator:
            for _ in range(10):
                answer = post(emulator, "check", recipients(NUMBER, OTHER_NUMBER))
                seen += [answer[0]] + (statuses(answer) if answer[0] == 200 else [])
        return seen

    first = outcomes()
    assert first == outcomes()
    assert {200, 429, 500} <= set(first)


def test_latency_spikes_are_drawn_at_their_rate(acs: AcsEmulator) -> None:
    acs.faults = FaultConfig(latency_spike_rate=1.0, latency_spike_seconds=120)
    connection = http.client.HTTPConnection("127.0.0.1", acs.port, timeout=0.5)
    with pytest.raises(TimeoutError):
        post(acs, "check", recipients(NUMBER), connection=connection)
    connection.close()
    acs.faults = FaultConfig(latency_spike_rate=0.0, latency_spike_seconds=120)  # never drawn
    assert post(acs, "check", recipients(NUMBER))[0] == 200


def handler_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if "process_request_thread" in thread.name}


def test_a_hanging_call_times_the_client_out_and_stop_cuts_it_short() -> None:
    before = handler_threads()
    emulator = AcsEmulator(faults=FaultConfig(hang_seconds=120)).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=0.5)
        with pytest.raises(TimeoutError):
            post(emulator, "check", recipients(NUMBER), connection=connection)
        connection.close()
        assert emulator.stats["total_calls"] == 1
        assert handler_threads() - before  # the hung call is still being served
    finally:
        stopper = threading.Thread(target=emulator.stop)
        stopper.start()
        stopper.join(timeout=30)
    assert not stopper.is_alive()
    # The hung call's thread ends too (bounded wait), rather than sleeping on for two minutes.
    for thread in handler_threads() - before:
        thread.join(timeout=30)
    assert not handler_threads() - before


def test_fault_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="throttle_rate"):
        FaultConfig(throttle_rate=1.5)
    with pytest.raises(ValueError, match="latency_seconds"):
        FaultConfig(latency_seconds=-1)
    with pytest.raises(ValueError, match="5xx"):
        FaultConfig(server_error_status=429)
    with pytest.raises(ValueError, match="recipient_error_statuses"):
        FaultConfig(recipient_error_statuses=(404,))
    with pytest.raises(ValueError, match="recipient_error_statuses"):
        FaultConfig(recipient_error_statuses=())


# -- persistence, stats, connections, concurrency ------------------------------------------------


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "optouts.json"
    with AcsEmulator(state_file=state) as emulator:
        post(emulator, "add", recipients(NUMBER, OTHER_NUMBER))
        post(emulator, "remove", recipients(OTHER_NUMBER))
    assert json.loads(state.read_text()) == {SENDER: [NUMBER]}
    assert [path.name for path in tmp_path.iterdir()] == ["optouts.json"]  # no temporary file left
    with AcsEmulator(state_file=state) as emulator:
        assert emulator.opted_out(SENDER) == {NUMBER}
        assert post(emulator, "check", recipients(NUMBER))[2]["value"][0]["isOptedOut"] is True


def test_stats_count_calls_statuses_and_recipients(acs: AcsEmulator) -> None:
    post(acs, "add", recipients(NUMBER, OTHER_NUMBER))
    post(acs, "check", recipients(NUMBER))
    post(acs, "check", recipients(NUMBER), api_version=None)
    post(acs, "remove", recipients(NUMBER), key=base64.b64encode(b"y" * 32).decode())
    stats = acs.stats
    assert stats["total_calls"] == 4
    assert stats["by_status"] == {200: 2, 400: 1, 401: 1}
    assert stats["recipients"] == {"add": 2, "remove": 0, "check": 1}
    assert stats["max_concurrent"] == 1
    acs.reset_stats()
    assert acs.stats == {"total_calls": 0, "by_status": {}, "recipients": {"add": 0, "remove": 0, "check": 0},
                         "max_concurrent": 0}


def test_keep_alive_and_stop_drops_kept_alive_connections(acs: AcsEmulator) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", acs.port, timeout=30)
    try:
        for _ in range(3):
            assert post(acs, "check", recipients(NUMBER), connection=connection)[0] == 200
        local_port = connection.sock.getsockname()[1]
        assert post(acs, "check", recipients(NUMBER), connection=connection)[0] == 200
        assert connection.sock.getsockname()[1] == local_port  # one connection served them all
        acs.stop()
        with pytest.raises((http.client.HTTPException, OSError)):
            post(SimpleNamespace(port=local_port, access_key=acs.access_key), "check", recipients(NUMBER),
                 connection=connection)
    finally:
        connection.close()


def test_restart_after_stop(acs: AcsEmulator) -> None:
    acs.stop()
    with pytest.raises(RuntimeError):
        _ = acs.endpoint
    acs.start()
    assert acs.endpoint.startswith("http://127.0.0.1:")
    assert post(acs, "check", recipients(NUMBER))[0] == 200


def test_concurrent_callers_all_succeed(acs: AcsEmulator) -> None:
    # 32 callers connect at the same instant (a burst beyond a small listen backlog),
    # then each sends 20 calls with a little latency so they overlap.
    acs.faults = FaultConfig(latency_seconds=0.01)
    callers, calls_each = 32, 20
    start_together = threading.Barrier(callers, timeout=30)
    results: list[int] = []
    results_lock = threading.Lock()

    def caller() -> None:
        start_together.wait()
        connection = http.client.HTTPConnection("127.0.0.1", acs.port, timeout=30)
        try:
            for _ in range(calls_each):
                status = post(acs, "check", recipients(NUMBER, OTHER_NUMBER), connection=connection)[0]
                with results_lock:
                    results.append(status)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert results == [200] * (callers * calls_each)
    stats = acs.stats
    assert stats["total_calls"] == callers * calls_each and stats["by_status"] == {200: callers * calls_each}
    assert stats["recipients"]["check"] == 2 * callers * calls_each
    assert 1 < stats["max_concurrent"] <= callers


# -- the command line ---------------------------------------------------------------------------


def test_cli_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "cli.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.acs_emulator", "--port", "0", "--owned-sender", SENDER,
         "--state-file", str(state), "--recipient-error-rate", "0", "--seed", "7"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("ACS emulator listening on http://127.0.0.1:")
        name, connection_string = process.stdout.readline().strip().split("=", 1)
        assert name == "ACS_CONNECTION_STRING"
        endpoint = first.rsplit(" ", 1)[1].strip()
        assert connection_string.startswith(f"endpoint={endpoint}/;accesskey=")
        remote = SimpleNamespace(port=int(endpoint.rsplit(":", 1)[1]),
                                 access_key=connection_string.split("accesskey=")[1])
        assert post(remote, "add", recipients(NUMBER))[0] == 200
        assert post(remote, "add", recipients(NUMBER, sender="+18005559999"))[0] == 401
        process.terminate()
        assert process.wait(timeout=30) == 0
        assert process.stdout.read().strip() == "ACS emulator stopped"
        assert json.loads(state.read_text()) == {SENDER: [NUMBER]}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_cli_injects_the_per_recipient_statuses_asked_for() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.acs_emulator", "--port", "0", "--recipient-error-rate", "1",
         "--recipient-error-status", "408", "--recipient-error-status", "502", "--seed", "3"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().rsplit(" ", 1)[1].strip()
        access_key = process.stdout.readline().strip().split("accesskey=")[1]
        remote = SimpleNamespace(port=int(endpoint.rsplit(":", 1)[1]), access_key=access_key)
        answer = post(remote, "add", recipients(*(f"+1425555{n:04d}" for n in range(20))))
        assert set(statuses(answer)) == {408, 502}
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [(["--host", "0.0.0.0"], "loopback"), (["--throttle-rate", "2"], "throttle_rate"),
     (["--access-key", "not base64!"], "base64"),
     (["--recipient-error-status", "404"], "recipient_error_statuses")],
)
def test_cli_refuses_bad_arguments(arguments: list[str], complaint: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devtools.acs_emulator", "--port", "0", *arguments],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert complaint in result.stderr
