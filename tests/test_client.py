"""The opt-out client against the ACS emulator over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable

import pytest
from azure.core.credentials import AccessToken

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azure_standins._server import JsonHandler, LocalServer
from optouts.domain.operations import Operation
from optouts.providers.acs import (
    AcsAuthenticationError,
    AcsBadRequestError,
    AcsThrottledError,
    AcsUnavailableError,
    InvalidConnectionStringError,
    OptOutsClient,
    StaticAccessKey,
    parse_connection_string,
)
from optouts.providers.base import RecipientOutcome

from .conftest import SENDER, fast_client


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+1425555{n:04d}" for n in range(start, start + count)]


def calls(emulator: AcsEmulator) -> int:
    return emulator.stats["total_calls"]


@pytest.mark.parametrize(("count", "expected_calls"), [(0, 0), (1, 1), (100, 1), (101, 2), (250, 3)])
def test_chunks_of_at_most_100(emulator: AcsEmulator, client: OptOutsClient, count: int, expected_calls: int) -> None:
    recipients = numbers(count)
    results = client.add(SENDER, recipients)
    assert [r.to for r in results] == recipients
    assert all(r.outcome is RecipientOutcome.SUCCEEDED and r.status_code == 200 for r in results)
    assert calls(emulator) == expected_calls
    assert emulator.opted_out(SENDER) == set(recipients)


def test_duplicates_are_sent_once_and_reported_for_every_occurrence(
    emulator: AcsEmulator, client: OptOutsClient
) -> None:
    distinct = numbers(50)
    recipients = distinct * 3
    results = client.check(SENDER, recipients)
    assert [r.to for r in results] == recipients
    assert calls(emulator) == 1
    assert emulator.stats["recipients"]["check"] == 50


def test_check_reports_state_in_input_order(emulator: AcsEmulator, client: OptOutsClient) -> None:
    emulator.seed_opt_outs(SENDER, ["+14255550002", "+14255550004"])
    results = client.check(SENDER, numbers(5))
    assert [r.is_opted_out for r in results] == [False, False, True, False, True]


def test_remove_then_check(emulator: AcsEmulator, client: OptOutsClient) -> None:
    emulator.seed_opt_outs(SENDER, numbers(3))
    client.remove(SENDER, numbers(2))
    assert emulator.opted_out(SENDER) == {"+14255550002"}


def test_per_recipient_400_is_final(emulator: AcsEmulator, client: OptOutsClient) -> None:
    results = client.add(SENDER, ["+14255550100", "12345"])
    assert results[0].outcome is RecipientOutcome.SUCCEEDED
    assert (results[1].outcome, results[1].status_code) == (RecipientOutcome.REJECTED, 400)
    assert results[1].error_message
    assert calls(emulator) == 1


def test_concurrency_is_bounded(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(latency_seconds=0.05)
    with fast_client(emulator.connection_string, max_concurrency=3) as client:
        results = client.add(SENDER, numbers(2_000))
    assert all(r.succeeded for r in results)
    assert calls(emulator) == 20
    assert 1 < emulator.stats["max_concurrent"] <= 3


def test_whole_call_throttling_is_retried_then_typed(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=0.01)
    with fast_client(emulator.connection_string, retry_total=2) as client:
        with pytest.raises(AcsThrottledError) as raised:
            client.remove(SENDER, numbers(3))
    assert raised.value.retry_after is not None
    assert calls(emulator) == 3


def test_whole_call_5xx_is_retried_then_typed(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(server_error_rate=1.0, server_error_status=503)
    with fast_client(emulator.connection_string, retry_total=2) as client:
        with pytest.raises(AcsUnavailableError) as raised:
            client.add(SENDER, numbers(3))
    assert raised.value.status_code == 503
    assert calls(emulator) == 3


def test_transient_faults_recover_through_retries(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(throttle_rate=0.3, server_error_rate=0.2, recipient_error_rate=0.3,
                                  retry_after_seconds=0.01, seed=7)
    with fast_client(emulator.connection_string, retry_total=8, recipient_retry_rounds=8) as client:
        results = client.add(SENDER, numbers(500))
    assert [r.to for r in results] == numbers(500)
    assert all(r.outcome is RecipientOutcome.SUCCEEDED for r in results)
    assert emulator.opted_out(SENDER) == set(numbers(500))


def test_persistent_per_recipient_errors_end_failed_after_bounded_rounds(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=1.0)
    with fast_client(emulator.connection_string, recipient_retry_rounds=2) as client:
        results = client.add(SENDER, numbers(150))
    assert all(r.outcome is RecipientOutcome.FAILED and r.status_code == 500 for r in results)
    assert calls(emulator) == 2 * 3  # two chunks, each tried once plus two rounds
    assert emulator.opted_out(SENDER) == set()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_per_recipient_transient_statuses_are_retried_then_reported_failed(
    emulator: AcsEmulator, status: int
) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=1.0, recipient_error_statuses=(status,))
    with fast_client(emulator.connection_string, recipient_retry_rounds=2) as client:
        results = client.add(SENDER, numbers(3))
    assert [(r.outcome, r.status_code) for r in results] == [(RecipientOutcome.FAILED, status)] * 3
    assert all(r.error_message for r in results)
    assert calls(emulator) == 3  # the first call and two retry rounds


def test_per_recipient_transient_statuses_recover_in_later_rounds(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=0.5, recipient_error_statuses=(408, 429, 502), seed=4)
    with fast_client(emulator.connection_string, recipient_retry_rounds=10) as client:
        results = client.add(SENDER, numbers(40))
    assert all(r.outcome is RecipientOutcome.SUCCEEDED for r in results)
    assert emulator.opted_out(SENDER) == set(numbers(40))
    assert emulator.stats["recipients"]["add"] > 40  # some were really asked again


@pytest.mark.parametrize("status", [400, 404, 409])
def test_per_recipient_client_errors_are_final(emulator: AcsEmulator, status: int) -> None:
    sent: list[list[str]] = []

    def answer_with(method: str, target: str, headers: object, body: bytes) -> tuple:
        recipients = [item["to"] for item in json.loads(body)["recipients"]]
        sent.append(recipients)
        return 200, {}, {"value": [{"to": to, "httpStatusCode": status, "errorMessage": "no"} for to in recipients]}

    emulator.handle = answer_with  # type: ignore[method-assign]
    with fast_client(emulator.connection_string, recipient_retry_rounds=2) as client:
        results = client.add(SENDER, numbers(2))
    assert [(r.outcome, r.status_code) for r in results] == [(RecipientOutcome.REJECTED, status)] * 2
    assert len(sent) == 1


def recording_failures(emulator: AcsEmulator, fail_whole_call: Callable[[list[str], int], bool]) -> list[list[str]]:
    """Wrap the emulator so each call's recipients are recorded, and the calls for which
    `fail_whole_call(recipients, times_these_were_sent_before)` holds are answered 503."""
    sent: list[list[str]] = []
    real_handle = emulator.handle

    def handle(method: str, target: str, headers: object, body: bytes) -> tuple:
        recipients = [item["to"] for item in json.loads(body)["recipients"]]
        earlier = sum(1 for previous in sent if previous == recipients)
        sent.append(recipients)
        if fail_whole_call(recipients, earlier):
            return 503, {}, {"error": {"code": "ServiceUnavailable", "message": "injected by the test"}}
        return real_handle(method, target, headers, body)  # type: ignore[arg-type]

    emulator.handle = handle  # type: ignore[method-assign]
    return sent


def test_retry_rounds_do_not_resend_chunks_that_failed_as_a_whole(emulator: AcsEmulator) -> None:
    first_chunk, second_chunk = numbers(100), numbers(50, start=100)
    # Every recipient the emulator itself answers fails per recipient; the first chunk's call fails whole.
    emulator.faults = FaultConfig(recipient_error_rate=1.0)
    sent = recording_failures(emulator, lambda recipients, _: recipients[0] == first_chunk[0])
    with fast_client(emulator.connection_string, retry_total=1, recipient_retry_rounds=2, max_concurrency=1) as client:
        results = client.add(SENDER, first_chunk + second_chunk)
    assert [r.status_code for r in results] == [503] * 100 + [500] * 50
    assert all(r.outcome is RecipientOutcome.FAILED for r in results)
    assert sent.count(first_chunk) == 2  # the retry policy's two attempts, and no retry round
    assert sent.count(second_chunk) == 3  # the first call and two rounds
    assert len(sent) == 5


def test_a_retry_round_that_fails_as_a_whole_ends_the_rounds_for_its_recipients(emulator: AcsEmulator) -> None:
    chunk = numbers(50)
    emulator.faults = FaultConfig(recipient_error_rate=1.0)
    sent = recording_failures(emulator, lambda _, earlier: earlier == 1)  # the first retry round's call
    with fast_client(emulator.connection_string, retry_total=0, recipient_retry_rounds=3) as client:
        results = client.add(SENDER, chunk)
    assert all(r.outcome is RecipientOutcome.FAILED and r.status_code == 503 for r in results)
    assert sent == [chunk, chunk]


def test_every_recipient_gets_a_definite_outcome_under_mixed_faults(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(throttle_rate=0.2, server_error_rate=0.2, recipient_error_rate=0.5,
                                  retry_after_seconds=0.01, seed=3)
    with fast_client(emulator.connection_string, retry_total=1, recipient_retry_rounds=1) as client:
        try:
            results = client.add(SENDER, numbers(1_000) + ["bogus"])
        except (AcsThrottledError, AcsUnavailableError):
            pytest.fail("some chunks got through, so the operation must report per recipient")
    assert len(results) == 1_001
    # Transient faults only: nothing but the malformed number may be rejected, and the seed
    # makes some numbers get through and some run out of rounds.
    assert {r.outcome for r in results[:-1]} == {RecipientOutcome.SUCCEEDED, RecipientOutcome.FAILED}
    for result in results[:-1]:
        if result.outcome is RecipientOutcome.FAILED:
            assert result.status_code in (429, 500, 503), result
        else:
            assert result.status_code == 200, result
    bogus = results[-1]
    assert bogus.outcome is RecipientOutcome.REJECTED or (
        bogus.outcome is RecipientOutcome.FAILED and bogus.status_code in (429, 503)  # its whole chunk failed
    )
    opted_out = emulator.opted_out(SENDER)
    for result in results[:-1]:
        assert (result.to in opted_out) == (result.outcome is RecipientOutcome.SUCCEEDED)


def test_wrong_key_is_an_authentication_error_without_the_key(emulator: AcsEmulator, caplog: pytest.LogCaptureFixture) -> None:
    wrong_key = base64.b64encode(b"not-the-emulator-key-at-all-1234").decode()
    caplog.set_level(logging.DEBUG)
    with fast_client(f"endpoint={emulator.endpoint}/;accesskey={wrong_key}") as client:
        with pytest.raises(AcsAuthenticationError) as raised:
            client.add(SENDER, numbers(250))
    assert wrong_key not in str(raised.value)
    assert wrong_key not in caplog.text
    assert calls(emulator) <= 3  # no retry storm: at most the chunks already in flight


def test_unknown_sender_is_an_authentication_error(emulator: AcsEmulator, client: OptOutsClient) -> None:
    with pytest.raises(AcsAuthenticationError):
        client.add("+18005559999", numbers(1))


def test_rotated_key_is_picked_up_by_updating_the_credential(emulator: AcsEmulator) -> None:
    endpoint, key = parse_connection_string(emulator.connection_string)
    credential = StaticAccessKey(key)
    with OptOutsClient(endpoint, credential) as client:
        assert client.add(SENDER, numbers(1))[0].succeeded
        new_key = emulator.rotate_access_key()
        with pytest.raises(AcsAuthenticationError):
            client.add(SENDER, numbers(1))
        credential.update(new_key)
        assert client.add(SENDER, numbers(1))[0].succeeded


class _FixedToken:
    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, 4_102_444_800)


def test_bearer_token_over_http_only_when_allowed(emulator: AcsEmulator) -> None:
    emulator.bearer_tokens.add("token-for-tests")
    credential = _FixedToken("token-for-tests")
    with pytest.raises(ValueError):
        OptOutsClient(emulator.endpoint, credential)
    with OptOutsClient(emulator.endpoint, credential, allow_insecure_bearer=True) as client:
        assert client.add(SENDER, numbers(1))[0].succeeded
    assert credential.scopes[0] == ("https://communication.azure.com//.default",)


def test_rejected_bearer_token(emulator: AcsEmulator) -> None:
    with OptOutsClient(emulator.endpoint, _FixedToken("nope"), allow_insecure_bearer=True) as client:
        with pytest.raises(AcsAuthenticationError):
            client.add(SENDER, numbers(1))


def test_unknown_api_version_is_a_bad_request(emulator: AcsEmulator) -> None:
    with fast_client(emulator.connection_string, api_version="1999-01-01") as client:
        with pytest.raises(AcsBadRequestError):
            client.add(SENDER, numbers(1))


def test_closed_port_is_unavailable_within_the_budget() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = base64.b64encode(b"k" * 32).decode()
    with fast_client(f"endpoint=http://127.0.0.1:{port}/;accesskey={key}", retry_total=2) as client:
        with pytest.raises(AcsUnavailableError) as raised:
            client.add(SENDER, numbers(1))
    assert raised.value.status_code is None


def test_hanging_service_is_bounded_by_the_time_budget(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(hang_seconds=5)
    with fast_client(emulator.connection_string, time_budget=1.0) as client:
        with pytest.raises(AcsUnavailableError):
            client.check(SENDER, numbers(1))


@pytest.mark.parametrize(
    "connection_string",
    [
        "",
        "endpoint=https://x.communication.azure.com/",
        "accesskey=cHc=",
        "endpoint=ftp://x/;accesskey=cHc=",
        "endpoint=https://x/;accesskey=not base64!",
        "garbage",
    ],
)
def test_bad_connection_strings(connection_string: str) -> None:
    with pytest.raises(InvalidConnectionStringError) as raised:
        OptOutsClient.from_connection_string(connection_string)
    assert "not base64!" not in str(raised.value)


def test_connection_string_endpoint_keeps_port() -> None:
    endpoint, key = parse_connection_string("Endpoint=http://127.0.0.1:8089/;AccessKey=cHc=")
    assert (endpoint, key) == ("http://127.0.0.1:8089", "cHc=")


class _PartialAnswers(JsonHandler):
    """An ACS stand-in whose answers mention only the first recipient asked about,
    among items that are not recipients at all."""

    def do_POST(self) -> None:
        asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["recipients"]
        self.server.owner.append([r["to"] for r in asked])  # type: ignore[attr-defined]
        first = asked[0]["to"]
        self.send_json(200, {"value": [
            {"to": first, "httpStatusCode": 200},
            "not an object",
            {"to": ["+14255550199"], "httpStatusCode": 200},  # not a string (and unhashable)
            {"to": "+19995550100", "httpStatusCode": 200},  # never asked about
        ]})


def test_recipients_missing_from_an_answer_fail_as_transient_and_are_asked_again() -> None:
    calls: list[list[str]] = []
    server = LocalServer(_PartialAnswers, owner=calls, tls=False)
    key = base64.b64encode(b"k" * 32).decode()
    try:
        with fast_client(f"endpoint={server.base_url}/;accesskey={key}", recipient_retry_rounds=1) as client:
            results = client.remove(SENDER, ["+14255550101", "+14255550102", "+14255550103"])
    finally:
        server.close()
    # The re-try round asked again about exactly the two the first answer left out, and
    # its answer (again mentioning only the first asked) settled one of them.
    assert calls == [["+14255550101", "+14255550102", "+14255550103"], ["+14255550102", "+14255550103"]]
    assert [r.outcome for r in results] == [RecipientOutcome.SUCCEEDED] * 2 + [RecipientOutcome.FAILED]
    assert results[2].status_code == 502
    assert "did not mention" in (results[2].error_message or "")


class _RecordingAcs(JsonHandler):
    """An ACS stand-in that records each call's headers and body and opts nobody out."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.owner.append((dict(self.headers), body))  # type: ignore[attr-defined]
        asked = json.loads(body)["recipients"]
        self.send_json(200, {"value": [{"to": r["to"], "httpStatusCode": 200, "isOptedOut": False} for r in asked]})


