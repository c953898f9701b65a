"""The use-case in-process against the ACS emulator: one result per input, in order, and the
right problem when ACS refuses or fails."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from devtools.acs_emulator import AcsEmulator, FaultConfig
from optouts.domain.commands import OptOutCommand
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem
from optouts.domain.reports import NumberError
from optouts.providers.acs import OptOutsClient
from optouts.usecases.service import DEFAULT_RETRY_AFTER_SECONDS, OptOutService

from .conftest import SENDER, fast_client


@pytest.fixture
def service(emulator: AcsEmulator) -> Iterator[OptOutService]:
    with fast_client(emulator.connection_string, retry_total=1, recipient_retry_rounds=1) as client:
        yield OptOutService(client)


def command(action: Operation, *numbers: str, region: str = "US") -> OptOutCommand:
    return OptOutCommand(action=action, phone_numbers=numbers, sender=SENDER, region=region)


def test_one_result_per_input_in_order_with_invalid_numbers_kept_in_place(
    service: OptOutService, emulator: AcsEmulator
) -> None:
    report = service.execute(command(Operation.ADD, "(425) 555-0100", "garbage", "+14255550101", "+14255550100"))
    assert [(r.input, r.phone_number, r.status) for r in report.results] == [
        ("(425) 555-0100", "+14255550100", "succeeded"),
        ("garbage", None, "invalid"),
        ("+14255550101", "+14255550101", "succeeded"),
        ("+14255550100", "+14255550100", "succeeded"),
    ]
    assert report.results[1].error == NumberError(
        "UnexpectedCharacters", "a phone number may only contain digits, a leading +, spaces and - . ( ) /")
    assert [r.upstream_status for r in report.results] == [200, None, 200, 200]
    assert report.summary == {"total": 4, "succeeded": 3, "invalid": 1, "failed": 0}
    assert not report.has_transient_failures
    assert report.to_dict() == {
        "action": "add", "sender": SENDER, "summary": report.summary,
        "results": [
            {"input": "(425) 555-0100", "phoneNumber": "+14255550100", "status": "succeeded"},
            {"input": "garbage", "phoneNumber": None, "status": "invalid",
             "error": {"code": "UnexpectedCharacters", "message": report.results[1].error.message}},
            {"input": "+14255550101", "phoneNumber": "+14255550101", "status": "succeeded"},
            {"input": "+14255550100", "phoneNumber": "+14255550100", "status": "succeeded"},
        ],
    }
    assert emulator.opted_out(SENDER) == {"+14255550100", "+14255550101"}


def test_check_reports_opted_out_both_ways(service: OptOutService, emulator: AcsEmulator) -> None:
    emulator.seed_opt_outs(SENDER, ["+14255550100"])
    report = service.execute(command(Operation.CHECK, "+14255550100", "+14255550101"))
    assert [(r.status, r.opted_out) for r in report.results] == [("succeeded", True), ("succeeded", False)]
    assert [r.to_dict()["optedOut"] for r in report.results] == [True, False]


def test_the_region_decides_national_numbers(service: OptOutService) -> None:
    report = service.execute(command(Operation.CHECK, "020 7946 0958", region="GB"))
    assert report.results[0].phone_number == "+442079460958"


@pytest.mark.parametrize(("status", "code"), [(429, "AcsThrottled"), (408, "AcsUnavailable"),
                                              (500, "AcsUnavailable"), (502, "AcsUnavailable")])
def test_per_recipient_transient_failures_are_failed_and_marked_transient(
    service: OptOutService, emulator: AcsEmulator, status: int, code: str
) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=1.0, recipient_error_statuses=(status,))
    report = service.execute(command(Operation.REMOVE, "+14255550100", "bad"))
    failed = report.results[0]
    assert (failed.input, failed.phone_number, failed.status, failed.upstream_status) == (
        "+14255550100", "+14255550100", "failed", status)
    assert failed.error is not None and failed.error.code == code and failed.error.message
    assert report.summary == {"total": 2, "succeeded": 0, "invalid": 1, "failed": 1}
    assert report.has_transient_failures
    assert report.to_dict()["results"][0]["error"]["code"] == code


@pytest.mark.parametrize(("status", "expected"), [(400, "invalid"), (404, "failed"), (409, "failed")])
def test_a_recipient_acs_refuses_is_final_and_not_transient(
    service: OptOutService, emulator: AcsEmulator, status: int, expected: str
) -> None:
    def refuse(method: str, target: str, headers: object, body: bytes) -> tuple:
        return 200, {}, {"value": [{"to": "+14255550100", "httpStatusCode": status}]}

    emulator.handle = refuse  # type: ignore[method-assign]
    report = service.execute(command(Operation.ADD, "+14255550100"))
    [result] = report.results
    assert (result.input, result.phone_number, result.status, result.upstream_status) == (
        "+14255550100", "+14255550100", expected, status)
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("RejectedByAcs", "no details from ACS")
    assert not report.has_transient_failures


def test_every_call_throttled_is_a_503_with_retry_after(service: OptOutService, emulator: AcsEmulator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    emulator.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="optouts.usecases.service"), pytest.raises(Problem) as raised:
        service.execute(command(Operation.ADD, "+14255550100"))
    assert [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"] == [
        "ACS at 127.0.0.1 failed every add call after retries (AcsThrottled)"]
    assert (raised.value.status, raised.value.code, raised.value.title, raised.value.detail) == (
        503, "AcsThrottled", "Upstream temporarily unavailable",
        "Azure Communication Services is throttling or unavailable; retry later")
    assert raised.value.retry_after == 1  # in whole seconds, rounded up


def test_every_call_failing_is_a_503_with_the_default_retry_after(
    service: OptOutService, emulator: AcsEmulator
) -> None:
    emulator.faults = FaultConfig(server_error_rate=1.0, server_error_status=503)
    with pytest.raises(Problem) as raised:
        service.execute(command(Operation.ADD, "+14255550100"))
    assert (raised.value.status, raised.value.code, raised.value.title, raised.value.detail) == (
        503, "AcsUnavailable", "Upstream temporarily unavailable",
        "Azure Communication Services is throttling or unavailable; retry later")
    assert raised.value.retry_after == DEFAULT_RETRY_AFTER_SECONDS


def test_a_sender_acs_does_not_own_is_a_502(service: OptOutService, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="optouts.usecases.service"), pytest.raises(Problem) as raised:
        service.execute(OptOutCommand(Operation.ADD, ("+14255550100",), "+18005559999", "US"))
    [logged] = [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"]
    assert logged.startswith("ACS rejected the gateway's credentials for add: ACS rejected the gateway's "
                             "credentials (401): Denied")
    assert (raised.value.status, raised.value.code, raised.value.title, raised.value.detail) == (
        502, "AcsAuthenticationFailed", "Upstream authentication failed",
        "Azure Communication Services rejected the gateway's credentials or does not own the sender; "
        "an operator must check the configuration")


def test_only_invalid_numbers_make_no_call(service: OptOutService, emulator: AcsEmulator) -> None:
    report = service.execute(command(Operation.ADD, "x", ""))
    assert [r.status for r in report.results] == ["invalid", "invalid"]
    assert emulator.stats["total_calls"] == 0


def test_a_call_acs_calls_malformed_is_a_502(service: OptOutService, emulator: AcsEmulator,
                                             caplog: pytest.LogCaptureFixture) -> None:
    def malformed(method: str, target: str, headers: object, body: bytes) -> tuple:
        return 400, {}, {"error": {"code": "BadRequest", "message": "nope"}}

    emulator.handle = malformed  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="optouts.usecases.service"), pytest.raises(Problem) as raised:
        service.execute(command(Operation.REMOVE, "+14255550100"))
    assert (raised.value.status, raised.value.code, raised.value.title, raised.value.detail) == (
        502, "AcsRejectedRequest", "Upstream rejected the request",
        "Azure Communication Services rejected the gateway's call")
    [logged] = [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"]
    assert logged.startswith("ACS rejected a remove call as malformed: ACS rejected the call (400): BadRequest: nope")


class _IdentityDown:
    """A token credential whose identity endpoint fails, as azure-identity reports it."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise ClientAuthenticationError("the identity endpoint is unavailable")


