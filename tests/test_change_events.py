"""Change events against a real Azurite: one CloudEvents 1.0 event per effective change, from every
channel (HTTP add and remove, the queue, an end user's keyword written as an ordinary audit
operation), sent by the indexer once the outcome is in the history; nothing for checks or for
outcomes that changed nothing known; a sink that is down is retried without duplicating the history;
and the Event Grid custom topic, reached with the managed identity, gets well-formed batches."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azure_standins import EventGridTopicStandIn, ManagedIdentityStandIn
from devtools.azure_standins.event_grid import EVENT_GRID_RESOURCE, batch_problem
from devtools.azure_standins.managed_identity import CONFLICTING_ENVIRONMENT
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from optouts import runtime
from optouts.audit import events as change
from optouts.audit.callers import AuditContext, queue_context
from optouts.audit.index import AuditIndexer
from optouts.audit.sinks import MAX_BATCH_EVENTS, EventPublisher, QueueSink
from optouts.audit.trail import (
    AuditTrail,
    EndUserChange,
    NumberOutcome,
    OperationIntent,
    OperationOutcome,
    bounded_queue_client,
    load_json,
    storage_for,
)
from optouts.config import EventSettings
from optouts.domain.commands import OptOutCommand
from optouts.domain.operations import Operation
from optouts.usecases.queued_requests import QueuedMessage, QueuedRequestProcessor
from optouts.usecases.service import OptOutService

from .conftest import SENDER, fast_client
from .test_audit import (  # noqa: F401 - fixtures
    NUMBER,
    OTHER_NUMBER,
    RECONCILE_SECONDS,
    WAIT_SECONDS,
    audit_env,
    azurite,
    drain_index,
    entities,
    names,
)
from .test_http_api import body_of, call

THIRD_NUMBER = "+14255550144"
CLIENT_ID = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


@pytest.fixture
def events_env(audit_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The audited in-process gateway, its change events in a fresh queue."""
    names = {**audit_env, "events": f"events-{uuid.uuid4().hex[:12]}"}
    monkeypatch.setenv("OPTOUT_EVENTS_QUEUE", names["events"])
    for name in ("OPTOUT_EVENTS_SINKS", "OPTOUT_EVENTS_TOPIC_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    return names


def read_events(azurite: Azurite, queue_name: str) -> list[dict[str, Any]]:
    """Every message of the events queue (each one event), removed as read."""
    queue = QueueClient.from_connection_string(azurite.connection_string, queue_name)
    found: list[dict[str, Any]] = []
    try:
        while True:
            batch = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message.content))
                queue.delete_message(message)
    except Exception as error:  # no queue: nothing was ever sent
        if "QueueNotFound" in str(error) or getattr(error, "status_code", None) == 404:
            return found
        raise


def by_number(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {event["data"]["phoneNumber"]: event for event in events}


# -- the event itself ----------------------------------------------------------------------------

ACCEPTED = datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=UTC)


def intent_of(action: str, numbers: tuple[str, ...], channel: str = "http",
              operation_id: str = "a" * 32) -> OperationIntent:
    context = AuditContext(channel, "function-key", "corr-1", trace_id="corr-1")
    return OperationIntent(operation_id, ACCEPTED, action, SENDER, numbers, context, "ticket 1", provider="acs")


def test_only_succeeded_adds_and_removes_are_changes() -> None:
    numbers = ("+14255550101", "+14255550102", "+14255550103", "+14255550104")
    outcome = OperationOutcome(ACCEPTED + timedelta(seconds=1), (
        NumberOutcome("succeeded", 200), NumberOutcome("invalid", 400, "InvalidPhoneNumber"),
        NumberOutcome("failed", 503, "AcsUnavailable"), NumberOutcome("unknown")))
    (added,) = change.change_events(intent_of("add", numbers), outcome)
    assert added.data["phoneNumber"] == numbers[0] and added.type == "optouts.number.optedOut"
    (removed,) = change.change_events(intent_of("remove", numbers), outcome)
    assert removed.type == "optouts.number.optedIn" and removed.data["state"] == "optedIn"
    assert change.change_events(intent_of("check", numbers), outcome) == []
    assert change.change_events(intent_of("add", numbers), None) == []  # no outcome: nothing is known


