"""Queue path end to end: real Azurite, the local host feeding the queue trigger, the
ACS emulator behind it. Every message sent must reach exactly one terminal state."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from optouts import runtime

from .conftest import SENDER

REQUESTS = "optout-requests"
RESULTS = "optout-results"
POISON = "optout-requests-poison"
MAX_DEQUEUE_COUNT = 3
#: A bound, not an expectation: with the knobs below a message needs at most MAX_DEQUEUE_COUNT
#: deliveries of ~1 s visibility plus a 2 s budget each, so a broken behaviour fails in under a
#: minute instead of after minutes of waiting.
WAIT_SECONDS = 45


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER}) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(azurite: Azurite, acs: AcsEmulator) -> Iterator[LocalHost]:
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "ACS_CONNECTION_STRING": acs.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_MAX_NUMBERS": "50",
        "OPTOUT_QUEUE_TIME_BUDGET_SECONDS": "2",
        # The host lets app settings override host.json; the tests shorten the retry cycle.
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.500",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": str(MAX_DEQUEUE_COUNT),
    }
    runtime.reset()
    with LocalHost(app_dir=".", app_module="function_app", port=0, settings=settings) as host:
        yield host
    runtime.reset()


def queue(azurite: Azurite, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    try:
        client.create_queue()
    except Exception:  # already there
        pass
    return client


def send(azurite: Azurite, text: str) -> None:
    queue(azurite, REQUESTS).send_message(text)


def collect_results(azurite: Azurite, expected: set[str]) -> dict[str, dict]:
    """Read result messages until every expected correlation id has one (bounded)."""
    results: dict[str, dict] = {}
    client = queue(azurite, RESULTS)
    deadline = time.monotonic() + WAIT_SECONDS
    while not expected <= set(results) and time.monotonic() < deadline:
        for message in client.receive_messages(messages_per_page=32, max_messages=32):
            result = json.loads(message.content)
            results.setdefault(result["correlationId"], result)
            client.delete_message(message)
        time.sleep(0.2)
    return results


def message(action: str, numbers: list, **extra: object) -> tuple[str, str]:
    correlation_id = str(uuid.uuid4())
    body = {"action": action, "phoneNumbers": numbers, "correlationId": correlation_id, **extra}
    return correlation_id, json.dumps(body)


def test_every_message_reaches_one_terminal_state(gateway: LocalHost, azurite: Azurite, acs: AcsEmulator) -> None:
    acs.faults = FaultConfig(throttle_rate=0.2, server_error_rate=0.1, recipient_error_rate=0.1,
                             retry_after_seconds=0.05, seed=11)
    expected_state: dict[str, str] = {}
    expected_numbers: dict[str, list[tuple[str, str]]] = {}

    for n in range(10):
        typed = [f"+1425555{n:04d}", f"(425) 555-{n + 10:04d}"]
        correlation_id, text = message("add", typed)
        expected_state[correlation_id] = "completed"
        expected_numbers[correlation_id] = [(typed[0], typed[0]), (typed[1], f"+1425555{n + 10:04d}")]
        send(azurite, text)
    correlation_id, text = message("check", ["+14255550000", "not-a-number"])
    expected_state[correlation_id] = "completed"
    send(azurite, base64.b64encode(text.encode()).decode())  # producers that base64-encode
    correlation_id, text = message("remove", ["+14255550001"] * 51)
    expected_state[correlation_id] = "rejected"  # too many numbers
    send(azurite, text)
    correlation_id, text = message("remove", ["+14255550001"], sender="+18005559999")
    expected_state[correlation_id] = "rejected"  # sender not allowed
    send(azurite, text)
    correlation_id, text = message("delete", ["+14255550001"])
    expected_state[correlation_id] = "rejected"  # unknown action
    send(azurite, text)

    results = collect_results(azurite, set(expected_state))
    assert {cid: results[cid]["status"] for cid in expected_state if cid in results} == expected_state
    for cid, state in expected_state.items():
        result = results[cid]
        if state == "completed":
            assert result["summary"]["total"] == len(result["results"])
            assert result["completedAt"].endswith("Z")
            if cid in expected_numbers:  # completed only once every number got through the faults
                numbers = [(r["input"], r["phoneNumber"], r["status"]) for r in result["results"]]
                assert numbers == [(typed, e164, "succeeded") for typed, e164 in expected_numbers[cid]]
                assert result["summary"] == {"total": 2, "succeeded": 2, "invalid": 0, "failed": 0}
                assert {e164 for _, e164 in expected_numbers[cid]} <= acs.opted_out(SENDER)
        else:
            assert result["error"]["code"]
    check = next(r for r in results.values() if r.get("action") == "check")
    assert [r["status"] for r in check["results"]] == ["succeeded", "invalid"]
    assert isinstance(check["results"][0]["optedOut"], bool)  # messages run concurrently: no order


def test_garbage_is_rejected_with_the_message_id(gateway: LocalHost, azurite: Azurite) -> None:
    client = queue(azurite, REQUESTS)
    sent = client.send_message("this is not json")
    results = collect_results(azurite, {sent.id})
    assert results[sent.id]["status"] == "rejected"
    assert results[sent.id]["error"]["code"] == "InvalidJson"


def test_persistent_upstream_failure_ends_in_poison_byte_identical(
    gateway: LocalHost, azurite: Azurite, acs: AcsEmulator
) -> None:
    acs.faults = FaultConfig(server_error_rate=1.0, server_error_status=503)
    sent: dict[str, str] = {}
    for n in range(3):
        correlation_id, text = message("remove", [f"+1425555{n:04d}"], reason=f"ticket {n} — ünïcode")
        sent[correlation_id] = text
        send(azurite, text)
    try:
        results = collect_results(azurite, set(sent))
    finally:
        acs.faults = FaultConfig()
    assert {results[cid]["status"] for cid in sent} == {"failed"}
    assert all(results[cid]["attempts"] == MAX_DEQUEUE_COUNT for cid in sent)

    poison = queue(azurite, POISON)
    bodies: list[str] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(bodies) < len(sent) and time.monotonic() < deadline:
        for item in poison.receive_messages(messages_per_page=32, max_messages=32):
            bodies.append(item.content)
            poison.delete_message(item)
        time.sleep(0.2)
    assert sorted(bodies) == sorted(sent.values())
