"""500 queue messages through Azurite and the local host while the ACS emulator injects
transient faults: every message reaches exactly one terminal state, every valid message
ends `completed` with every number `succeeded` (redelivery is the retry), nothing is lost
and nothing lands in the poison queue."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost

from ..conftest import SENDER
from .faults import TRANSIENT_FAULTS, distinct_numbers
from .gateway import running_gateway

MESSAGE_COUNT = 500
NUMBERS_PER_MESSAGE = 4
#: Every 25th message is one the gateway must reject (20 of 500).
REJECT_EVERY = 25
MAX_DEQUEUE_COUNT = 5
WAIT_SECONDS = 240
REQUESTS, RESULTS, POISON = "optout-requests", "optout-results", "optout-requests-poison"


def queue(azurite: Azurite, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    return client


def drain(client: QueueClient) -> None:
    """Leave no message of an earlier test in a queue this test reads (bounded)."""
    for _ in range(100):
        messages = list(client.receive_messages(messages_per_page=32, max_messages=32))
        if not messages:
            return
        for message in messages:
            client.delete_message(message)


@pytest.fixture
def gateway(azurite: Azurite) -> Iterator[tuple[LocalHost, AcsEmulator]]:
    for name in (REQUESTS, RESULTS, POISON):
        drain(queue(azurite, name))
    with AcsEmulator(owned_senders={SENDER}) as acs, running_gateway(
        acs.connection_string, azurite.connection_string,
        OPTOUT_QUEUE_TIME_BUDGET_SECONDS="10",
        AzureFunctionsJobHost__extensions__queues__visibilityTimeout="00:00:01",
        AzureFunctionsJobHost__extensions__queues__maxPollingInterval="00:00:00.500",
        AzureFunctionsJobHost__extensions__queues__maxDequeueCount=str(MAX_DEQUEUE_COUNT),
    ) as host:
        yield host, acs


def invalid_message(n: int, correlation_id: str) -> str:
    kinds: list[dict[str, object]] = [
        {"action": "delete", "phoneNumbers": ["+14255550100"]},
        {"action": "add", "phoneNumbers": ["+14255550100"], "sender": "+18005559999"},
        {"action": "add", "phoneNumbers": "+14255550100"},
        {"action": "add", "phoneNumbers": ["+14255550100"], "extra": True},
        {"action": "add", "phoneNumbers": ["+1425555\ud800"]},  # a lone surrogate: not text (was lost)
    ]
    return json.dumps({**kinds[n % len(kinds)], "correlationId": correlation_id})


def test_five_hundred_messages_reach_one_terminal_state(
    gateway: tuple[LocalHost, AcsEmulator], azurite: Azurite
) -> None:
    _host, acs = gateway
    acs.faults = TRANSIENT_FAULTS
    numbers = distinct_numbers(206, (MESSAGE_COUNT - MESSAGE_COUNT // REJECT_EVERY) * NUMBERS_PER_MESSAGE)
    expected: dict[str, str] = {}
    sent_numbers: dict[str, list[str]] = {}
    requests = queue(azurite, REQUESTS)
    next_number = 0
    for n in range(MESSAGE_COUNT):
        correlation_id = str(uuid.uuid4())
        if n % REJECT_EVERY == REJECT_EVERY - 1:
            text = invalid_message(n // REJECT_EVERY, correlation_id)
            sent = requests.send_message(text)
            # A message that is not text at all cannot name its correlation id: its result uses the message id.
            expected[correlation_id if "\\ud800" not in text else sent.id] = "rejected"
            continue
        batch = numbers[next_number:next_number + NUMBERS_PER_MESSAGE]
        next_number += NUMBERS_PER_MESSAGE
        expected[correlation_id] = "completed"
        sent_numbers[correlation_id] = batch
        requests.send_message(json.dumps({"action": "add", "phoneNumbers": batch, "correlationId": correlation_id}))

    results, duplicates = collect_results(azurite, set(expected))
    states = {cid: results[cid]["status"] for cid in expected if cid in results}
    missing = set(expected) - set(results)
    stats = acs.stats
    print(f"\n{MESSAGE_COUNT} queue messages with transient faults: "
          f"{sum(s == 'completed' for s in states.values())} completed, "
          f"{sum(s == 'rejected' for s in states.values())} rejected, "
          f"{sum(s == 'failed' for s in states.values())} failed, {len(missing)} without a result, "
          f"{duplicates} duplicate results; ACS calls {stats['total_calls']} by status {stats['by_status']}")
    assert not missing, f"{len(missing)} messages never reached a terminal state"
    assert states == expected
    for cid, batch in sent_numbers.items():
        result = results[cid]
        assert [r["input"] for r in result["results"]] == batch
        assert all(r["status"] == "succeeded" for r in result["results"]), result["summary"]
    assert set(numbers) <= acs.opted_out(SENDER)
    assert queue(azurite, POISON).get_queue_properties().approximate_message_count == 0
    assert stats["by_status"].get(429, 0) > 0 and stats["by_status"].get(503, 0) > 0


def collect_results(azurite: Azurite, expected: set[str]) -> tuple[dict[str, dict], int]:
    """Read results until every expected correlation id has one (bounded in time)."""
    results: dict[str, dict] = {}
    duplicates = 0
    client = queue(azurite, RESULTS)
    deadline = time.monotonic() + WAIT_SECONDS
    while not expected <= set(results) and time.monotonic() < deadline:
        messages = list(client.receive_messages(messages_per_page=32, max_messages=32))
        for message in messages:
            result = json.loads(message.content)
            if result["correlationId"] in results:
                duplicates += 1  # delivery is at least once; a consumer keeps the first
            results.setdefault(result["correlationId"], result)
            client.delete_message(message)
        if not messages:
            time.sleep(0.2)
    return results, duplicates
