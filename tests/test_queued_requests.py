"""Queued requests in-process, against a real Azurite and the ACS emulator: what is published
for each message, results too large for a queue message, and when a message is retried."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import Azurite
from optouts.config import Settings, SettingsError
from optouts.usecases.queued_requests import (
    MAX_RESULT_MESSAGE_BYTES,
    QueuedMessage,
    QueuedRequestProcessor,
    ResultPublisher,
    RetryLater,
    decode_message,
)
from optouts.usecases.service import OptOutService

from .conftest import SENDER, azurite_for_module, fast_client

#: A queue message's own limit (64 KiB); the pointer to a blob must fit well within it.
QUEUE_MESSAGE_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def azurite() -> Iterator[Any]:
    with azurite_for_module() as running:
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


def test_a_result_too_large_with_no_container_still_announces_the_outcome(
    storage: tuple[QueueClient, ContainerClient],
) -> None:
    results, _ = storage
    result = big_result()
    ResultPublisher(results, None).publish(result)
    [announced] = received(results)
    assert {k: v for k, v in announced.items() if k != "error"} == {
        k: v for k, v in result.items() if k != "results"}
    assert announced["error"] == {"code": "ResultsNotDelivered",
                                  "message": "too large for a queue message and no results container is set"}


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


# -- exactly what is published --------------------------------------------------------------------


def without_time(result: dict[str, Any]) -> dict[str, Any]:
    assert result["completedAt"].endswith("Z") and len(result["completedAt"]) == len("2026-01-01T00:00:00.000Z")
    return {k: v for k, v in result.items() if k not in ("completedAt", "traceparent")}


def test_a_result_message_is_compact_ascii_json_text(
    storage: tuple[QueueClient, ContainerClient],
) -> None:
    results, container = storage
    result = {"correlationId": "ünï", "messageId": "m", "status": "completed", "results": []}
    ResultPublisher(results, container).publish(result)
    [message] = results.receive_messages(max_messages=1)
    assert message.content == '{"correlationId":"\\u00fcn\\u00ef","messageId":"m","status":"completed","results":[]}'


def test_a_result_of_exactly_the_limit_stays_in_the_message(storage: tuple[QueueClient, ContainerClient]) -> None:
    results, container = storage
    result = {"correlationId": "c", "messageId": "m", "status": "completed", "reason": ""}
    size = len(json.dumps(result, separators=(",", ":")).encode())
    result["reason"] = "r" * (MAX_RESULT_MESSAGE_BYTES - size)
    ResultPublisher(results, container).publish(result)
    assert received(results) == [result]


def test_publishing_the_same_large_result_again_replaces_its_blob(storage: tuple[QueueClient, ContainerClient]) -> None:
    results, container = storage
    publisher = ResultPublisher(results, container)
    publisher.publish(big_result())
    publisher.publish(big_result(2_100))  # a redelivered message's result, larger this time
    names = [pointer["resultsBlob"]["name"] for pointer in received(results)]
    assert len(names) == 2 and names[0] == names[1]
    assert len(json.loads(container.download_blob(names[1]).readall())["results"]) == 2_100


def test_a_rejected_result_says_exactly_why(processor_for: Any, storage: tuple[QueueClient, ContainerClient],
                                            caplog: pytest.LogCaptureFixture) -> None:
    message = queued({"action": "delete-everything-now", "phoneNumbers": [], "correlationId": "c-9"})
    with caplog.at_level(logging.WARNING, logger="optouts.usecases.queued_requests"):
        assert processor_for().process(message) == "rejected"
    [result] = received(storage[0])
    assert without_time(result) == {
        "correlationId": "c-9", "messageId": message.id, "status": "rejected",
        "error": {"status": 400, "code": "ValidationFailed",
                  "message": "action: must be one of add, remove, check; phoneNumbers: must contain at least one "
                             "phone number",
                  "errors": {"action": ["must be one of add, remove, check"],
                             "phoneNumbers": ["must contain at least one phone number"]}},
    }
    assert [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.queued_requests"] == [
        f"queue message {message.id} rejected: ValidationFailed"]


def test_a_rejected_result_without_a_usable_correlation_id_uses_the_message_id(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient]
) -> None:
    for correlation_id in ("", 7):
        message = queued({"action": 5, "phoneNumbers": ["+14255550100"], "correlationId": correlation_id})
        processor_for().process(message)
        [result] = received(storage[0])
        assert (result["correlationId"], "action" in result) == (message.id, False)
        storage[0].clear_messages()
    message = queued(b"[1, 2]")
    processor_for().process(message)
    [result] = received(storage[0])
    assert without_time(result) == {
        "correlationId": message.id, "messageId": message.id, "status": "rejected",
        "error": {"status": 400, "code": "ValidationFailed", "message": "$: the body must be a JSON object",
                  "errors": {"$": ["the body must be a JSON object"]}}}


def test_the_last_delivery_publishes_exactly_what_failed(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient], emulator: AcsEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=1.0, recipient_error_statuses=(502,))
    message = queued({"action": "add", "phoneNumbers": ["+14255550100", "x"], "correlationId": "c-3"},
                     dequeue_count=3)
    with caplog.at_level(logging.WARNING, logger="optouts.usecases.queued_requests"), pytest.raises(RetryLater) as raised:
        processor_for(max_dequeue_count=3).process(message)
    assert str(raised.value) == "AcsUnavailable: 1 numbers could not be processed"
    [result] = received(storage[0])
    assert without_time(result) == {
        "correlationId": "c-3", "messageId": message.id, "status": "failed", "action": "add", "sender": SENDER,
        "attempts": 3, "error": {"code": "AcsUnavailable", "message": "1 numbers could not be processed"},
        "results": [
            {"input": "+14255550100", "phoneNumber": "+14255550100", "status": "failed",
             "error": {"code": "AcsUnavailable", "message": "Bad Gateway"}},
            {"input": "x", "phoneNumber": None, "status": "invalid",
             "error": {"code": "UnexpectedCharacters",
                       "message": "a phone number may only contain digits, a leading +, spaces and - . ( ) /"}},
        ],
        "summary": {"total": 2, "succeeded": 0, "invalid": 1, "failed": 1},
    }
    assert [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.queued_requests"] == [
        f"queue message {message.id} attempt 3 of 3 failed (AcsUnavailable); giving up"]


def test_an_earlier_delivery_says_it_will_be_redelivered(
    processor_for: Any, emulator: AcsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.faults = FaultConfig(server_error_rate=1.0)
    message = queued({"action": "add", "phoneNumbers": ["+14255550100"]}, dequeue_count=1)
    with caplog.at_level(logging.WARNING, logger="optouts.usecases.queued_requests"), pytest.raises(RetryLater) as raised:
        processor_for(max_dequeue_count=3).process(message)
    assert raised.value.final is False and str(raised.value).startswith("AcsUnavailable: ")
    assert [r.getMessage() for r in caplog.records if r.name == "optouts.usecases.queued_requests"] == [
        f"queue message {message.id} attempt 1 of 3 failed (AcsUnavailable); will be redelivered"]


@pytest.mark.parametrize("broken", ["settings", "service"])
def test_a_misconfigured_gateway_retries_and_finally_says_so(
    storage: tuple[QueueClient, ContainerClient], broken: str
) -> None:
    results, container = storage
    good = Settings.from_environ({"ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:1/;accesskey=cHc=",
                                  "OPTOUT_DEFAULT_SENDER": SENDER})

    def misconfigured() -> Any:
        raise SettingsError("ACS_CONNECTION_STRING", "is missing")

    processor = QueuedRequestProcessor(
        settings=misconfigured if broken == "settings" else (lambda: good),
        service=misconfigured, publisher=ResultPublisher(results, container), max_dequeue_count=2, time_budget=5)
    body = {"action": "check", "phoneNumbers": ["+14255550100"], "correlationId": "c-4"}
    with pytest.raises(RetryLater) as first:
        processor.process(queued(body, dequeue_count=1))
    assert first.value.final is False and received(results) == []
    message = queued(body, dequeue_count=2)
    with pytest.raises(RetryLater) as last:
        processor.process(message)
    assert str(last.value) == "GatewayMisconfigured: App setting ACS_CONNECTION_STRING: is missing"
    [result] = received(results)
    expected = {"correlationId": "c-4" if broken == "service" else message.id, "messageId": message.id,
                "status": "failed", "attempts": 2,
                "error": {"code": "GatewayMisconfigured", "message": "App setting ACS_CONNECTION_STRING: is missing"}}
    if broken == "service":
        expected.update({"action": "check", "sender": SENDER})
    assert without_time(result) == expected


def test_the_pointer_is_compact(
    storage: tuple[QueueClient, ContainerClient],
) -> None:
    results, container = storage
    ResultPublisher(results, container).publish(big_result())
    [message] = results.receive_messages(max_messages=1)
    assert ", " not in message.content and '": ' not in message.content


def test_text_that_is_neither_json_nor_strict_base64_is_invalid_json(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient]
) -> None:
    message = queued(b"e3!0=")  # "{}" in base64 once the "!" is thrown away: it must not be
    assert processor_for().process(message) == "rejected"
    assert received(storage[0])[0]["error"]["code"] == "InvalidJson"


def test_every_call_failing_on_the_last_delivery_is_reported_with_the_command(
    processor_for: Any, storage: tuple[QueueClient, ContainerClient], emulator: AcsEmulator
) -> None:
    emulator.faults = FaultConfig(server_error_rate=1.0)
    message = queued({"action": "remove", "phoneNumbers": ["+14255550100"], "correlationId": "c-5"},
                     dequeue_count=3)
    with pytest.raises(RetryLater):
        processor_for(max_dequeue_count=3).process(message)
    [result] = received(storage[0])
    assert without_time(result) == {
        "correlationId": "c-5", "messageId": message.id, "status": "failed", "action": "remove", "sender": SENDER,
        "attempts": 3, "error": {"code": "AcsUnavailable",
                                 "message": "Azure Communication Services is throttling or unavailable; retry later"}}


def test_the_processors_time_budget_is_the_one_spent(
    emulator: AcsEmulator, storage: tuple[QueueClient, ContainerClient]
) -> None:
    results, container = storage
    settings = Settings.from_environ({"ACS_CONNECTION_STRING": emulator.connection_string,
                                      "OPTOUT_DEFAULT_SENDER": SENDER})
    emulator.faults = FaultConfig(hang_seconds=5)
    with fast_client(emulator.connection_string, time_budget=30) as client:
        service = OptOutService(client)
        processor = QueuedRequestProcessor(settings=lambda: settings, service=lambda: service,
                                           publisher=ResultPublisher(results, container),
                                           max_dequeue_count=3, time_budget=0.3)
        with pytest.raises(RetryLater) as raised:  # not a success after the 5 s hang
            processor.process(queued({"action": "add", "phoneNumbers": ["+14255550100"]}))
    assert str(raised.value).startswith("AcsUnavailable: ")
