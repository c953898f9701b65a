"""How the ACS client reads what ACS answered, in-process and without HTTP: per-recipient results,
error bodies in both of ACS's shapes (bounded and made log-safe), Retry-After headers, the error
raised when every call failed, and the endpoint checks made before anything is sent.
tests/test_client.py covers the same behaviour over HTTP against the emulator."""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError

from optouts.domain.operations import Operation
from optouts.providers.acs import AcsThrottledError, AcsUnavailableError, OptOutsClient, StaticAccessKey
from optouts.providers.acs import client as acs
from optouts.providers.acs.errors import CredentialUnavailableError, InsecureEndpointError
from optouts.providers.base import RecipientOutcome, RecipientResult
from optouts.providers.fanout import ChunkAnswer

KEY = StaticAccessKey(base64.b64encode(b"k" * 32).decode())
A, B, C = "+14255550100", "+14255550101", "+14255550102"


def body(value: object) -> bytes:
    return json.dumps(value).encode()


# -- per-recipient results ---------------------------------------------------------------------------

@pytest.mark.parametrize(("item", "check", "expected"), [
    ({"httpStatusCode": 200}, False, RecipientResult(A, RecipientOutcome.SUCCEEDED, 200)),
    ({"httpStatusCode": 299}, False, RecipientResult(A, RecipientOutcome.SUCCEEDED, 299)),
    ({"httpStatusCode": 200, "isOptedOut": True}, True,
     RecipientResult(A, RecipientOutcome.SUCCEEDED, 200, is_opted_out=True)),
    ({"httpStatusCode": 200, "isOptedOut": False}, True,
     RecipientResult(A, RecipientOutcome.SUCCEEDED, 200, is_opted_out=False)),
    ({"httpStatusCode": 200, "isOptedOut": "yes"}, True,
     RecipientResult(A, RecipientOutcome.FAILED, 502, "ACS's answer lacked isOptedOut", error_code="AcsUnavailable")),
    ({"httpStatusCode": 200}, True,
     RecipientResult(A, RecipientOutcome.FAILED, 502, "ACS's answer lacked isOptedOut", error_code="AcsUnavailable")),
    ({"httpStatusCode": 400, "errorMessage": "Invalid phone number"}, False,
     RecipientResult(A, RecipientOutcome.REJECTED, 400, "Invalid phone number", error_code="RejectedByAcs")),
    ({"httpStatusCode": 300, "errorMessage": "odd"}, False,
     RecipientResult(A, RecipientOutcome.REJECTED, 300, "odd", error_code="RejectedByAcs")),
    ({"httpStatusCode": 499}, False,
     RecipientResult(A, RecipientOutcome.REJECTED, 499, "no details from ACS", error_code="RejectedByAcs")),
    ({"httpStatusCode": 429, "errorMessage": ""}, False,
     RecipientResult(A, RecipientOutcome.FAILED, 429, "no details from ACS", error_code="AcsThrottled")),
    ({"httpStatusCode": 408, "errorMessage": "timeout"}, False,
     RecipientResult(A, RecipientOutcome.FAILED, 408, "timeout", error_code="AcsUnavailable")),
    ({"httpStatusCode": 599, "errorMessage": 5}, False,
     RecipientResult(A, RecipientOutcome.FAILED, 599, "no details from ACS", error_code="AcsUnavailable")),
    ({"httpStatusCode": 501, "errorMessage": "line\nbreak"}, False,
     RecipientResult(A, RecipientOutcome.FAILED, 501, "line\\nbreak", error_code="AcsUnavailable")),
])
def test_each_recipients_answer_becomes_a_result(item: dict, check: bool, expected: RecipientResult) -> None:
    assert acs._recipient_result(A, {"to": A, **item}, check) == expected


@pytest.mark.parametrize("status", [None, "200", 200.0, True, 99, 600, -1])
def test_a_recipient_without_a_valid_status_is_a_transient_502(status: object) -> None:
    assert acs._recipient_result(A, {"to": A, "httpStatusCode": status, "isOptedOut": True}, True) == RecipientResult(
        A, RecipientOutcome.FAILED, 502, "ACS's answer had no valid httpStatusCode", error_code="AcsUnavailable")


@pytest.mark.parametrize("status", [100, 599])
def test_the_status_bounds_are_inclusive(status: int) -> None:
    assert acs._recipient_result(A, {"httpStatusCode": status}, False).status_code == status


def test_an_error_message_is_bounded() -> None:
    message = acs._recipient_result(A, {"httpStatusCode": 400, "errorMessage": "x" * 1000}, False).error_message
    assert message == "x" * acs.MAX_UPSTREAM_TEXT + "…"