def test_an_event_is_cloudevents_json_with_a_deterministic_id() -> None:
    outcome = OperationOutcome(ACCEPTED + timedelta(seconds=1), (NumberOutcome("succeeded", 200),))
    (event,) = change.change_events(intent_of("add", (NUMBER,)), outcome)
    assert event.to_json() == {
        "specversion": "1.0", "id": event.id, "source": "/optouts", "type": "optouts.number.optedOut",
        "subject": f"senders/{SENDER}", "time": "2026-12-01T09:30:00.123456Z", "datacontenttype": "application/json",
        "sequence": event.sequence,
        "data": {"sender": SENDER, "phoneNumber": NUMBER, "maskedPhoneNumber": "+1425***0142", "state": "optedOut",
                 "optedOut": True, "action": "add", "channel": "http", "endUser": False, "operationId": "a" * 32,
                 "occurredAt": "2026-12-01T09:30:00.123456Z", "completedAt": "2026-12-01T09:30:01.123456Z",
                 "correlationId": "corr-1", "provider": "acs"},
    }
    # The same change always has the same id; another number or operation another one; no number in it.
    assert event.id == change.event_id("a" * 32, SENDER, NUMBER) == change.change_events(
        intent_of("add", (NUMBER,)), outcome)[0].id
    assert event.id.startswith("a" * 32) and "4255550142" not in event.id
    assert len({change.event_id("a" * 32, SENDER, NUMBER), change.event_id("a" * 32, SENDER, OTHER_NUMBER),
                change.event_id("b" * 32, SENDER, NUMBER)}) == 3
    # `sequence` sorts as text in the order of acceptance, ties broken by the operation id.
    later = change.sequence(ACCEPTED + timedelta(microseconds=1), "0" * 32)
    assert change.sequence(ACCEPTED, "a" * 32) < change.sequence(ACCEPTED, "b" * 32) < later


def test_event_settings_default_to_the_queue_and_refuse_what_cannot_work() -> None:
    default = EventSettings.from_environ({})
    assert (default.sinks, default.queue, default.topic_endpoint) == (("queue",), "optout-events", None)
    assert EventSettings.from_environ({"OPTOUT_EVENTS_SINKS": "none"}).sinks == ()
    both = EventSettings.from_environ({"OPTOUT_EVENTS_SINKS": "EventGrid, queue",
                                       "OPTOUT_EVENTS_TOPIC_ENDPOINT": "https://t.westus-1.eventgrid.azure.net/api/events"})
    assert both.sinks == ("eventgrid", "queue")
    for environ, setting in (
        ({"OPTOUT_EVENTS_SINKS": "eventgrid"}, "OPTOUT_EVENTS_TOPIC_ENDPOINT"),
        ({"OPTOUT_EVENTS_SINKS": "eventgrid", "OPTOUT_EVENTS_TOPIC_ENDPOINT": "http://t/api/events"},
         "OPTOUT_EVENTS_TOPIC_ENDPOINT"),
        ({"OPTOUT_EVENTS_SINKS": "webhook"}, "OPTOUT_EVENTS_SINKS"),
        ({"OPTOUT_EVENTS_SINKS": "none,queue"}, "OPTOUT_EVENTS_SINKS"),
        ({"OPTOUT_EVENTS_QUEUE": "Events_Queue"}, "OPTOUT_EVENTS_QUEUE"),
    ):
        assert [p.setting for p in EventSettings.problems(environ)] == [setting], environ
    described = EventSettings.from_environ({}).describe("OPTOUT_AUDIT_WRITES is false")
    assert described["enabled"] is False and "audit trail" in str(described["disabledReason"])


# -- every channel, on Azurite ------------------------------------------------------------------------

