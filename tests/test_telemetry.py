"""Telemetry through OpenTelemetry's in-memory exporter and reader: the spans and metrics the
gateway emits, with their names and attributes, a queued request traced from its enqueuer to its
result, and no phone number unmasked in any attribute."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import Azurite
from optouts import runtime, telemetry
from optouts.providers.acs import AcsUnavailableError
from optouts.usecases.queued_requests import (
    QueuedMessage,
    QueuedRequestProcessor,
    ResultPublisher,
    RetryLater,
)

from .conftest import OTHER_SENDER, SENDER, azurite_for_module, fast_client
from .test_http_api import body_of, call

SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()
CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID}-00f067aa0ba902b7-01"
UNMASKED_NUMBER = re.compile(r"\+?\d{10,15}")


class _WhileThisModuleRuns(SimpleSpanProcessor):
    """Keeps spans only while these tests run: the providers outlive the module (they are
    set-once per process), and later modules should not fill the exporter."""

    active = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            super().on_end(span)


_PROCESSOR = _WhileThisModuleRuns(SPANS)


@pytest.fixture(scope="module", autouse=True)
def sdk() -> Iterator[None]:
    """The gateway's instruments, created at import as the API's proxies, record from here on."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_PROCESSOR)
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    _PROCESSOR.active = True
    yield
    _PROCESSOR.active = False
    SPANS.clear()


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with azurite_for_module() as running:
        yield running