def test_credentials_that_cannot_be_obtained_are_a_503(emulator: AcsEmulator,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    client = OptOutsClient(emulator.endpoint, _IdentityDown(), allow_insecure_bearer=True, retry_total=0)
    with client, caplog.at_level(logging.ERROR, logger="optouts.usecases.service"), pytest.raises(Problem) as raised:
        OptOutService(client).execute(command(Operation.ADD, "+14255550100"))
    problem = raised.value
    assert (problem.status, problem.code, problem.title, problem.detail, problem.retry_after) == (
        503, "CredentialsUnavailable", "Gateway credentials unavailable",
        "the gateway could not obtain its credentials for Azure Communication Services; retry later",
        DEFAULT_RETRY_AFTER_SECONDS)
    assert [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"] == [
        "the gateway could not get its credentials: could not get a token for ACS (ClientAuthenticationError)"]
    assert emulator.stats["total_calls"] == 0


def test_the_time_budget_given_is_the_one_spent(service: OptOutService, emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(hang_seconds=5)
    with pytest.raises(Problem) as raised:
        service.execute(command(Operation.ADD, "+14255550100"), time_budget=0.3)
    assert raised.value.code == "AcsUnavailable"


def test_the_log_says_what_happened_with_numbers_masked(
    service: OptOutService, emulator: AcsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    def some_fail(method: str, target: str, headers: object, body: bytes) -> tuple:
        numbers = [item["to"] for item in json.loads(body)["recipients"]]
        return 200, {}, {"value": [{"to": to, "httpStatusCode": 502 if to.endswith(("0", "1")) else 200}
                                   for to in numbers]}

    emulator.handle = some_fail  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="optouts.usecases.service"):
        service.execute(command(Operation.ADD, "+14255550100", "+14255550101", "junk", "+14255550102"))
    assert [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"] == [
        f"opt-out add for {SENDER}: {{'total': 4, 'succeeded': 1, 'invalid': 1, 'failed': 2}}",
        "opt-out add failed for 2 numbers, e.g. ['+1425***0100', '+1425***0101']",
    ]


def test_many_failures_log_ten_masked_examples(
    service: OptOutService, emulator: AcsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=1.0)
    numbers = [f"+1425555{n:04d}" for n in range(12)]
    with caplog.at_level(logging.WARNING, logger="optouts.usecases.service"):
        service.execute(command(Operation.CHECK, *numbers))
    [warning] = [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"]
    assert warning.startswith("opt-out check failed for 12 numbers, e.g. ['+1425***0000'")
    assert warning.count("***") == 10


def test_a_clean_run_logs_only_its_summary(
    service: OptOutService, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="optouts.usecases.service"):
        service.execute(command(Operation.CHECK, "+14255550100"))
    assert [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"] == [
        f"opt-out check for {SENDER}: {{'total': 1, 'succeeded': 1, 'invalid': 0, 'failed': 0}}"]