def test_http_add_and_remove_emit_one_event_per_changed_number(events_env: dict[str, str], azurite: Azurite,
                                                                emulator: AcsEmulator) -> None:
    added = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER, OTHER_NUMBER, "garbage", NUMBER]}))
    assert added["summary"]["succeeded"] == 3  # per input: the duplicate is reported, sent once
    assert read_events(azurite, events_env["events"]) == []  # nothing before the indexer ran: no added latency
    assert drain_index(azurite, events_env["queue"]) == ["indexed", "already-indexed"]
    events = by_number(read_events(azurite, events_env["events"]))
    assert set(events) == {NUMBER, OTHER_NUMBER}  # one per distinct number ACS changed
    operation_id = added["audit"]["operationId"]
    for number, event in events.items():
        assert (event["type"], event["id"], event["subject"]) == (
            "optouts.number.optedOut", change.event_id(operation_id, SENDER, number), f"senders/{SENDER}")
        assert event["data"] == {**event["data"], "phoneNumber": number, "state": "optedOut", "optedOut": True,
                                 "channel": "http", "operationId": operation_id, "action": "add", "sender": SENDER}
        assert event["data"]["occurredAt"] == added["audit"]["acceptedAt"]

    removed = body_of(call("RemoveOptOuts", body={"phoneNumbers": [NUMBER]}))
    drain_index(azurite, events_env["queue"])
    (event,) = read_events(azurite, events_env["events"])
    assert (event["type"], event["data"]["state"], event["data"]["operationId"]) == (
        "optouts.number.optedIn", "optedIn", removed["audit"]["operationId"])
    assert event["sequence"] > events[NUMBER]["sequence"]  # consumers order one number's events by it


def test_a_queued_request_emits_with_channel_queue(events_env: dict[str, str], azurite: Azurite,
                                                   emulator: AcsEmulator) -> None:
    emulator.seed_opt_outs(SENDER, [NUMBER])
    published: list[dict[str, Any]] = []

    class Results:
        def publish(self, result: dict[str, Any]) -> None:
            published.append(result)

    processor = QueuedRequestProcessor(settings=runtime.get_settings, service=runtime.get_service,
                                       publisher=Results(), max_dequeue_count=5, time_budget=20)  # type: ignore[arg-type]
    body = json.dumps({"action": "remove", "phoneNumbers": [NUMBER, OTHER_NUMBER], "correlationId": "crm-42"})
    processor.process(QueuedMessage("m-1", body.encode(), dequeue_count=1))
    (result,) = published
    drain_index(azurite, events_env["queue"])
    events = by_number(read_events(azurite, events_env["events"]))
    assert set(events) == {NUMBER, OTHER_NUMBER}
    assert {(e["data"]["channel"], e["data"]["correlationId"], e["data"]["operationId"], e["data"]["state"])
            for e in events.values()} == {("queue", "crm-42", result["audit"]["operationId"], "optedIn")}


def test_a_keyword_operation_emits_like_any_other(events_env: dict[str, str], azurite: Azurite) -> None:
    """An end user's STOP, recorded through the trail's public API as an operation of the `keyword`
    channel: no special case anywhere."""
    trail = runtime.get_audit_trail()
    context = AuditContext("keyword", "end-user", "sms-message-7", trace_id=None)
    stop = trail.begin("add", SENDER, [THIRD_NUMBER], context, "STOP", provider="acs")
    receipt = trail.finish(stop, {THIRD_NUMBER: NumberOutcome("succeeded", 200)})
    assert receipt.outcome_recorded
    drain_index(azurite, events_env["queue"])
    (event,) = read_events(azurite, events_env["events"])
    assert (event["type"], event["data"]["channel"], event["data"]["phoneNumber"], event["data"]["correlationId"]) == (
        "optouts.number.optedOut", "keyword", THIRD_NUMBER, "sms-message-7")


def test_an_end_users_stop_recorded_from_an_sms_emits_its_change_once(events_env: dict[str, str],
                                                                     azurite: Azurite) -> None:
    """The keyword path itself (AuditTrail.record_end_user_change), delivered twice as Event Grid may:
    one event, marked as the end user's own, whose id is the same on every emission."""
    change = EndUserChange("sms-msg-42", datetime(2026, 12, 2, 5, 0, tzinfo=UTC), "add", SENDER, THIRD_NUMBER, "STOP")
    trail = runtime.get_audit_trail()
    first = trail.record_end_user_change(change)
    assert trail.record_end_user_change(change).operation_id == first.operation_id
    drain_index(azurite, events_env["queue"])
    (event,) = read_events(azurite, events_env["events"])
    assert (event["type"], event["data"]["channel"], event["data"]["endUser"], event["data"]["operationId"],
            event["data"]["phoneNumber"]) == ("optouts.number.optedOut", "keyword", True, first.operation_id,
                                              THIRD_NUMBER)


