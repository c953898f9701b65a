"""The use case's audit wiring, in-process: what `OptOutService` journals for each operation (the
intent before the provider is called, the outcome after, or the failure), read back from the blobs in
Azurite. The fake provider answers, so each test takes a fraction of a second; tests/test_audit.py
covers the same journal end to end through the HTTP functions and the indexer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.queue import QueueClient

from optouts.audit.callers import AuditContext
from optouts.audit.trail import (
    AuditReceipt,
    AuditStorage,
    AuditTrail,
    NumberOutcome,
    OperationIntent,
    load_intent,
    load_outcome,
    storage_for,
)
from optouts.config import Settings
from optouts.domain.commands import OptOutCommand
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem
from optouts.providers.base import ProviderUnavailableError, RecipientOutcome, RecipientResult
from optouts.providers.fake import FakeProvider
from optouts.usecases.queued_requests import QueuedMessage, QueuedRequestProcessor, ResultPublisher, RetryLater
from optouts.usecases.service import OptOutService

from .conftest import SENDER, azurite_for_module
from .test_usecases_fake_provider import MemoryQueue

CONTEXT = AuditContext("http", "crm-sync@contoso.com", "corr-7", caller_id="id-7", verified=True, trace_id="t-7")
A, B = "+14255550100", "+14255550101"
SETTINGS = Settings.from_environ({"OPTOUT_DEFAULT_SENDER": SENDER})


@pytest.fixture(scope="module")
def azurite() -> Iterator[Any]:
    with azurite_for_module() as running:
        yield running


@pytest.fixture
def journal(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[AuditStorage, str]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    suffix = uuid.uuid4().hex[:12]
    return storage_for(container=f"ops-{suffix}", table=f"audit{suffix}", queue=f"index-{suffix}"), f"index-{suffix}"


def audited_service(storage: AuditStorage, handler: Any = None, *,
                    include_checks: bool = False) -> tuple[OptOutService, FakeProvider]:
    fake = FakeProvider(handler, name="aws")
    return OptOutService(fake, AuditTrail(storage, include_checks=include_checks, reconcile_delay=60)), fake


def command(action: Operation, *numbers: str, reason: str | None = None) -> OptOutCommand:
    return OptOutCommand(action, numbers, SENDER, "US", reason)


def journalled(storage: AuditStorage, receipt: Any) -> tuple[OperationIntent, Any]:
    assert isinstance(receipt, AuditReceipt) and receipt.status == "accepted" and receipt.operation_id
    intent = load_intent(storage, receipt.operation_id)
    assert intent is not None
    return intent, load_outcome(storage, intent)


def test_a_change_journals_what_was_asked_then_what_the_provider_answered(
        journal: tuple[AuditStorage, str], azurite: Any) -> None:
    storage, queue = journal
    service, fake = audited_service(storage)
    with closing(fake):
        report = service.execute(command(Operation.ADD, "425-555-0100", A, "not a number", B, reason="ticket 1"),
                                 audit=CONTEXT)
    assert report.audit is not None and report.audit.to_dict()["outcomeRecorded"] is True
    intent, outcome = journalled(storage, report.audit)
    assert (intent.action, intent.sender, intent.numbers, intent.invalid_inputs, intent.provider, intent.reason,
            intent.context) == ("add", SENDER, (A, B), 1, "aws", "ticket 1", CONTEXT)
    assert outcome is not None and outcome.error_code is None
    assert outcome.outcomes == (NumberOutcome("succeeded", 200), NumberOutcome("succeeded", 200))
    # The reconcile message (delayed) and the index message.
    with QueueClient.from_connection_string(azurite.connection_string, queue) as index_queue:
        assert index_queue.get_queue_properties().approximate_message_count == 2


def test_each_numbers_own_answer_is_journalled(journal: tuple[AuditStorage, str]) -> None:
    storage, _ = journal

    def answer(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        return {A: RecipientResult(A, RecipientOutcome.FAILED, 503, "busy", error_code="AwsUnavailable"),
                B: RecipientResult(B, RecipientOutcome.REJECTED, 400, "bad number", error_code="AwsRejected",
                                   details={"reason": "x"})}

    service, fake = audited_service(storage, answer)
    with closing(fake):
        report = service.execute(command(Operation.REMOVE, A, B, A), audit=CONTEXT)
    assert [r.status for r in report.results] == ["failed", "invalid", "failed"]
    intent, outcome = journalled(storage, report.audit)
    assert intent.numbers == (A, B) and intent.invalid_inputs == 0
    assert outcome.outcomes == (NumberOutcome("failed", 503, "AwsUnavailable"),
                                NumberOutcome("invalid", 400, "AwsRejected", None, {"reason": "x"}))


def test_checks_are_journalled_only_when_asked_and_then_with_each_answer(journal: tuple[AuditStorage, str]) -> None:
    storage, _ = journal
    service, fake = audited_service(storage)
    with closing(fake):
        assert service.execute(command(Operation.CHECK, A, B), audit=CONTEXT).audit is None
    assert storage._clients == {}  # Storage was never asked
    checking, fake = audited_service(storage, include_checks=True)
    with closing(fake):
        fake.store.lists[SENDER] = {A}
        report = checking.execute(command(Operation.CHECK, A, B), audit=CONTEXT)
    intent, outcome = journalled(storage, report.audit)
    assert intent.action == "check"
    assert outcome.outcomes == (NumberOutcome("succeeded", 200, None, True), NumberOutcome("succeeded", 200, None, False))


def test_without_an_audit_context_nothing_is_journalled(journal: tuple[AuditStorage, str]) -> None:
    storage, _ = journal
    service, fake = audited_service(storage)
    with closing(fake):
        report = service.execute(command(Operation.ADD, A))
    assert report.audit is None and report.summary["succeeded"] == 1
    assert storage._clients == {}  # Storage was never asked


def test_an_operation_that_failed_as_a_whole_is_journalled_failed_with_the_answers_code(
        journal: tuple[AuditStorage, str]) -> None:
    storage, _ = journal

    def down(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        raise ProviderUnavailableError("down", code="AwsUnavailable")

    service, fake = audited_service(storage, down)
    started: list[OperationIntent] = []
    begin = service._audit_trail.begin  # type: ignore[union-attr]

    def remembering(*args: Any, **kwargs: Any) -> OperationIntent | None:
        started.append(begin(*args, **kwargs))  # type: ignore[arg-type]
        return started[-1]

    service._audit_trail.begin = remembering  # type: ignore[union-attr, method-assign]
    with closing(fake), pytest.raises(Problem) as raised:
        service.execute(command(Operation.ADD, A, B), audit=CONTEXT)
    assert (raised.value.status, raised.value.code) == (503, "AwsUnavailable")
    (intent,) = started
    outcome = load_outcome(storage, intent)
    assert outcome is not None and outcome.error_code == "AwsUnavailable"
    assert outcome.outcomes == (NumberOutcome("failed", error_code="AwsUnavailable"),) * 2


def test_a_failure_without_an_audit_context_journals_nothing(journal: tuple[AuditStorage, str]) -> None:
    storage, _ = journal

    def down(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        raise ProviderUnavailableError("down", code="AwsUnavailable")

    service, fake = audited_service(storage, down)
    with closing(fake), pytest.raises(Problem):
        service.execute(command(Operation.ADD, A))
    assert storage._clients == {}


def test_an_intent_that_cannot_be_written_stops_the_change_before_the_provider_is_called(
        journal: tuple[AuditStorage, str], monkeypatch: pytest.MonkeyPatch) -> None:
    storage, _ = journal

    def down(*args: Any, **kwargs: Any) -> None:
        raise ServiceRequestError("storage down")

    monkeypatch.setattr(storage, "put_blob", down)
    service, fake = audited_service(storage)
    with closing(fake), pytest.raises(Problem) as raised:
        service.execute(command(Operation.ADD, A), audit=CONTEXT)
    assert (raised.value.status, raised.value.code) == (503, "AuditUnavailable")
    assert fake.calls == [] and fake.store.lists.get(SENDER, set()) == set()


# -- queued requests ---------------------------------------------------------------------------------

def queued(storage: AuditStorage, handler: Any = None, *, requests_queue: str = "optout-requests",
           ) -> tuple[QueuedRequestProcessor, FakeProvider, MemoryQueue]:
    service, fake = audited_service(storage, handler)
    queue = MemoryQueue()
    processor = QueuedRequestProcessor(settings=lambda: SETTINGS, service=lambda: service,
                                       publisher=ResultPublisher(queue, None), max_dequeue_count=2, time_budget=5.0,
                                       requests_queue=requests_queue)
    return processor, fake, queue


@pytest.mark.parametrize(("fields", "requests_queue", "correlation_id"), [
    ({"correlationId": "crm-42"}, "optout-requests", "crm-42"),
    ({}, "optout-requests", "m-5"),  # no correlation id of its own: the message's id
    ({"correlationId": "crm-43"}, "other-requests", "crm-43"),
])
def test_a_queued_change_is_journalled_with_the_queue_as_its_caller(
        journal: tuple[AuditStorage, str], fields: dict[str, str], requests_queue: str, correlation_id: str) -> None:
    storage, _ = journal
    processor, fake, queue = queued(storage, requests_queue=requests_queue)
    body = json.dumps({"action": "add", "phoneNumbers": [A], **fields}).encode()
    with closing(fake):
        assert processor.process(QueuedMessage("m-5", body, 1)) == "completed"
    (published,) = [json.loads(text) for text in queue.messages]
    intent, outcome = journalled(storage, AuditReceipt("accepted", published["audit"]["operationId"]))
    assert intent.context == AuditContext("queue", requests_queue, correlation_id)
    assert intent.numbers == (A,) and outcome.outcomes == (NumberOutcome("succeeded", 200),)


def test_the_last_deliverys_failed_result_carries_the_audit_receipt(journal: tuple[AuditStorage, str]) -> None:
    storage, _ = journal

    def busy(operation: Operation, sender: str, chunk: list[str]) -> dict[str, RecipientResult]:
        return {to: RecipientResult(to, RecipientOutcome.FAILED, 503, "busy", error_code="AwsUnavailable")
                for to in chunk}

    processor, fake, queue = queued(storage, busy)
    body = json.dumps({"action": "remove", "phoneNumbers": [A, B]}).encode()
    with closing(fake), pytest.raises(RetryLater):
        processor.process(QueuedMessage("m-6", body, 2))
    (published,) = [json.loads(text) for text in queue.messages]
    assert published["status"] == "failed"
    receipt = published["audit"]
    assert receipt == {"status": "accepted", "operationId": receipt["operationId"],
                       "acceptedAt": receipt["acceptedAt"], "outcomeRecorded": True}
    _, outcome = journalled(storage, AuditReceipt("accepted", receipt["operationId"]))
    assert outcome.outcomes == (NumberOutcome("failed", 503, "AwsUnavailable"),) * 2