def _with_recording_acs(action: Callable[[OptOutsClient], object]) -> list[tuple[dict[str, str], bytes]]:
    seen: list[tuple[dict[str, str], bytes]] = []
    server = LocalServer(_RecordingAcs, owner=seen, tls=False)
    key = base64.b64encode(b"k" * 32).decode()
    try:
        with fast_client(f"endpoint={server.base_url}/;accesskey={key}") as client:
            action(client)
    finally:
        server.close()
    return seen


def test_every_call_carries_its_own_random_request_id() -> None:
    seen = _with_recording_acs(lambda client: client.check(SENDER, numbers(250)))
    ids = [headers["x-ms-client-request-id"] for headers, _ in seen]
    assert len(ids) == 3 and len(set(ids)) == 3
    # Version 4: random, so it reveals neither when nor on which host it was made (uuid1 does).
    assert all(uuid.UUID(request_id).version == 4 for request_id in ids)
    assert {headers["Content-Length"] for headers, _ in seen} == {str(len(body)) for _, body in seen}


def test_text_that_utf8_cannot_carry_still_reaches_acs_as_escaped_json() -> None:
    """A library caller may pass any str; a lone surrogate is sent as a JSON escape, not a crash."""
    seen = _with_recording_acs(lambda client: client.check("+1800555\ud800", ["+14255550100"]))
    (_, body), = seen
    assert body.isascii() and b"\\ud800" in body
    assert body == b'{"from":"+1800555\\ud800","recipients":[{"to":"+14255550100"}]}'  # compact, as orjson writes
    assert json.loads(body)["from"] == "+1800555\ud800"