def test_changes_that_did_not_happen_and_checks_emit_nothing(events_env: dict[str, str], azurite: Azurite,
                                                             emulator: AcsEmulator,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_AUDIT_CHECKS", "true")
    runtime.reset()
    assert body_of(call("CheckOptOuts", body={"phoneNumbers": [NUMBER]}))["audit"]["status"] == "accepted"
    emulator.faults = FaultConfig(recipient_error_rate=1.0)
    assert body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER]}))["results"][0]["status"] == "failed"
    emulator.faults = FaultConfig()
    # The worker died around the ACS call: the reconcile records `unknown`, which changes nothing known.
    trail = runtime.get_audit_trail()
    trail.begin("remove", SENDER, [OTHER_NUMBER], queue_context("optout-requests", "c-9"), None)
    results = drain_index(azurite, events_env["queue"])
    assert "unknown" in results and results.count("indexed") == 2
    assert read_events(azurite, events_env["events"]) == []
    assert {e["Outcome"] for e in entities(azurite, events_env["table"])} == {"succeeded", "failed", "unknown"}


def test_with_the_audit_trail_off_no_event_is_sent_and_health_says_why(
        events_env: dict[str, str], azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_AUDIT_WRITES", "false")
    runtime.reset()
    assert body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER]}))["summary"]["succeeded"] == 1
    drain_index(azurite, events_env["queue"])
    assert read_events(azurite, events_env["events"]) == []
    events = body_of(call("Health", method="GET"))["configuration"]["events"]
    assert events == {"sinks": ["queue"], "queue": events_env["events"], "topicEndpoint": None, "enabled": False,
                      "disabledReason": "change events come from the audit trail, which is off "
                                        "(OPTOUT_AUDIT_WRITES is false)"}


# -- delivery: at least once, history never duplicated -------------------------------------------------

