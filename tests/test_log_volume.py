"""Log volume, bounded and asserted: a 1,000-number operation over HTTP, and a 1,000-number
queued operation through the local host that fails once (transiently) and is redelivered, log
a handful of lines at INFO, none with a traceback; an unreachable ACS is named, host and error
class, in one line."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import Azurite, free_port
from devtools.localhost import LocalHost
from optouts import runtime

from .conftest import SENDER
from .test_http_api import call

NUMBERS = [f"+1425555{n:04d}" for n in range(1000)]
WAIT_SECONDS = 120
#: What a 1,000-number operation may log at INFO and above: the request line, the summary,
#: and on the queue path one line per failed delivery from the processor and from the host.
MAX_LINES_HTTP = 4
MAX_LINES_QUEUE_WITH_ONE_REDELIVERY = 10


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records]


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what `make run` and the Functions host's default show
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


def test_a_1000_number_http_operation_logs_a_few_lines(emulator: AcsEmulator, azurite: Azurite,
                                                       monkeypatch: pytest.MonkeyPatch, capture: Capture) -> None:
    for name, value in {"ACS_CONNECTION_STRING": emulator.connection_string, "OPTOUT_DEFAULT_SENDER": SENDER,
                        "AzureWebJobsStorage": azurite.connection_string,
                        "OPTOUT_AUDIT_TABLE": f"audit{uuid.uuid4().hex[:12]}"}.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    try:
        response = call("RemoveOptOuts", body={"phoneNumbers": NUMBERS})
    finally:
        runtime.reset()

    assert response.status_code == 200
    assert json.loads(response.get_body())["summary"]["succeeded"] == 1000
    lines = capture.lines()
    assert len(lines) <= MAX_LINES_HTTP, lines
    assert any(line.startswith("INFO optouts.http: POST /api/optouts/remove 200 ") for line in lines)
    assert not any(r.exc_info for r in capture.records)


def test_unreachable_acs_is_named_by_host_and_error_class(emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch,
                                                          capture: Capture) -> None:
    port = free_port()
    monkeypatch.setenv("ACS_CONNECTION_STRING",
                       f"endpoint=http://127.0.0.1:{port}/;accesskey={base64.b64encode(b'k' * 32).decode()}")
    monkeypatch.setenv("OPTOUT_DEFAULT_SENDER", SENDER)
    monkeypatch.setenv("OPTOUT_TIME_BUDGET_SECONDS", "2")
    monkeypatch.setenv("OPTOUT_AUDIT_WRITES", "false")
    runtime.reset()
    try:
        response = call("RemoveOptOuts", body={"phoneNumbers": NUMBERS})
    finally:
        runtime.reset()

    assert response.status_code == 503
    lines = capture.lines()
    assert any("ACS at 127.0.0.1 gave no answer" in line and "ServiceRequestError" in line for line in lines), lines
    assert any("ACS at 127.0.0.1 failed every remove call" in line for line in lines), lines
    assert len(lines) <= MAX_LINES_HTTP + 2, lines
    assert not any(r.exc_info for r in capture.records)


def test_a_1000_number_queued_operation_redelivered_once_logs_a_few_lines(
    azurite: Azurite, capture: Capture
) -> None:
    with AcsEmulator(owned_senders={SENDER}) as acs:
        acs.faults = FaultConfig(server_error_rate=1.0)
        settings = {
            "AzureWebJobsStorage": azurite.connection_string,
            "ACS_CONNECTION_STRING": acs.connection_string,
            "OPTOUT_DEFAULT_SENDER": SENDER,
            "OPTOUT_QUEUE_TIME_BUDGET_SECONDS": "1",
            "OPTOUT_AUDIT_WRITES": "false",
            "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
            "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.500",
        }
        results = QueueClient.from_connection_string(azurite.connection_string, "optout-results")
        requests = QueueClient.from_connection_string(azurite.connection_string, "optout-requests")
        for queue in (results, requests):
            try:
                queue.create_queue()
            except Exception:  # already there
                pass
        correlation_id = str(uuid.uuid4())
        runtime.reset()
        with LocalHost(app_dir=".", app_module="function_app", port=0, settings=settings):
            requests.send_message(json.dumps({"action": "add", "phoneNumbers": NUMBERS,
                                              "correlationId": correlation_id}))
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline and not any("will be redelivered" in line for line in capture.lines()):
                time.sleep(0.1)
            acs.faults = FaultConfig()  # ACS is back for the second delivery
            result = None
            while time.monotonic() < deadline and result is None:
                for message in results.receive_messages(messages_per_page=32):
                    body = json.loads(message.content)
                    results.delete_message(message)
                    if body["correlationId"] == correlation_id:
                        result = body
                time.sleep(0.2)
        runtime.reset()

    assert result is not None and result["status"] == "completed"
    assert result["summary"]["succeeded"] == 1000
    lines = capture.lines()
    assert any("will be redelivered" in line for line in lines)
    assert any("failed on message" in line and "Redelivery" in line for line in lines), lines
    assert len(lines) <= MAX_LINES_QUEUE_WITH_ONE_REDELIVERY, lines
    assert not any(r.exc_info for r in capture.records), "a routine redelivery logged a traceback"
