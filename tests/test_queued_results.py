"""Queued requests in-process, without Storage: the results published when something goes wrong (a
results blob that cannot be written, a result whose pointer or whose essentials are still too large),
where results blobs are named, and the processor's rarer paths (a request too large for the provider's
rate, a bug, a time budget per sender). tests/test_queued_requests.py covers the common paths against
Azurite."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from optouts.config import Settings
from optouts.domain.operations import Operation
from optouts.providers.base import ProviderRequestTooLargeError, RecipientResult
from optouts.providers.fake import FakeProvider
from optouts.usecases import queued_requests as queued
from optouts.usecases.queued_requests import (
    MAX_RESULT_MESSAGE_BYTES,
    QueuedMessage,
    QueuedRequestProcessor,
    ResultPublisher,
    RetryLater,
    results_blob_name,
)
from optouts.usecases.service import OptOutService

from .test_usecases_fake_provider import MemoryQueue

SENDER = "+18005550100"
SETTINGS = Settings.from_environ({"OPTOUT_DEFAULT_SENDER": SENDER})
MESSAGE_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


class Container:
    """A results container that keeps what is uploaded, or refuses every upload."""

    container_name = "optout-results"

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.blobs: dict[str, bytes] = {}

    def create_container(self) -> None:
        pass

    def upload_blob(self, name: str, data: bytes, *, overwrite: bool) -> None:
        if self.refuse:
            raise ServiceRequestError("https://account.blob.core.windows.net/?sig=secret is down")
        assert isinstance(data, bytes) and overwrite
        self.blobs[name] = data


def published(queue: MemoryQueue) -> list[dict[str, Any]]:
    return [json.loads(text) for text in queue.messages]


def large(**fields: Any) -> dict[str, Any]:
    return {"correlationId": "c-1", "messageId": MESSAGE_ID, "status": "completed",
            "completedAt": "2026-01-01T00:00:00.000Z",
            "results": [{"input": f"+1425555{n:04d}", "status": "succeeded"} for n in range(3000)], **fields}


# -- results blobs -----------------------------------------------------------------------------------

def test_a_results_blob_is_named_by_day_and_message_id() -> None:
    before = datetime.now(UTC).strftime("%Y-%m-%d")
    name = results_blob_name(MESSAGE_ID)
    assert name in {f"{before}/{MESSAGE_ID}.json", f"{datetime.now(UTC).strftime('%Y-%m-%d')}/{MESSAGE_ID}.json"}
    assert re.fullmatch(r"20\d\d-[01]\d-[0-3]\d/" + MESSAGE_ID + r"\.json", name)


@pytest.mark.parametrize("message_id", ["../../other/x", "a" * 65, "", None, 5])
def test_a_message_id_that_is_not_a_plain_id_never_names_a_blob(message_id: object) -> None:
    first, second = results_blob_name(message_id), results_blob_name(message_id)
    day, file_name = first.split("/")
    assert re.fullmatch(r"20\d\d-[01]\d-[0-3]\d", day) and first != second
    assert uuid.UUID(file_name.removesuffix(".json")).version == 4


def test_a_results_blob_that_cannot_be_written_still_announces_the_outcome(caplog: pytest.LogCaptureFixture) -> None:
    queue, container = MemoryQueue(), Container(refuse=True)
    caplog.set_level(logging.ERROR, logger="optouts.usecases.queued_requests")
    ResultPublisher(queue, container).publish(large())
    (announced,) = published(queue)
    assert announced == {"correlationId": "c-1", "messageId": MESSAGE_ID, "status": "completed",
                         "completedAt": "2026-01-01T00:00:00.000Z",
                         "error": {"code": "ResultsNotDelivered", "message": "too large for a queue message and the "
                                                                             "results blob could not be written"}}
    assert caplog.record_tuples == [(
        "optouts.usecases.queued_requests", logging.ERROR,
        f"results blob of message {MESSAGE_ID} not written (ServiceRequestError); sending the result without details")]


def test_a_pointer_still_too_large_keeps_the_outcome_and_the_blob_without_the_bulk() -> None:
    errors = {f"phoneNumbers[{n}]": ["must be a string"] for n in range(3000)}
    result = large(status="rejected", error={"status": 400, "code": "ValidationFailed", "message": "m",
                                             "errors": errors})
    queue, container = MemoryQueue(), Container()
    ResultPublisher(queue, container).publish(result)
    (announced,) = published(queue)
    (name,) = container.blobs
    assert json.loads(container.blobs[name]) == result
    assert announced == {"correlationId": "c-1", "messageId": MESSAGE_ID, "status": "rejected",
                         "completedAt": "2026-01-01T00:00:00.000Z",
                         "error": {"status": 400, "code": "ValidationFailed", "message": "m",
                                   "detailsNotDelivered": "the full result is in the results blob"},
                         "resultsBlob": {"container": "optout-results", "name": name}}


def test_a_pointer_of_exactly_the_limit_stays_a_pointer() -> None:
    container = Container()
    name = results_blob_name(MESSAGE_ID)
    pointer = {**{k: v for k, v in large().items() if k != "results"}, "pad": "",
               "resultsBlob": {"container": "optout-results", "name": name}}
    pointer["pad"] = "p" * (MAX_RESULT_MESSAGE_BYTES - len(queued._encode(pointer)))
    result = {**large(), "pad": pointer["pad"]}
    queue = MemoryQueue()
    ResultPublisher(queue, container).publish(result)
    (text,) = queue.messages
    if json.loads(text)["resultsBlob"]["name"] == name:  # not written across midnight
        assert len(text) == MAX_RESULT_MESSAGE_BYTES and json.loads(text)["pad"] == pointer["pad"]


def test_a_rejection_too_large_with_no_container_keeps_its_error_without_the_field_errors() -> None:
    errors = {f"phoneNumbers[{n}]": ["must be a string"] for n in range(3000)}
    result = {"messageId": MESSAGE_ID, "status": "rejected", "completedAt": "2026-01-01T00:00:00.000Z",
              "error": {"status": 400, "code": "ValidationFailed", "message": "m", "errors": errors}}
    queue = MemoryQueue()
    ResultPublisher(queue, None).publish(result)
    assert published(queue) == [{
        "messageId": MESSAGE_ID, "status": "rejected", "completedAt": "2026-01-01T00:00:00.000Z",
        "error": {"status": 400, "code": "ValidationFailed", "message": "m",
                  "detailsNotDelivered": "too large for a queue message and no results container is set"}}]


def test_what_cannot_be_delivered_keeps_at_least_the_essentials() -> None:
    result = {"correlationId": "c-1", "messageId": MESSAGE_ID, "status": "failed", "completedAt": "t",
              "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "action": "add", "sender": SENDER,
              "summary": {"x": "y" * MAX_RESULT_MESSAGE_BYTES}, "error": {"code": "AwsUnavailable", "message": "m"}}
    assert queued._undeliverable(result, "why") == {
        "correlationId": "c-1", "messageId": MESSAGE_ID, "status": "failed", "completedAt": "t",
        "traceparent": result["traceparent"], "error": {"code": "AwsUnavailable", "message": "m",
                                                         "detailsNotDelivered": "why"}}


def test_what_fits_exactly_is_kept_whole() -> None:
    result = {"messageId": MESSAGE_ID, "status": "failed", "action": "add", "summary": {"pad": ""},
              "results": [1, 2, 3]}
    kept = queued._undeliverable(result, "why")
    kept["summary"]["pad"] = "p" * (MAX_RESULT_MESSAGE_BYTES - len(queued._encode(kept)))
    result["summary"] = kept["summary"]
    assert queued._undeliverable(result, "why") == kept and len(queued._encode(kept)) == MAX_RESULT_MESSAGE_BYTES


# -- the processor's rarer paths ----------------------------------------------------------------------

class BudgetRecordingFake(FakeProvider):
    def __init__(self, handler: Any = None) -> None:
        super().__init__(handler)
        self.budgets: list[float | None] = []

    def run(self, operation: Operation, sender: str, recipients: Any, *,
            time_budget: float | None = None) -> list[RecipientResult]:
        self.budgets.append(time_budget)
        return super().run(operation, sender, recipients, time_budget=time_budget)


def processor(fake: FakeProvider, queue: MemoryQueue, time_budget: Any = 5.0) -> QueuedRequestProcessor:
    service = OptOutService(fake)
    return QueuedRequestProcessor(settings=lambda: SETTINGS, service=lambda: service,
                                  publisher=ResultPublisher(queue, None), max_dequeue_count=2, time_budget=time_budget)


def body(**fields: Any) -> bytes:
    return json.dumps({"action": "add", "phoneNumbers": ["+14255550100"], **fields}).encode()


def test_the_time_budget_can_depend_on_the_sender() -> None:
    fake, queue = BudgetRecordingFake(), MemoryQueue()
    try:
        assert processor(fake, queue, lambda sender: 4.5 if sender == SENDER else 1.0).process(
            QueuedMessage("m-1", body(), 1)) == "completed"
    finally:
        fake.close()
    assert fake.budgets == [4.5]


def test_a_request_too_large_for_the_providers_rate_is_rejected_at_once(caplog: pytest.LogCaptureFixture) -> None:
    def too_many(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        raise ProviderRequestTooLargeError("too many for the rate")

    fake, queue = FakeProvider(too_many), MemoryQueue()
    caplog.set_level(logging.WARNING, logger="optouts.usecases.queued_requests")
    try:
        assert processor(fake, queue).process(QueuedMessage("m-7", body(correlationId="c-7"), 1)) == "rejected"
    finally:
        fake.close()
    (result,) = published(queue)
    assert (result["status"], result["correlationId"], result["messageId"], result["action"]) == (
        "rejected", "c-7", "m-7", "add")
    assert result["error"] == {"status": 413, "code": "UpstreamRateBudgetExceeded", "message": "too many for the rate"}
    assert ("optouts.usecases.queued_requests", logging.WARNING,
            "queue message m-7 rejected: UpstreamRateBudgetExceeded") in caplog.record_tuples


def test_a_bug_is_retried_and_finally_reported_as_an_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    def bug(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        raise RuntimeError("a bug")

    fake, queue = FakeProvider(bug), MemoryQueue()
    caplog.set_level(logging.ERROR, logger="optouts.usecases.queued_requests")
    try:
        with pytest.raises(RetryLater) as raised:
            processor(fake, queue).process(QueuedMessage("m-8", body(correlationId="c-8"), 2))
    finally:
        fake.close()
    assert raised.value.final and str(raised.value) == "InternalError: the gateway failed unexpectedly"
    (result,) = published(queue)
    assert {k: result[k] for k in ("status", "correlationId", "action", "sender", "attempts", "error")} == {
        "status": "failed", "correlationId": "c-8", "action": "add", "sender": SENDER, "attempts": 2,
        "error": {"code": "InternalError", "message": "the gateway failed unexpectedly"}}
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage() == "queue message m-8 failed unexpectedly" and logged.exc_info is not None


@pytest.mark.parametrize(("action", "echoed"), [(" Remove ", "remove"), ("delete", None), (5, None)])
def test_a_rejected_result_echoes_the_action_only_when_it_is_one(action: object, echoed: str | None) -> None:
    fake, queue = FakeProvider(), MemoryQueue()
    try:
        assert processor(fake, queue).process(QueuedMessage("m-9", json.dumps(
            {"action": action, "phoneNumbers": []}).encode(), 1)) == "rejected"
    finally:
        fake.close()
    (result,) = published(queue)
    assert result.get("action") == echoed


def test_a_message_id_that_is_not_a_plain_id_is_no_correlation_id() -> None:
    fake, queue = FakeProvider(), MemoryQueue()
    try:
        assert processor(fake, queue).process(QueuedMessage("not a plain id!", b"not json", 1)) == "rejected"
    finally:
        fake.close()
    (result,) = published(queue)
    assert "correlationId" not in result and result["messageId"] == "not a plain id!"


class RefusingQueue(MemoryQueue):
    """A results queue that refuses the first message with HTTP `status` (None: no status at all)."""

    def __init__(self, status: int | None) -> None:
        super().__init__()
        self.status, self.refused = status, False

    def send_message(self, text: str) -> None:
        if not self.refused:
            self.refused = True
            error = HttpResponseError("the queue said no")
            error.status_code = self.status
            raise error
        super().send_message(text)


@pytest.mark.parametrize("status", [400, 413, 499])
def test_a_result_the_queue_refuses_goes_out_without_its_details(status: int, caplog: pytest.LogCaptureFixture) -> None:
    queue = RefusingQueue(status)
    caplog.set_level(logging.ERROR, logger="optouts.usecases.queued_requests")
    ResultPublisher(queue, None).publish({**large(), "results": [{"status": "succeeded"}]})
    assert published(queue) == [{
        "correlationId": "c-1", "messageId": MESSAGE_ID, "status": "completed", "completedAt": "2026-01-01T00:00:00.000Z",
        "error": {"code": "ResultsNotDelivered", "message": "the results queue refused the full result"}}]
    assert caplog.record_tuples == [(
        "optouts.usecases.queued_requests", logging.ERROR,
        f"results queue refused the result of message {MESSAGE_ID} (HTTP {status}); sending it without details")]


@pytest.mark.parametrize("status", [None, 399, 500, 503])
def test_a_results_queue_that_fails_otherwise_raises_so_the_message_is_retried(status: int | None) -> None:
    queue = RefusingQueue(status)
    with pytest.raises(HttpResponseError):
        ResultPublisher(queue, None).publish({**large(), "results": []})
    assert queue.messages == []