class FlakySink:
    """A real queue sink that is down for the first `failures` deliveries."""

    name = "flaky"

    def __init__(self, inner: QueueSink, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    def publish(self, events: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ServiceRequestError("the events queue is down")
        self.inner.publish(events)

    def close(self) -> None:
        self.inner.close()


def direct(events_env: dict[str, str], azurite: Azurite, emulator: AcsEmulator, failures: int,
           monkeypatch: pytest.MonkeyPatch) -> tuple[OptOutService, AuditIndexer, FlakySink]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    storage = storage_for(container=events_env["container"], table=events_env["table"], queue=events_env["queue"])
    service = OptOutService(fast_client(emulator.connection_string), AuditTrail(storage, reconcile_delay=1))
    sink = FlakySink(QueueSink(lambda: bounded_queue_client(events_env["events"])), failures)
    publisher = EventPublisher([sink])
    indexer = AuditIndexer(storage_for(container=events_env["container"], table=events_env["table"],
                                       queue=events_env["queue"]), reconcile_delay=RECONCILE_SECONDS,
                           events=lambda: publisher)
    return service, indexer, sink


def index_messages(azurite: Azurite, queue_name: str) -> Iterator[Any]:
    queue = QueueClient.from_connection_string(azurite.connection_string, queue_name)
    yield from queue.receive_messages(visibility_timeout=1, max_messages=1)


def test_a_sink_that_is_down_gets_the_events_on_redelivery_without_duplicating_history(
        events_env: dict[str, str], azurite: Azurite, emulator: AcsEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    service, indexer, sink = direct(events_env, azurite, emulator, 1, monkeypatch)
    numbers = (NUMBER, OTHER_NUMBER, THIRD_NUMBER)
    report = service.execute(OptOutCommand(Operation.ADD, numbers, SENDER, "US"), audit=AuditContext(
        "http", "function-key", "t-1"))
    operation_id = report.audit.operation_id  # type: ignore[union-attr]
    (message,) = index_messages(azurite, events_env["queue"])  # the outcome's index message
    with pytest.raises(ServiceRequestError):  # not acknowledged: the host delivers it again
        indexer.process(message.content.encode(), dequeue_count=1)
    container = storage_for(container=events_env["container"], table=events_env["table"], queue=events_env["queue"])
    marker = load_json(container, f"{operation_id}/index.json")
    assert marker is not None and (marker["outcome"], marker["events"]) == ("recorded", "pending")
    assert len(entities(azurite, events_env["table"])) == 3  # the history is there already

    results = drain_index(azurite, events_env["queue"], indexer)  # the redelivery, then the reconcile
    assert sorted(results) == ["already-indexed", "events-sent"]
    assert Counter(e["PhoneNumber"] for e in entities(azurite, events_env["table"])) == Counter(numbers)
    events = read_events(azurite, events_env["events"])
    assert sorted(e["id"] for e in events) == sorted(change.event_id(operation_id, SENDER, n) for n in numbers)
    marker = load_json(container, f"{operation_id}/index.json")
    assert marker is not None and (marker["events"], marker["eventCount"]) == ("sent", 3)


def test_on_the_last_delivery_the_reconcile_takes_over_the_events(
        events_env: dict[str, str], azurite: Azurite, emulator: AcsEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    service, indexer, sink = direct(events_env, azurite, emulator, 5, monkeypatch)
    service.execute(OptOutCommand(Operation.REMOVE, (NUMBER,), SENDER, "US"),
                    audit=AuditContext("http", "function-key", "t-2"))
    (message,) = index_messages(azurite, events_env["queue"])
    for delivery in range(1, 5):
        with pytest.raises(ServiceRequestError):
            indexer.process(message.content.encode(), dequeue_count=delivery, max_dequeue_count=5)
    assert indexer.process(message.content.encode(), dequeue_count=5, max_dequeue_count=5) == "deferred"
    QueueClient.from_connection_string(azurite.connection_string, events_env["queue"]).delete_message(message)
    assert read_events(azurite, events_env["events"]) == []
    assert drain_index(azurite, events_env["queue"], indexer) == ["events-sent", "already-indexed"]
    assert len(read_events(azurite, events_env["events"])) == 1 and sink.calls == 6


def test_a_sink_failing_after_another_succeeded_sends_the_same_ids_again(
        events_env: dict[str, str], azurite: Azurite, emulator: AcsEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At least once: the queue took the events, the second sink did not; the redelivery sends
    them to both again, with the same ids, for consumers to deduplicate."""
    service, indexer, _ = direct(events_env, azurite, emulator, 0, monkeypatch)
    flaky = FlakySink(QueueSink(lambda: bounded_queue_client(f"{events_env['events']}-b")), 1)
    publisher = EventPublisher([QueueSink(lambda: bounded_queue_client(events_env["events"])), flaky])
    indexer._events = lambda: publisher  # type: ignore[attr-defined]
    service.execute(OptOutCommand(Operation.ADD, (NUMBER, OTHER_NUMBER), SENDER, "US"),
                    audit=AuditContext("http", "function-key", "t-3"))
    drain_index(azurite, events_env["queue"], indexer)
    first = read_events(azurite, events_env["events"])
    second = read_events(azurite, f"{events_env['events']}-b")
    assert len(first) == 4 and len({e["id"] for e in first}) == 2  # twice each, same ids
    assert sorted(e["id"] for e in second) == sorted({e["id"] for e in first})


# -- the Event Grid custom topic -------------------------------------------------------------------------

@pytest.fixture
def topic(events_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[EventGridTopicStandIn]:
    with ManagedIdentityStandIn(client_ids=frozenset({CLIENT_ID})) as identity, EventGridTopicStandIn() as running:
        running.accepted_tokens.add(identity.token_for(EVENT_GRID_RESOURCE))
        for name in CONFLICTING_ENVIRONMENT:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**identity.environ(), "AZURE_CLIENT_ID": CLIENT_ID,
                            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
                            "REQUESTS_CA_BUNDLE": running.ca_bundle, "OPTOUT_EVENTS_SINKS": "queue,eventgrid",
                            "OPTOUT_EVENTS_TOPIC_ENDPOINT": running.endpoint}.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        yield running
        runtime.reset()
        assert {(r.resource or "").rstrip("/") for r in identity.requests} <= {EVENT_GRID_RESOURCE}


def test_the_topic_gets_cloudevents_batches_signed_with_the_managed_identity(
        events_env: dict[str, str], azurite: Azurite, topic: EventGridTopicStandIn) -> None:
    added = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER, OTHER_NUMBER]}))
    drain_index(azurite, events_env["queue"])
    assert topic.stats.rejected == [] and topic.stats.unauthorized == 0 and topic.stats.batches == 1
    assert topic.content_types[0].startswith("application/cloudevents-batch+json")
    received = by_number(topic.received())
    queued = by_number(read_events(azurite, events_env["events"]))
    assert set(received) == set(queued) == {NUMBER, OTHER_NUMBER}
    for number, event in received.items():  # the same event on both sinks
        assert {k: event[k] for k in ("specversion", "id", "source", "type", "subject", "sequence", "data")} == {
            k: queued[number][k] for k in ("specversion", "id", "source", "type", "subject", "sequence", "data")}
        assert event["data"]["operationId"] == added["audit"]["operationId"]
        assert datetime.fromisoformat(event["time"].replace("Z", "+00:00")) == datetime.fromisoformat(
            added["audit"]["acceptedAt"].replace("Z", "+00:00"))


def test_a_large_operation_goes_to_the_topic_in_bounded_batches(
        events_env: dict[str, str], azurite: Azurite, topic: EventGridTopicStandIn,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_EVENTS_SINKS", "eventgrid")
    runtime.reset()
    numbers = [f"+1206555{n:04d}" for n in range(MAX_BATCH_EVENTS * 2 + 100)]
    assert body_of(call("AddOptOuts", body={"phoneNumbers": numbers}))["summary"]["succeeded"] == len(numbers)
    drain_index(azurite, events_env["queue"])
    assert topic.stats.batches == 3 and topic.stats.rejected == []
    assert Counter(e["data"]["phoneNumber"] for e in topic.received()) == Counter(numbers)
    assert read_events(azurite, events_env["events"]) == []  # the queue sink is off


def test_a_topic_that_is_down_holds_the_events_until_it_is_back(
        events_env: dict[str, str], azurite: Azurite, topic: EventGridTopicStandIn) -> None:
    topic.fail_with_status = 503
    report = body_of(call("RemoveOptOuts", body={"phoneNumbers": [NUMBER]}))
    indexer = runtime.get_audit_indexer()
    (message,) = index_messages(azurite, events_env["queue"])
    with pytest.raises(HttpResponseError):  # not acknowledged: the host delivers it again
        indexer.process(message.content.encode(), dequeue_count=1)
    assert topic.stats.failed >= 1 and topic.received() == []
    topic.fail_with_status = None
    drain_index(azurite, events_env["queue"])
    (event,) = topic.received()
    assert event["data"]["operationId"] == report["audit"]["operationId"]
    assert len(entities(azurite, events_env["table"])) == 1


def test_the_stand_in_refuses_what_event_grid_refuses() -> None:
    good = {"specversion": "1.0", "id": "1", "source": "/x", "type": "t"}
    assert batch_problem("application/cloudevents-batch+json; charset=utf-8", json.dumps([good]).encode())[0] is None
    assert batch_problem("application/json", json.dumps([good]).encode())[0]
    assert batch_problem("application/cloudevents-batch+json", json.dumps(good).encode())[0]
    assert batch_problem("application/cloudevents-batch+json", json.dumps([{**good, "id": ""}]).encode())[0]
    assert batch_problem("application/cloudevents-batch+json", json.dumps([{**good, "Bad_Name": 1}]).encode())[0]
    assert batch_problem("application/cloudevents-batch+json", b"[" + b" " * 1_048_576 + b"]")[0]


# -- the whole loop in the local host -------------------------------------------------------------------

def test_the_local_host_emits_change_events_from_its_indexer_function(azurite: Azurite, emulator: AcsEmulator,
                                                                      names: dict[str, str]) -> None:
    key = "events-test-key"
    events_queue = f"events-{uuid.uuid4().hex[:12]}"
    settings = {
        "AzureWebJobsStorage": azurite.connection_string, "ACS_CONNECTION_STRING": emulator.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER, "OPTOUT_AUDIT_TABLE": names["table"],
        "OPTOUT_AUDIT_CONTAINER": names["container"], "OPTOUT_AUDIT_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
        "OPTOUT_EVENTS_QUEUE": events_queue,
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.500",
    }
    runtime.reset()
    try:
        with LocalHost(app_dir=".", app_module="function_app", port=0, function_keys={"default": key},
                       settings=settings) as host:
            answer = requests.post(f"{host.base_url}/api/optouts/add", headers={"x-functions-key": key},
                                   json={"phoneNumbers": [NUMBER]}, timeout=30)
            assert answer.status_code == 200
            found: list[dict[str, Any]] = []
            deadline = time.monotonic() + WAIT_SECONDS
            while not found and time.monotonic() < deadline:  # the host's indexer function runs on its own
                found = read_events(azurite, events_queue)
                time.sleep(0.2)
    finally:
        runtime.reset()
    (event,) = found
    assert (event["data"]["operationId"], event["data"]["channel"], event["type"]) == (
        answer.json()["audit"]["operationId"], "http", "optouts.number.optedOut")