def missing(to: str) -> RecipientResult:
    return RecipientResult(to, RecipientOutcome.FAILED, 502, "ACS's answer did not mention this recipient",
                           error_code="AcsUnavailable")


def test_an_answer_gives_one_result_per_recipient_asked() -> None:
    answer = body({"value": [
        {"to": B, "httpStatusCode": 200, "isOptedOut": True},
        {"to": B, "httpStatusCode": 500},  # a repeat: the first answer stands
        {"to": "+19995550100", "httpStatusCode": 200},  # never asked about
        "not an object", {"to": 5, "httpStatusCode": 200}, {"httpStatusCode": 200},
    ]})
    results = acs._parse_recipients(Operation.CHECK, [A, B, C], answer)
    assert results == {B: RecipientResult(B, RecipientOutcome.SUCCEEDED, 200, is_opted_out=True),
                       A: missing(A), C: missing(C)}
    assert list(results) == [B, A, C]


def test_only_checks_read_the_opt_out_state() -> None:
    answer = body({"value": [{"to": A, "httpStatusCode": 200, "isOptedOut": True}]})
    assert acs._parse_recipients(Operation.ADD, [A], answer) == {A: RecipientResult(A, RecipientOutcome.SUCCEEDED, 200)}
    assert acs._parse_recipients(Operation.REMOVE, [A], answer)[A].is_opted_out is None


@pytest.mark.parametrize("answer", [None, b"not json", b"[1, 2]", body({"value": "x"}), body({"values": []}),
                                    b"[" * 2000 + b"]" * 2000])
def test_an_answer_without_a_list_of_recipients_leaves_every_recipient_transiently_failed(answer: bytes | None) -> None:
    assert acs._parse_recipients(Operation.ADD, [A], answer) == {A: missing(A)}


# -- error bodies ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "text"), [
    (None, "an error answer over 1048576 bytes (not read)"),
    (body({"error": {"code": "BadRequest", "message": "The from field is invalid."}}),
     "BadRequest: The from field is invalid."),
    (body({"error": {"code": 42, "message": None}}), "int: "),
    (body({"error": {"message": ["a"]}}), ": list"),
    (body({"title": "One or more validation errors occurred.",
           "errors": {"From": ["The From field is required.", 7, "Second."], "To": "not a list"}}),
     "One or more validation errors occurred. From: The From field is required.; Second., To: "),
    (body({"title": None, "errors": {"A": ["1", "2", "3", "4"], "B": ["b"], "C": [], "D": ["d"], "E": ["e"],
                                     "F": ["f"]}}),
     " A: 1; 2; 3, B: b, C: , D: d, E: e"),
    (body({"title": "Bad", "errors": ["From"]}), "Bad "),
    (body({"error": "text only", "detail": "x"}), '{"error": "text only", "detail": "x"}'),
    (b"<html>Service Unavailable</html>", "<html>Service Unavailable</html>"),
    (b"[1, 2]", "[1, 2]"),
    (b"\xffbroken\r\nX-Injected: 1", "\ufffdbroken\\r\\nX-Injected: 1"),
])
def test_an_error_answer_is_read_in_either_of_acss_shapes(content: bytes | None, text: str) -> None:
    assert acs._error_text(content) == text


def test_error_text_is_bounded_in_size_and_nesting() -> None:
    assert acs._error_text(b"y" * 5000) == "y" * acs.MAX_UPSTREAM_TEXT + "…"
    long_message = body({"error": {"code": "C", "message": "m" * 5000}})
    assert len(acs._error_text(long_message)) == acs.MAX_UPSTREAM_TEXT + 1
    nested = b'{"error": ' * 3000 + b"1" + b"}" * 3000
    assert acs._error_text(nested) == nested.decode()[:acs.MAX_UPSTREAM_TEXT] + "…"


# -- Retry-After, and every call failing ---------------------------------------------------------------

@pytest.mark.parametrize(("headers", "seconds"), [
    ({}, None),
    ({"retry-after": "7"}, 7.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"x-ms-retry-after-ms": "250"}, 0.25),
    ({"retry-after": "soon", "retry-after-ms": "1500"}, 1.5),  # the first that parses
    ({"retry-after": "3", "x-ms-retry-after-ms": "9000"}, 3.0),
])
def test_retry_after_is_read_from_any_of_the_three_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert acs._retry_after_seconds(headers) == seconds


def failure(status: int | None, retry_after: float | None = None) -> ChunkAnswer:
    return acs._whole_call_failure([A], status, retry_after, "m")


def test_a_whole_call_failure_fails_each_recipient_with_the_calls_code() -> None:
    answer = acs._whole_call_failure([A, B], 429, 2.0, "ACS answered 429")
    assert answer == ChunkAnswer(results={
        to: RecipientResult(to, RecipientOutcome.FAILED, 429, "ACS answered 429", error_code="AcsThrottled")
        for to in (A, B)}, transient_failure=True, retry_after=2.0, status_code=429)
    assert failure(503).results[A].error_code == failure(None).results[A].error_code == "AcsUnavailable"