@pytest.fixture
def gateway(emulator: AcsEmulator, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[AcsEmulator]:
    table = f"audit{uuid.uuid4().hex[:12]}"
    for name, value in {
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "OPTOUT_AUDIT_TABLE": table,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
        "OPTOUT_TIME_BUDGET_SECONDS": "10",
    }.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    SPANS.clear()
    yield emulator
    runtime.reset()


def points(name: str) -> list[Any]:
    """Every data point of metric `name` so far (cumulative, as the SDK keeps them)."""
    data = READER.get_metrics_data()
    found = []
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def total(name: str, **attributes: object) -> float:
    """Sum (counters) or count (histograms) of the points whose attributes include `attributes`."""
    result = 0.0
    for point in points(name):
        if all(point.attributes.get(key) == value for key, value in attributes.items()):
            result += getattr(point, "value", None) if hasattr(point, "value") else point.count
    return result


def spans_named(prefix: str) -> list[ReadableSpan]:
    return [span for span in SPANS.get_finished_spans() if span.name.startswith(prefix)]


def assert_no_unmasked_number(spans: list[ReadableSpan]) -> None:
    texts = [f"{key}={value}" for span in spans for key, value in (span.attributes or {}).items()]
    texts += [span.name for span in spans]
    texts += [f"{key}={value}" for name in ("optouts.numbers.processed", "optouts.upstream.duration",
                                            "optouts.upstream.retries", "optouts.queue.messages",
                                            "http.server.request.duration", "optouts.audit.lag")
              for point in points(name) for key, value in point.attributes.items()]
    assert texts
    leaks = [text for text in texts if UNMASKED_NUMBER.search(text)]
    assert leaks == []


# -- HTTP --------------------------------------------------------------------------------------

def test_an_http_operation_is_one_trace_with_the_callers_trace_id(gateway: AcsEmulator) -> None:
    before = total("optouts.numbers.processed", **{"optouts.action": "add", "optouts.status": "succeeded"})
    response = call("AddOptOuts", body={"phoneNumbers": ["+14255550101", "+14255550102", "garbage"]},
                    headers={"traceparent": CALLER_TRACEPARENT})

    assert response.status_code == 200
    [server] = spans_named("POST ")
    [operation] = spans_named("optouts.add")
    assert server.name == "POST /api/optouts/add" and server.kind is SpanKind.SERVER
    assert server.context.trace_id == int(CALLER_TRACE_ID, 16)
    assert server.parent is not None and server.parent.span_id == 0x00f067aa0ba902b7
    assert dict(server.attributes or {}) == {"http.request.method": "POST", "http.route": "/api/optouts/add",
                                             "http.response.status_code": 200}
    assert operation.parent is not None and operation.parent.span_id == server.context.span_id
    assert operation.attributes["optouts.sender"] == "+1800***0100"
    assert (operation.attributes["optouts.numbers.requested"], operation.attributes["optouts.numbers.succeeded"],
            operation.attributes["optouts.numbers.invalid"]) == (3, 2, 1)
    # The answer's trace id is the span's: a caller's report leads straight to the trace.
    assert response.headers["x-trace-id"].split("-")[1] == CALLER_TRACE_ID
    assert body_of(response)["audit"]["status"] == "accepted"

    after = total("optouts.numbers.processed", **{"optouts.action": "add", "optouts.status": "succeeded"})
    assert after - before == 2
    assert total("optouts.numbers.processed", **{"optouts.action": "add", "optouts.provider": "acs",
                                                 "optouts.status": "invalid"}) >= 1
    assert total("optouts.upstream.duration", **{"optouts.operation": "add", "optouts.provider": "acs",
                                                 "http.response.status_code": 200}) >= 1
    assert total("http.server.request.duration", **{"http.route": "/api/optouts/add",
                                                    "http.response.status_code": 200}) >= 1
    assert total("optouts.audit.lag", **{"optouts.audit.stage": "recorded"}) >= 1
    assert_no_unmasked_number(SPANS.get_finished_spans())


def test_a_route_with_a_number_in_its_path_shows_the_template(gateway: AcsEmulator) -> None:
    response = call("GetOptOutStatus", method="GET", route_params={"phoneNumber": "+14255550177"},
                    params={"code": "not-a-real-key"})
    assert response.status_code == 200
    [server] = spans_named("GET ")
    assert server.name == "GET /api/optouts/{phoneNumber}"
    assert server.attributes["http.route"] == "/api/optouts/{phoneNumber}"
    assert_no_unmasked_number(SPANS.get_finished_spans())


def test_upstream_retries_and_failed_attempts_are_counted(emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(server_error_rate=1.0)
    before_retries = total("optouts.upstream.retries", **{"optouts.operation": "remove"})
    before_503 = total("optouts.upstream.duration", **{"optouts.operation": "remove",
                                                       "http.response.status_code": 503, "error.type": "503"})
    with fast_client(emulator.connection_string, retry_total=2) as client, pytest.raises(AcsUnavailableError):
        client.remove(SENDER, ["+14255550103"])
    assert total("optouts.upstream.retries", **{"optouts.operation": "remove"}) - before_retries == 2
    assert total("optouts.upstream.duration", **{"optouts.operation": "remove", "http.response.status_code": 503,
                                                 "error.type": "503"}) - before_503 == 3


# -- queue ----------------------------------------------------------------------------------

def processor(azurite: Azurite, results: str) -> QueuedRequestProcessor:
    return QueuedRequestProcessor(
        settings=runtime.get_settings, service=runtime.get_service,
        publisher=ResultPublisher(QueueClient.from_connection_string(azurite.connection_string, results), None),
        max_dequeue_count=2, time_budget=2, requests_queue="optout-requests",
    )


def result_of(azurite: Azurite, results: str) -> dict[str, Any]:
    [message] = QueueClient.from_connection_string(azurite.connection_string, results).receive_messages()
    return json.loads(message.content)


def test_a_queued_request_is_traced_from_its_enqueuer_to_its_result(gateway: AcsEmulator, azurite: Azurite) -> None:
    results = f"results-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"action": "remove", "phoneNumbers": ["+14255550104"], "traceparent": CALLER_TRACEPARENT})
    # Counted on the same attributes before and after: other tests' queues may have counted too.
    completed = {"optouts.outcome": "completed", "messaging.destination.name": "optout-requests"}
    before = total("optouts.queue.messages", **completed)

    assert processor(azurite, results).process(QueuedMessage("m-1", body.encode(), 1)) == "completed"

    [consumer] = spans_named("process ")
    assert consumer.name == "process optout-requests" and consumer.kind is SpanKind.CONSUMER
    assert consumer.context.trace_id == int(CALLER_TRACE_ID, 16)
    assert consumer.attributes["messaging.message.id"] == "m-1"
    assert consumer.attributes["optouts.outcome"] == "completed"
    [operation] = spans_named("optouts.remove")
    assert operation.parent is not None and operation.parent.span_id == consumer.context.span_id
    result = result_of(azurite, results)
    assert result["status"] == "completed"
    # Whoever reads the result continues the same trace, as a child of the processing span.
    assert result["traceparent"] == f"00-{CALLER_TRACE_ID}-{consumer.context.span_id:016x}-01"
    assert total("optouts.queue.messages", **completed) - before == 1
    assert_no_unmasked_number(SPANS.get_finished_spans())


def test_queue_outcomes_rejected_retried_and_failed(gateway: AcsEmulator, azurite: Azurite) -> None:
    results = f"results-{uuid.uuid4().hex[:8]}"
    counts = {outcome: total("optouts.queue.messages", **{"optouts.outcome": outcome})
              for outcome in ("rejected", "retried", "failed")}
    queued = processor(azurite, results)

    assert queued.process(QueuedMessage("bad", b"not json", 1)) == "rejected"
    gateway.faults = FaultConfig(server_error_rate=1.0)
    message = json.dumps({"action": "add", "phoneNumbers": ["+14255550105"]}).encode()
    with pytest.raises(RetryLater):
        queued.process(QueuedMessage("flaky", message, 1))
    with pytest.raises(RetryLater):
        queued.process(QueuedMessage("flaky", message, 2))  # the last delivery: failed, to poison

    deltas = {outcome: total("optouts.queue.messages", **{"optouts.outcome": outcome}) - counts[outcome]
              for outcome in counts}
    assert deltas == {"rejected": 1, "retried": 1, "failed": 1}
    # A message without a traceparent starts its own trace; an invalid one is ignored, not propagated.
    assert all(span.parent is None for span in spans_named("process "))


@pytest.mark.parametrize("value", [None, 42, "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "garbage",
                                   CALLER_TRACEPARENT + "x", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\n"])
def test_hostile_traceparents_are_ignored(value: object) -> None:
    assert telemetry.parent_context(value) is None


def test_route_template_never_shows_route_values_or_the_query() -> None:
    assert telemetry.route_template("http://h/api/optouts/%2B14255550100/history?code=secret",
                                    {"phoneNumber": "+14255550100"}) == "/api/optouts/{phoneNumber}/history"


def test_audit_table_is_written_for_the_lag_sample(gateway: AcsEmulator, azurite: Azurite) -> None:
    """The audit-lag sample is taken around a real write (not a no-op trail)."""
    before = total("optouts.audit.lag")
    receipt = body_of(call("RemoveOptOuts", body={"phoneNumbers": ["+14255550106"]}))["audit"]
    container = runtime.get_settings().audit_container
    with ContainerClient.from_connection_string(azurite.connection_string, container) as client:
        names = {blob.name for blob in client.list_blobs()}
    operation_id = receipt["operationId"]
    assert {f"{operation_id}/intent.json", f"{operation_id}/outcome.json"} <= names  # the journal, written
    assert total("optouts.audit.lag") - before == 1