def test_every_call_says_it_sends_and_accepts_json() -> None:
    seen = _with_recording_acs(lambda client: client.add(SENDER, numbers(1)))
    ((headers, _),) = seen
    assert (headers["Content-Type"], headers["Accept"]) == ("application/json", "application/json")


def test_the_time_budget_of_one_call_is_the_one_spent(emulator: AcsEmulator, client: OptOutsClient) -> None:
    for send in (client.add, client.remove, client.check):
        with pytest.raises(AcsUnavailableError):  # spent before anything was sent
            send(SENDER, numbers(1), time_budget=0)
    assert calls(emulator) == 0
    assert client.run(Operation.ADD, SENDER, numbers(2), time_budget=0.5)[1].succeeded  # half a second is enough
    with pytest.raises(AcsUnavailableError):
        client.run(Operation.CHECK, SENDER, numbers(1), time_budget=0)
    assert calls(emulator) == 1 and emulator.opted_out(SENDER) == set(numbers(2))


class _RefusingAcs(JsonHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_json(400, {"error": {"code": "InvalidApiVersion", "message": "that api-version is unknown"}})


def test_a_call_acs_refuses_names_acss_own_error() -> None:
    server = LocalServer(_RefusingAcs, owner=[], tls=False)
    key = base64.b64encode(b"k" * 32).decode()
    try:
        with fast_client(f"endpoint={server.base_url}/;accesskey={key}") as client:
            with pytest.raises(AcsBadRequestError) as raised:
                client.add(SENDER, numbers(1))
    finally:
        server.close()
    assert str(raised.value) == "ACS rejected the call (400): InvalidApiVersion: that api-version is unknown"


class _AnsweringAcs(JsonHandler):
    """An ACS stand-in answering every call with the (status, body) its owner holds."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.server.owner  # type: ignore[attr-defined]
        self.send_json(status, body)


@pytest.mark.parametrize(("status", "expected"), [
    (401, (AcsAuthenticationError, "ACS rejected the gateway's credentials (401): Denied: no")),
    (403, (AcsAuthenticationError, "ACS rejected the gateway's credentials (403): Denied: no")),
    (404, (AcsBadRequestError, "ACS rejected the call (404): Denied: no")),
])
def test_each_refusal_is_typed_and_names_acss_error(status: int, expected: tuple) -> None:
    server = LocalServer(_AnsweringAcs, owner=(status, {"error": {"code": "Denied", "message": "no"}}), tls=False)
    key = base64.b64encode(b"k" * 32).decode()
    try:
        with fast_client(f"endpoint={server.base_url}/;accesskey={key}", retry_total=0) as client:
            with pytest.raises(expected[0]) as raised:
                client.add(SENDER, numbers(1))
    finally:
        server.close()
    assert str(raised.value) == expected[1]


def test_a_transient_answer_fails_the_chunk_with_acss_error_text() -> None:
    server = LocalServer(_AnsweringAcs, owner=(503, {"error": {"code": "Busy", "message": "later"}}), tls=False)
    key = base64.b64encode(b"k" * 32).decode()
    try:
        with fast_client(f"endpoint={server.base_url}/;accesskey={key}", retry_total=0) as client:
            answer = client._send_chunk(Operation.ADD, SENDER, numbers(1), time.monotonic() + 10)
    finally:
        server.close()
    assert answer.results[numbers(1)[0]].error_message == "ACS answered 503: Busy: later"
    assert (answer.transient_failure, answer.status_code) == (True, 503)


def test_the_client_takes_proxies_and_ca_bundles_from_the_environment(client: OptOutsClient) -> None:
    assert client._pipeline._transport.session.trust_env is True  # type: ignore[attr-defined]