def test_every_call_throttled_is_a_throttled_error_with_the_longest_wait() -> None:
    error = acs._transient_error([failure(429, 1.0), failure(429), failure(429, 4.0)])
    assert type(error) is AcsThrottledError
    assert (error.status_code, error.retry_after) == (429, 4.0)
    assert str(error) == "ACS throttled every call until retries ran out"


@pytest.mark.parametrize(("failures", "status", "retry_after"), [
    ([failure(429, 2.0), failure(503)], 503, 2.0),
    ([failure(502), failure(504), failure(None)], 504, None),
    ([failure(None), failure(None)], None, None),
    ([failure(500, 0.0)], 500, 0.0),
])
def test_other_failures_are_an_unavailable_error_with_the_highest_status(
        failures: list[ChunkAnswer], status: int | None, retry_after: float | None) -> None:
    error = acs._transient_error(failures)
    assert type(error) is AcsUnavailableError
    assert (error.status_code, error.retry_after) == (status, retry_after)
    assert str(error) == "ACS was unavailable for every call until retries ran out"


def test_the_error_for_every_call_failing_names_the_resource_for_the_log() -> None:
    with OptOutsClient("https://contoso-acs.communication.azure.com/", KEY) as client:
        error = client._all_failed([failure(503)])
    assert error.where == "ACS at contoso-acs.communication.azure.com"


# -- before anything is sent ---------------------------------------------------------------------------

def test_the_endpoint_and_urls() -> None:
    with OptOutsClient("https://contoso.communication.azure.com//", KEY, api_version="2025-01-01") as client:
        assert client.endpoint == "https://contoso.communication.azure.com"
        assert client.api_version == "2025-01-01"
        assert client._urls[Operation.CHECK] == (
            "https://contoso.communication.azure.com/sms/optouts:check?api-version=2025-01-01")
        assert client.name == "acs"


@pytest.mark.parametrize("endpoint", ["ftp://x/", "contoso.communication.azure.com", ""])
def test_an_endpoint_that_is_not_http_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="must start with"):
        OptOutsClient(endpoint, KEY)


@pytest.mark.parametrize("endpoint", ["http://localhost:8089", "http://LOCALHOST", "http://127.0.0.1:1",
                                      "http://127.9.9.9", "http://[::1]:8089", "HTTPS://example.com"])
def test_plain_http_is_allowed_only_to_loopback(endpoint: str) -> None:
    OptOutsClient(endpoint, KEY).close()


@pytest.mark.parametrize("endpoint", ["http://example.com", "http://10.0.0.1", "http://127.0.0.1.nip.io",
                                      "http://localhost.example.com"])
def test_plain_http_elsewhere_is_refused_unless_allowed(endpoint: str) -> None:
    with pytest.raises(InsecureEndpointError):
        OptOutsClient(endpoint, KEY)
    OptOutsClient(endpoint, KEY, allow_insecure_http=True).close()


def test_the_concurrency_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        OptOutsClient("https://x.communication.azure.com", KEY, max_concurrency=0)
    OptOutsClient("https://x.communication.azure.com", KEY, max_concurrency=1).close()


# -- a chunk that is not sent, or not answered ---------------------------------------------------------

def test_a_chunk_whose_deadline_has_passed_is_not_sent() -> None:
    with OptOutsClient("http://127.0.0.1:1", KEY) as client:
        answer = client._send_chunk(Operation.ADD, "+18005550100", [A, B], time.monotonic() - 1)
    assert answer == acs._whole_call_failure([A, B], None, None, "time budget exhausted before the call was sent")


def test_a_chunk_nobody_answers_fails_transiently_naming_the_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with OptOutsClient(f"http://127.0.0.1:{port}", KEY, retry_total=0) as client:
        answer = client._send_chunk(Operation.ADD, "+18005550100", [A], time.monotonic() + 10)
    assert answer == acs._whole_call_failure([A], None, None, "no answer from ACS (ServiceRequestError)")


class _NoToken:
    def get_token(self, *scopes: str, **kwargs: object) -> Any:
        raise ClientAuthenticationError("the identity endpoint said no: secret-ish detail")


def test_a_token_that_cannot_be_obtained_is_a_credential_error_without_its_text() -> None:
    with OptOutsClient("http://127.0.0.1:1", _NoToken(), allow_insecure_bearer=True) as client:  # type: ignore[arg-type]
        with pytest.raises(CredentialUnavailableError) as raised:
            client.add("+18005550100", [A])
    assert str(raised.value) == "could not get a token for ACS (ClientAuthenticationError)"
