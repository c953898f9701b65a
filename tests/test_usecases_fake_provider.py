"""The use cases over the fake provider: no HTTP, no emulator, no Storage.

What the service answers depends only on what the provider answered: neutral errors become
problems whose codes come from the errors, per-number codes come from the results."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from optouts.config import Settings
from optouts.domain.commands import OptOutCommand
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem
from optouts.providers.acs.errors import AcsAuthenticationError, AcsThrottledError, CredentialUnavailableError
from optouts.providers.base import (
    OptedOutEntry,
    OptOutPage,
    ProviderAuthenticationError,
    ProviderCredentialsError,
    ProviderError,
    ProviderInvalidContinuationError,
    ProviderListingNotSupportedError,
    ProviderRejectedError,
    ProviderRequestTooLargeError,
    ProviderThrottledError,
    ProviderUnavailableError,
    RecipientOutcome,
    RecipientResult,
)
from optouts.providers.fake import FakeProvider
from optouts.providers.fanout import ChunkAnswer
from optouts.usecases.queued_requests import QueuedMessage, QueuedRequestProcessor, ResultPublisher, RetryLater
from optouts.usecases.service import OptOutService

SENDER = "+18005550100"
SETTINGS = Settings.from_environ({"OPTOUT_DEFAULT_SENDER": SENDER})


def command(action: Operation, *numbers: str) -> OptOutCommand:
    return OptOutCommand(action, numbers, SENDER, "US")


def service_over(handler: Any = None) -> tuple[OptOutService, FakeProvider]:
    fake = FakeProvider(handler, chunk_size=2)
    return OptOutService(fake), fake


@pytest.fixture
def fake_service() -> Any:
    service, fake = service_over()
    yield service, fake
    fake.close()


def test_add_then_check_through_the_fake(fake_service: tuple[OptOutService, FakeProvider]) -> None:
    service, fake = fake_service
    added = service.execute(command(Operation.ADD, "425-555-0100", "+14255550100", "not a number", "+14255550101"))
    assert [r.status for r in added.results] == ["succeeded", "succeeded", "invalid", "succeeded"]
    assert added.summary == {"total": 4, "succeeded": 3, "invalid": 1, "failed": 0}
    # Normalized first, deduplicated by the fan-out: two distinct numbers, one call (chunks of 2).
    assert [c.recipients for c in fake.calls] == [("+14255550100", "+14255550101")]
    checked = service.execute(command(Operation.CHECK, "+14255550100", "+14255550199"))
    assert [r.opted_out for r in checked.results] == [True, False]
    assert service.provider is fake


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (ProviderAuthenticationError("no", code="AwsAuthenticationFailed"), 502, "AwsAuthenticationFailed", None),
        (ProviderRejectedError("bad", code="AwsRejectedRequest"), 502, "AwsRejectedRequest", None),
        (ProviderThrottledError("slow", code="AwsThrottled", retry_after=7.0), 503, "AwsThrottled", 7.0),
        (ProviderUnavailableError("down", code="AwsUnavailable"), 503, "AwsUnavailable", 30),
        (ProviderCredentialsError("vault"), 503, "CredentialsUnavailable", 30),
    ],
)
def test_neutral_errors_become_problems_with_the_errors_codes(
    error: ProviderError, status: int, code: str, retry_after: float | None
) -> None:
    def fail(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        raise error

    service, fake = service_over(fail)
    try:
        with pytest.raises(Problem) as raised:
            service.execute(command(Operation.ADD, "+14255550100"))
    finally:
        fake.close()
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (status, code, retry_after)
    assert "Acs" not in raised.value.code and "Azure" not in raised.value.detail


def test_acs_errors_give_the_answers_they_always_gave() -> None:
    """The contract: codes and texts as before the provider interface existed."""
    cases = [
        (AcsThrottledError("429", status_code=429, retry_after=12.0),
         (503, "AcsThrottled", "Azure Communication Services is throttling or unavailable; retry later", 12.0)),
        (AcsAuthenticationError("401"),
         (502, "AcsAuthenticationFailed", "Azure Communication Services rejected the gateway's credentials or "
          "does not own the sender; an operator must check the configuration", None)),
        (CredentialUnavailableError("vault down"),
         (503, "CredentialsUnavailable", "the gateway could not obtain its credentials for Azure Communication "
          "Services; retry later", 30)),
    ]
    for error, expected in cases:
        def fail(operation: Operation, sender: str, chunk: list[str], error: Exception = error) -> dict[str, Any]:
            raise error

        service, fake = service_over(fail)
        try:
            with pytest.raises(Problem) as raised:
                service.execute(command(Operation.REMOVE, "+14255550100"))
        finally:
            fake.close()
        problem = raised.value
        assert (problem.status, problem.code, problem.detail, problem.retry_after) == expected


def test_per_number_codes_come_from_the_provider_else_neutral_ones() -> None:
    answers = {
        "+14255550100": RecipientResult("+14255550100", RecipientOutcome.REJECTED, 400, "malformed",
                                        error_code="RejectedByAcs"),
        "+14255550101": RecipientResult("+14255550101", RecipientOutcome.REJECTED, 409, "too soon",
                                        error_code="AwsRemovalTooSoon"),
        "+14255550102": RecipientResult("+14255550102", RecipientOutcome.REJECTED, 400, None),
        "+14255550103": RecipientResult("+14255550103", RecipientOutcome.FAILED, 429, "slow"),
        "+14255550104": RecipientResult("+14255550104", RecipientOutcome.FAILED, None, "no answer"),
        "+14255550105": RecipientResult("+14255550105", RecipientOutcome.SUCCEEDED, 200),
    }
    service, fake = service_over(lambda operation, sender, chunk: {to: answers[to] for to in chunk})
    try:
        report = service.execute(command(Operation.ADD, *answers))
    finally:
        fake.close()
    outcome = [(r.status, r.error.code if r.error else None) for r in report.results]
    assert outcome == [("invalid", "RejectedByAcs"), ("failed", "AwsRemovalTooSoon"),
                       ("invalid", "RejectedByUpstream"), ("failed", "UpstreamThrottled"),
                       ("failed", "UpstreamUnavailable"), ("succeeded", None)]
    assert report.results[2].error is not None and report.results[2].error.message == "no details from the provider"
    assert report.has_transient_failures and report.transient_failure_code == "UpstreamUnavailable"
    from optouts.domain.reports import unavailable_code
    assert [unavailable_code(c) for c in ("AwsThrottled", "AwsUnavailable", "AwsRemovalTooSoon")] == [
        "AwsUnavailable", "AwsUnavailable", "AwsRemovalTooSoon"]


def test_a_report_of_only_throttled_numbers_is_summed_up_as_unavailable() -> None:
    throttled = {"+14255550100": RecipientResult("+14255550100", RecipientOutcome.FAILED, 429, "slow",
                                                 error_code="AcsThrottled")}
    ok = {"+14255550101": RecipientResult("+14255550101", RecipientOutcome.SUCCEEDED, 200)}
    service, fake = service_over(lambda operation, sender, chunk: {to: {**throttled, **ok}[to] for to in chunk})
    try:
        report = service.execute(command(Operation.ADD, "+14255550100", "+14255550101"))
        clean = service.execute(command(Operation.ADD, "+14255550101"))
    finally:
        fake.close()
    assert report.transient_failure_code == "AcsUnavailable"  # as the queue has always answered
    assert not clean.has_transient_failures and clean.transient_failure_code is None


def test_every_call_failing_as_a_whole_is_a_503() -> None:
    def down(operation: Operation, sender: str, chunk: list[str]) -> ChunkAnswer:
        return ChunkAnswer.whole_call_failure(chunk, status_code=429, retry_after=5.0, message="slow",
                                              error_code="XThrottled")

    service, fake = service_over(down)
    try:
        with pytest.raises(Problem) as raised:
            service.execute(command(Operation.ADD, "+14255550100", "+14255550101", "+14255550102"))
    finally:
        fake.close()
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (503, "UpstreamThrottled", 5.0)


# -- queued requests -------------------------------------------------------------------

class MemoryQueue:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def create_queue(self) -> None:
        pass

    def send_message(self, text: str) -> None:
        self.messages.append(text)


def processor_over(fake: FakeProvider, queue: MemoryQueue, *, max_dequeue_count: int = 2) -> QueuedRequestProcessor:
    service = OptOutService(fake)
    return QueuedRequestProcessor(settings=lambda: SETTINGS, service=lambda: service,
                                  publisher=ResultPublisher(queue, None), max_dequeue_count=max_dequeue_count,
                                  time_budget=5.0)


def test_a_queued_request_completes_through_the_fake() -> None:
    import json

    fake, queue = FakeProvider(), MemoryQueue()
    try:
        body = json.dumps({"action": "add", "phoneNumbers": ["+14255550100"], "correlationId": "c-1"}).encode()
        state = processor_over(fake, queue).process(QueuedMessage("m-1", body, 1))
    finally:
        fake.close()
    (published,) = [json.loads(text) for text in queue.messages]
    assert state == "completed" and published["status"] == "completed" and published["correlationId"] == "c-1"
    assert published["summary"]["succeeded"] == 1 and fake.store.lists[SENDER] == {"+14255550100"}


def test_a_queued_request_with_transient_failures_is_redelivered_then_failed_with_the_providers_code() -> None:
    import json

    def busy(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        return {to: RecipientResult(to, RecipientOutcome.FAILED, 503, "busy", error_code="AwsUnavailable")
                for to in chunk}

    fake, queue = FakeProvider(busy), MemoryQueue()
    body = json.dumps({"action": "remove", "phoneNumbers": ["+14255550100", "+14255550101"]}).encode()
    try:
        processor = processor_over(fake, queue, max_dequeue_count=2)
        with pytest.raises(RetryLater) as first:
            processor.process(QueuedMessage("m-2", body, 1))
        assert not first.value.final and queue.messages == []
        with pytest.raises(RetryLater) as last:
            processor.process(QueuedMessage("m-2", body, 2))
    finally:
        fake.close()
    assert last.value.final
    (published,) = [json.loads(text) for text in queue.messages]
    assert published["status"] == "failed" and published["error"]["code"] == "AwsUnavailable"
    assert published["summary"]["failed"] == 2


# -- what each number's answer carries, and the log ----------------------------------------------------

def test_the_providers_own_facts_reach_every_numbers_result() -> None:
    def answer(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        return {
            "+14255550100": RecipientResult("+14255550100", RecipientOutcome.SUCCEEDED, 200, is_opted_out=True,
                                            details={"endUserOptedOut": True}),
            "+14255550101": RecipientResult("+14255550101", RecipientOutcome.FAILED, 503, "busy",
                                            details={"retryable": True}),
        }

    service, fake = service_over(answer)
    try:
        report = service.execute(command(Operation.CHECK, "+14255550100", "+14255550101"))
    finally:
        fake.close()
    assert [r.details for r in report.results] == [{"endUserOptedOut": True}, {"retryable": True}]


def test_a_request_too_large_for_the_providers_rate_is_a_413_that_says_why(caplog: pytest.LogCaptureFixture) -> None:
    def too_many(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        raise ProviderRequestTooLargeError("1000 numbers need 50 s at the provider's rate; the budget is 10 s")

    service, fake = service_over(too_many)
    caplog.set_level(logging.WARNING, logger="optouts.usecases.service")
    try:
        with pytest.raises(Problem) as raised:
            service.execute(command(Operation.REMOVE, "+14255550100"))
    finally:
        fake.close()
    assert (raised.value.status, raised.value.code, raised.value.title, raised.value.detail) == (
        413, "UpstreamRateBudgetExceeded", "Too many numbers for the provider's request rate",
        "1000 numbers need 50 s at the provider's rate; the budget is 10 s")
    assert ("optouts.usecases.service", logging.WARNING,
            "remove refused up front: 1000 numbers need 50 s at the provider's rate; the budget is 10 s"
            ) in caplog.record_tuples


@pytest.mark.parametrize("error", [ProviderAuthenticationError("x" * 1000), ProviderRejectedError("x" * 1000)])
def test_an_upstream_refusal_is_logged_with_its_text_bounded(error: ProviderError,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    def refuse(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        raise error

    service, fake = service_over(refuse)
    caplog.set_level(logging.ERROR, logger="optouts.usecases.service")
    try:
        with pytest.raises(Problem):
            service.execute(command(Operation.ADD, "+14255550100"))
    finally:
        fake.close()
    (message,) = [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"]
    assert message.endswith(": " + "x" * 400 + "…")


# -- listing -----------------------------------------------------------------------------------------

class ListingFake(FakeProvider):
    """The fake provider, able to list (as AWS can): answers `page` or raises `error`."""

    def __init__(self, page: OptOutPage | None = None, error: ProviderError | None = None) -> None:
        super().__init__()
        self.page, self.error = page, error
        self.asked: list[tuple[str, str | None, int, float | None]] = []

    def list_opted_out(self, sender: str, *, next_token: str | None = None, page_size: int = 100,
                       time_budget: float | None = None) -> OptOutPage:
        self.asked.append((sender, next_token, page_size, time_budget))
        if self.error is not None:
            raise self.error
        assert self.page is not None
        return self.page


def test_a_listing_is_the_providers_page_for_exactly_what_was_asked() -> None:
    page = OptOutPage([OptedOutEntry("+14255550100")], "next-2")
    listing = ListingFake(page)
    try:
        assert OptOutService(listing).list_opt_outs(SENDER, page_size=7, next_token="t-1", time_budget=3.0) is page
    finally:
        listing.close()
    assert listing.asked == [(SENDER, "t-1", 7, 3.0)]


def test_a_provider_that_cannot_list_is_a_501() -> None:
    service, fake = service_over()
    try:
        with pytest.raises(Problem) as raised:
            service.list_opt_outs(SENDER, page_size=10, next_token=None)
    finally:
        fake.close()
    assert (raised.value.status, raised.value.code, raised.value.title) == (
        501, "ListingNotSupported", "Listing not supported for this sender")
    assert raised.value.detail == (
        "this sender's opt-out list is kept by Azure Communication Services, which has no API that lists it; "
        "check numbers with POST /api/optouts/check instead")


@pytest.mark.parametrize(("error", "expected"), [
    (ProviderListingNotSupportedError("no"), (501, "ListingNotSupported", "Listing not supported for this sender",
                                              None, {})),
    (ProviderInvalidContinuationError("bad token", code="AwsInvalidToken"),
     (400, "AwsInvalidToken", "Invalid continuation token",
      "continuationToken must be passed exactly as the previous page's nextLink gave it",
      {"continuationToken": ["is not a token this list gave"]})),
    (ProviderAuthenticationError("denied", code="AwsAuthenticationFailed"),
     (502, "AwsAuthenticationFailed", "Upstream authentication failed",
      "the opt-out provider rejected the gateway's credentials; an operator must check the configuration", {})),
    (ProviderRejectedError("malformed", code="AwsRejectedRequest"),
     (502, "AwsRejectedRequest", "Upstream rejected the request", "the opt-out provider rejected the gateway's call",
      {})),
    (ProviderCredentialsError("vault down"),
     (503, "CredentialsUnavailable", "Gateway credentials unavailable",
      "the gateway could not obtain its credentials for the opt-out provider; retry later", {})),
    (ProviderThrottledError("slow", code="AwsThrottled", retry_after=7.0),
     (503, "AwsThrottled", "Upstream temporarily unavailable",
      "the opt-out provider is throttling or unavailable; retry later", {})),
    (ProviderUnavailableError("down", code="AwsUnavailable"),
     (503, "AwsUnavailable", "Upstream temporarily unavailable",
      "the opt-out provider is throttling or unavailable; retry later", {})),
    (ProviderError("odd", code="AwsFailed"), (502, "AwsFailed", "Upstream failed",
                                              "the opt-out provider failed the listing", {})),
])
def test_each_listing_failure_is_its_own_problem(error: ProviderError, expected: tuple) -> None:
    listing = ListingFake(error=error)
    try:
        with pytest.raises(Problem) as raised:
            OptOutService(listing).list_opt_outs(SENDER, page_size=10, next_token="t")
    finally:
        listing.close()
    problem = raised.value
    status, code, title, detail, errors = expected
    assert (problem.status, problem.code, problem.title, problem.errors) == (status, code, title, errors)
    if detail is not None:
        assert problem.detail == detail
    assert problem.retry_after == {"AwsThrottled": 7.0, "AwsUnavailable": 30, "CredentialsUnavailable": 30}.get(code)


def test_a_listing_refused_for_credentials_logs_the_upstream_text_on_one_bounded_line(
        caplog: pytest.LogCaptureFixture) -> None:
    listing = ListingFake(error=ProviderAuthenticationError("denied\r\nFORGED admin login ok " + "y" * 500))
    caplog.set_level(logging.ERROR, logger="optouts.usecases.service")
    try:
        with pytest.raises(Problem):
            OptOutService(listing).list_opt_outs(SENDER, page_size=10, next_token=None)
    finally:
        listing.close()
    (message,) = [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.service"]
    assert "\n" not in message and "\r" not in message
    assert "denied\\r\\nFORGED" in message and message.endswith("…")
