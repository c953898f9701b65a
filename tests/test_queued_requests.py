"""Queued requests in-process, against a real Azurite and the ACS emulator: what is published
for each message, results too large for a queue message, and when a message is retried."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import Azurite
from devtools.mutation import SHARED_AZURITE
from optouts.config import Settings
from optouts.queued_requests import (
    MAX_RESULT_MESSAGE_BYTES,
    QueuedMessage,
    QueuedRequestProcessor,
    ResultPublisher,
    RetryLater,
    decode_message,
)
from optouts.service import OptOutService

from .conftest import SENDER, fast_client

#: A queue message's own limit (64 KiB); the pointer to a blob must fit well within it.
QUEUE_MESSAGE_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def azurite() -> Iterator[Any]:
    # `make mutation` runs this file once per mutant and shares one Azurite among the runs;
    # every test uses queues and containers of its own, so none sees another's messages.
    shared = os.environ.get(SHARED_AZURITE)
    if shared:
        yield SimpleNamespace(connection_string=shared)
        return
    with Azurite() as running:
        yield running


@pytest.fixture
def storage(azurite: Azurite) -> Iterator[tuple[QueueClient, ContainerClient]]:
    suffix = uuid.uuid4().hex[:10]
    results = QueueClient.from_connection_string(azurite.connection_string, f"results-{suffix}")
    container = ContainerClient.from_connection_string(azurite.connection_string, f"results-{suffix}")
    results.create_queue()
    with results, container:
        yield results, container


def received(queue: QueueClient) -> list[dict[str, Any]]:
    return [json.loads(m.content) for m in queue.receive_messages(messages_per_page=32, max_messages=32)]


def big_result(count: int = 2_000) -> dict[str, Any]:
    return {
        "correlationId": "big-1", "messageId": "m-1", "status": "completed", "completedAt": "2026-01-01T00:00:00.000Z",
        "action": "check", "sender": SENDER,
        "results": [{"input": f"+1425555{n:04d}", "phoneNumber": f"+1425555{n:04d}", "status": "succeeded",
                     "optedOut": False} for n in range(count)],
        "summary": {"total": count, "succeeded": count, "invalid": 0, "failed": 0},
    }


# -- the publisher ----------------------------------------------------------------------------


def test_a_result_that_fits_is_the_message_itself(storage: tuple[QueueClient, ContainerClient]) -> None:
    results, container = storage
    result = {**big_result(3), "correlationId": "ünïcode-id"}
    ResultPublisher(results, container).publish(result)
    assert received(results) == [result]
    assert list(container.list_blobs()) == []


def test_a_result_too_large_for_a_message_is_a_readable_blob_the_message_points_to(
    storage: tuple[QueueClient, ContainerClient],
) -> None:
    results, container = storage
    result = big_result()
    assert len(json.dumps(result).encode()) > MAX_RESULT_MESSAGE_BYTES
    ResultPublisher(results, container).publish(result)

    [message] = results.receive_messages(max_messages=1)
    assert len(message.content.encode("utf-8")) < QUEUE_MESSAGE_LIMIT
    pointer = json.loads(message.content)
    assert "results" not in pointer
    assert {k: v for k, v in pointer.items() if k != "resultsBlob"} == {
        k: v for k, v in result.items() if k != "results"
    }
    assert pointer["resultsBlob"]["container"] == container.container_name
    blob = container.download_blob(pointer["resultsBlob"]["name"]).readall()
    assert json.loads(blob) == result
    assert [b.name for b in container.list_blobs()] == [pointer["resultsBlob"]["name"]]


def test_a_result_too_large_with_no_container_is_an_error_not_a_truncated_message(
    storage: tuple[QueueClient, ContainerClient],
) -> None:
    results, _ = storage
    with pytest.raises(RuntimeError, match="too large"):
        ResultPublisher(results, None).publish(big_result())
    assert received(results) == []


def test_the_threshold_is_the_utf8_size(storage: tuple[QueueClient, ContainerClient]) -> None:
    results, container = storage
    result = {**big_result(1), "reason": "é" * (MAX_RESULT_MESSAGE_BYTES // 2)}  # few characters, many bytes
    ResultPublisher(results, container).publish(result)
    assert "resultsBlob" in received(results)[0]


# -- the processor ----------------------------------------------------------------------------


@pytest.fixture
def processor_for(
    emulator: AcsEmulator, storage: tuple[QueueClient, ContainerClient]
) -> Iterator[Any]:
    results, container = storage
    settings = Settings.from_environ({
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_MAX_NUMBERS": "3000",
    })
    with fast_client(emulator.connection_string) as client:
        service = OptOutService(client)

        def make(max_dequeue_count: int = 3) -> QueuedRequestProcessor:
            return QueuedRequestProcessor(settings=lambda: settings, service=lambda: service,
                                          publisher=ResultPublisher(results, container),
                                          max_dequeue_count=max_dequeue_count, time_budget=5)
        yield make


def queued(body: dict[str, Any] | str | bytes, dequeue_count: int = 1) -> QueuedMessage:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return QueuedMessage(id=f"msg-{uuid.uuid4().hex[:8]}", body=body, dequeue_count=dequeue_count)


def test_a_completed_message_reports_every_number(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient], emulator: AcsEmulator
) -> None:
    message = queued({"action": "add", "phoneNumbers": ["(425) 555-0100", "nope"], "correlationId": "c-1"})
    assert processor_for().process(message) == "completed"
    [result] = received(storage[0])
    assert (result["correlationId"], result["messageId"], result["status"]) == ("c-1", message.id, "completed")
    assert [(r["input"], r["phoneNumber"], r["status"]) for r in result["results"]] == [
        ("(425) 555-0100", "+14255550100", "succeeded"), ("nope", None, "invalid")]
    assert result["summary"] == {"total": 2, "succeeded": 1, "invalid": 1, "failed": 0}
    assert emulator.opted_out(SENDER) == {"+14255550100"}


def test_a_completed_result_too_large_for_a_message_goes_to_a_blob(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient]
) -> None:
    results, container = storage
    numbers = [f"+1425555{n:04d}" for n in range(1_500)]
    assert processor_for().process(queued({"action": "check", "phoneNumbers": numbers})) == "completed"
    [pointer] = received(results)
    assert pointer["summary"]["succeeded"] == 1_500 and "results" not in pointer
    full = json.loads(container.download_blob(pointer["resultsBlob"]["name"]).readall())
    assert [r["phoneNumber"] for r in full["results"]] == numbers
    assert all(r["status"] == "succeeded" and r["optedOut"] is False for r in full["results"])


@pytest.mark.parametrize(
    ("body", "code"),
    [("not json", "InvalidJson"), ({"action": "delete", "phoneNumbers": ["+14255550100"]}, "ValidationFailed"),
     ({"action": "add", "phoneNumbers": ["+14255550100"], "sender": "+18005559999"}, "SenderNotAllowed")],
)
def test_an_invalid_message_is_rejected_once_and_never_retried(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient], body: Any, code: str
) -> None:
    message = queued(body)
    assert processor_for().process(message) == "rejected"
    [result] = received(storage[0])
    assert (result["status"], result["error"]["code"], result["correlationId"]) == ("rejected", code, message.id)


def test_a_base64_message_is_decoded() -> None:
    text = json.dumps({"action": "add", "phoneNumbers": ["+14255550100"]})
    assert decode_message(base64.b64encode(text.encode()), max_bytes=10_000) == json.loads(text)


def test_transient_failures_are_retried_until_the_last_delivery_publishes_failed(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient], emulator: AcsEmulator
) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=1.0, recipient_error_statuses=(429,))
    processor = processor_for(max_dequeue_count=2)
    body = {"action": "remove", "phoneNumbers": ["+14255550100"], "correlationId": "c-2"}
    with pytest.raises(RetryLater) as first:
        processor.process(queued(body, dequeue_count=1))
    assert first.value.final is False
    assert received(storage[0]) == []  # nothing announced while a delivery remains
    with pytest.raises(RetryLater) as last:
        processor.process(queued(body, dequeue_count=2))
    assert last.value.final is True
    [result] = received(storage[0])
    assert (result["status"], result["attempts"], result["error"]["code"]) == ("failed", 2, "AcsUnavailable")
    assert [(r["phoneNumber"], r["status"], r["error"]["code"]) for r in result["results"]] == [
        ("+14255550100", "failed", "AcsThrottled")]
