"""End-user keywords end to end: real SMSReceived events, in both schemas, through the local host's
Event Grid webhook (as Core Tools serves it) into the audit trail on a real Azurite, and the ACS
emulator's inbound SMS loop. Also the validation handshakes, malformed events (a clear 400, nothing
stored), duplicates (recorded once), and a storage failure (the webhook fails, so Event Grid retries;
the retry records the change once)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.storage.blob import ContainerClient

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from devtools.localhost.eventgrid import SYSTEM_KEY_NAME
from optouts import runtime
from optouts.audit.index import AuditIndexer
from optouts.audit.trail import AuditStorage, AuditTrail, AuditUnavailable, end_user_operation_id, storage_for
from optouts.usecases.end_user_keywords import EndUserKeywords, InboundEvent, MalformedSmsEvent

from .conftest import SENDER
from .test_audit import drain_index, entities

FUNCTION = "RecordEndUserKeyword"
WAIT_SECONDS = 60
KEY = "keywords-test-function-key"


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:12]
    return {"table": f"kw{suffix}", "container": f"kw-{suffix}", "queue": f"kw-index-{suffix}"}


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator() as running:
        yield running


@pytest.fixture(scope="module")
def host(azurite: Azurite, names: dict[str, str], acs: AcsEmulator) -> Iterator[LocalHost]:
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "ACS_CONNECTION_STRING": acs.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_AUDIT_TABLE": names["table"],
        "OPTOUT_AUDIT_CONTAINER": names["container"],
        # The index queue keeps its default name: the queue trigger's name is read when blueprints.audit_api
        # is first imported, which other test modules of this process may have done already.
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.300",
    }
    runtime.reset()
    try:
        with LocalHost(app_dir=".", app_module="function_app", port=0, function_keys={"default": KEY},
                       settings=settings) as running:
            yield running
    finally:
        runtime.reset()


def unique_number() -> str:
    return f"+1425555{uuid.uuid4().int % 10_000:04d}"


def sms(message: str, *, end_user: str | None = None, message_id: str | None = None,
        received: str = "2026-12-01T10:15:30.1234567Z") -> dict[str, Any]:
    return {"messageId": message_id or f"Incoming_20261201{uuid.uuid4()}", "from": end_user or unique_number(),
            "to": SENDER, "message": message, "receivedTimestamp": received, "segmentCount": 1}


def event_grid(data: Any, event_type: str = "Microsoft.Communication.SMSReceived") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Communication/"
            "communicationServices/acs", "subject": f"/phonenumber/{SENDER}", "eventType": event_type,
            "data": data, "eventTime": "2026-12-01T10:15:31.0000000Z", "dataVersion": "1.0", "metadataVersion": "1"}


def cloud_event(data: Any, event_type: str = "Microsoft.Communication.SMSReceived") -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/subscriptions/x/resourceGroups/y/providers/"
            "Microsoft.Communication/communicationServices/acs", "subject": f"/phonenumber/{SENDER}",
            "type": event_type, "time": "2026-12-01T10:15:31Z", "datacontenttype": "application/json", "data": data}


def post(host: LocalHost, body: Any, *, kind: str = "Notification", raw: bytes | None = None,
         function: str = FUNCTION, key: str | None = None, content_type: str = "application/json") -> requests.Response:
    # The system key goes in a header: the URL of a request is logged by urllib3, and a key must not be.
    return requests.post(f"{host.base_url}/runtime/webhooks/eventgrid?functionName={function}",
                         data=raw if raw is not None else json.dumps(body).encode(),
                         headers={"aeg-event-type": kind, "content-type": content_type,
                                  "x-functions-key": key if key is not None else host.system_keys[SYSTEM_KEY_NAME]},
                         timeout=30)


def operation(host: LocalHost, operation_id: str) -> requests.Response:
    return requests.get(f"{host.base_url}/api/operations/{operation_id}", headers={"x-functions-key": KEY},
                        timeout=30)


def history(host: LocalHost, number: str) -> list[dict[str, Any]]:
    response = requests.get(f"{host.base_url}/api/optouts/{number.replace('+', '%2B')}/history",
                            params={"sender": SENDER}, headers={"x-functions-key": KEY}, timeout=30)
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["value"]
    return records


def indexed_history(host: LocalHost, number: str, count: int = 1) -> list[dict[str, Any]]:
    """The number's history once `count` records are indexed (the host's indexer runs on its own)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        records = history(host, number)
        if len(records) >= count:
            return records
        time.sleep(0.2)
    raise AssertionError(f"{count} record(s) not indexed within {WAIT_SECONDS} s")


def stored_blobs(azurite: Azurite, container: str) -> dict[str, bytes]:
    with ContainerClient.from_connection_string(azurite.connection_string, container) as client:
        try:
            return {blob.name: client.download_blob(blob.name).readall() for blob in client.list_blobs()}
        except Exception:  # no container yet: nothing stored
            return {}


# -- both schemas --------------------------------------------------------------------------------


def test_a_stop_in_the_event_grid_schema_becomes_an_end_user_record(host: LocalHost) -> None:
    data = sms("  Stop \n")
    response = post(host, [event_grid(data)])
    assert response.status_code == 202, response.text
    (record,) = indexed_history(host, data["from"])
    assert (record["channel"], record["endUser"], record["caller"]) == ("keyword", True, "end-user")
    assert (record["action"], record["outcome"], record["optedOut"]) == ("add", "succeeded", True)
    assert (record["sender"], record["phoneNumber"], record["provider"]) == (SENDER, data["from"], "acs")
    assert record["correlationId"] == data["messageId"]
    assert record["occurredAt"] == "2026-12-01T10:15:30.123Z"  # when ACS received it, not when it was delivered
    assert record["details"] == {"keyword": "STOP", "messageId": data["messageId"],
                                 "receivedTimestamp": "2026-12-01T10:15:30.123456Z"}
    assert record["operationId"] == end_user_operation_id(data["messageId"])
    whole = operation(host, record["operationId"]).json()
    assert (whole["channel"], whole["endUser"], whole["numbers"], whole["outcome"]) == ("keyword", True, 1, "recorded")


def test_a_start_in_the_cloudevents_schema_is_an_opt_in(host: LocalHost) -> None:
    data = sms("unstop")
    response = post(host, cloud_event(data), content_type="application/cloudevents+json; charset=utf-8")
    assert response.status_code == 202, response.text
    (record,) = indexed_history(host, data["from"])
    assert (record["channel"], record["endUser"], record["action"], record["optedOut"]) == (
        "keyword", True, "remove", False)
    assert record["details"]["keyword"] == "UNSTOP"


def test_a_cloudevents_batch_records_each_keyword_in_order(host: LocalHost) -> None:
    number = unique_number()
    stop = sms("STOP", end_user=number, received="2026-12-01T10:00:00Z")
    start = sms("START", end_user=number, received="2026-12-01T10:05:00Z")
    response = post(host, [cloud_event(stop), cloud_event(start)],
                    content_type="application/cloudevents-batch+json; charset=utf-8")
    assert response.status_code == 202, response.text
    records = indexed_history(host, number, 2)
    assert [(r["action"], r["details"]["keyword"]) for r in records] == [("remove", "START"), ("add", "STOP")]


def test_a_message_that_is_not_a_keyword_is_never_stored(host: LocalHost, azurite: Azurite,
                                                         names: dict[str, str]) -> None:
    secret_text = f"my account number is {uuid.uuid4()} please stop"
    data = sms(secret_text)
    assert post(host, [event_grid(data)]).status_code == 202
    assert post(host, cloud_event(sms("STOP please"))).status_code == 202
    time.sleep(1)  # the indexer polls every 0.3 s: anything written would be indexed by now
    assert history(host, data["from"]) == []
    assert operation(host, end_user_operation_id(data["messageId"])).status_code == 404
    assert not any(secret_text.encode() in blob or data["from"].encode() in blob
                   for blob in stored_blobs(azurite, names["container"]).values())
    assert not any(data["from"] == e.get("PhoneNumber") for e in entities(azurite, names["table"]))


def test_events_of_other_types_are_acknowledged_and_ignored(host: LocalHost) -> None:
    data = {"messageId": "Outgoing_1", "from": SENDER, "to": unique_number(), "deliveryStatus": "Delivered"}
    response = post(host, [event_grid(data, "Microsoft.Communication.SMSDeliveryReportReceived")])
    assert response.status_code == 202
    assert operation(host, end_user_operation_id("Outgoing_1")).status_code == 404


# -- handshakes ------------------------------------------------------------------------------------


def test_the_event_grid_validation_handshake_echoes_the_code(host: LocalHost) -> None:
    code = str(uuid.uuid4())
    validation = event_grid({"validationCode": code, "validationUrl": None},
                            "Microsoft.EventGrid.SubscriptionValidationEvent")
    response = post(host, [validation], kind="SubscriptionValidation")
    assert response.status_code == 200
    assert response.json() == {"validationResponse": code}
    missing = post(host, [event_grid({}, "Microsoft.EventGrid.SubscriptionValidationEvent")],
                   kind="SubscriptionValidation")
    assert missing.status_code == 400 and "validationCode" in missing.json()["detail"]


def test_the_cloudevents_handshake_allows_the_origin(host: LocalHost) -> None:
    url = f"{host.base_url}/runtime/webhooks/eventgrid?functionName={FUNCTION}"
    key = {"x-functions-key": host.system_keys[SYSTEM_KEY_NAME]}
    response = requests.options(url, headers={**key, "WebHook-Request-Origin": "eventgrid.azure.net"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert response.headers["WebHook-Allowed-Rate"] == "*"
    assert requests.options(url, headers=key, timeout=30).status_code == 400


def test_the_webhook_takes_a_system_key_and_names_a_function(host: LocalHost) -> None:
    data = sms("STOP")
    assert post(host, [event_grid(data)], key="").status_code == 401
    assert post(host, [event_grid(data)], key=KEY).status_code == 401  # a function key is not a system key
    assert post(host, [event_grid(data)], key=host.master_key).status_code == 202
    assert post(host, [event_grid(sms("STOP"))], function="NoSuchFunction").status_code == 404
    assert post(host, [event_grid(sms("STOP"))], kind="Unsubscribe").status_code == 202


# -- malformed events and failures ---------------------------------------------------------------------


@pytest.mark.parametrize(("body", "kind", "says"), [
    (b"{not json", "Notification", "not JSON"),
    (b"42", "Notification", "event"),
    (b"[]", "Notification", "event"),
    (b"[17]", "Notification", "event 0"),
    (b'[{"id": "x"}]', "Notification", "event 0"),
    (b"[]", "SomethingElse", "aeg-event-type"),
    (b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}', "Notification", "specversion"),
])
def test_a_malformed_request_is_a_clear_400(host: LocalHost, body: bytes, kind: str, says: str) -> None:
    response = post(host, None, raw=body, kind=kind)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert says in response.json()["detail"]


def test_a_batch_with_a_malformed_event_is_refused_whole_and_nothing_is_stored(host: LocalHost) -> None:
    good = sms("STOP")
    broken = event_grid(sms("STOP"))
    del broken["eventType"]
    response = post(host, [event_grid(good), broken])
    assert response.status_code == 400
    assert "event 1" in response.json()["detail"] and "eventType" in response.json()["detail"]
    time.sleep(1)
    assert operation(host, end_user_operation_id(good["messageId"])).status_code == 404
    # Event Grid dead-letters a 400; delivered again (replayed), the good event is recorded.
    assert post(host, [event_grid(good)]).status_code == 202
    assert len(indexed_history(host, good["from"])) == 1


@pytest.mark.parametrize("field", ["from", "to", "messageId", "receivedTimestamp"])
def test_a_keyword_event_without_what_an_sms_holds_fails_and_stores_nothing(host: LocalHost, field: str) -> None:
    data = sms("STOP")
    data[field] = {"from": "not a number", "to": "hello", "messageId": "a b/c", "receivedTimestamp": "yesterday"}[field]
    response = post(host, [event_grid(data)])
    assert response.status_code == 500  # Event Grid retries, then dead-letters: the event is kept, not dropped
    assert operation(host, end_user_operation_id(str(data["messageId"]))).status_code == 404


def test_a_duplicate_event_is_recorded_once(host: LocalHost) -> None:
    data = sms("cancel")
    first = event_grid(data)
    assert post(host, [first]).status_code == 202
    assert post(host, [first]).status_code == 202  # redelivered as is
    assert post(host, cloud_event(data)).status_code == 202  # the same SMS, another envelope
    (record,) = indexed_history(host, data["from"])
    time.sleep(1)  # the duplicates' index messages are processed by now
    assert len(history(host, data["from"])) == 1
    assert record["details"]["keyword"] == "CANCEL"


class FailingOnce(AuditStorage):
    """Storage whose first index-queue send fails: a delivery that died after the blobs."""

    failures = 1

    def send(self, message: Any, *, delay_seconds: float = 0) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("storage unreachable")
        super().send(message, delay_seconds=delay_seconds)


def test_a_storage_failure_fails_the_event_and_the_retry_records_it_once(azurite: Azurite,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYWORDS_TEST_STORAGE", azurite.connection_string)
    suffix = uuid.uuid4().hex[:12]
    names = {"container": f"kwf-{suffix}", "table": f"kwf{suffix}", "queue": f"kwf-{suffix}"}
    plain = storage_for(**names, connection="KEYWORDS_TEST_STORAGE")
    storage = FailingOnce(container=plain.container, table=plain.table, queue=plain.queue)
    keywords = EndUserKeywords(AuditTrail(storage))
    data = sms("STOP")
    event = InboundEvent("e1", "Microsoft.Communication.SMSReceived", data)
    try:
        with pytest.raises(AuditUnavailable):
            keywords.handle(event)  # the webhook answers 500: Event Grid delivers the event again
        assert keywords.handle(event).outcome == "recorded"
        assert keywords.handle(event).outcome == "recorded"  # and again: idempotent
        indexer = AuditIndexer(storage_for(**names, connection="KEYWORDS_TEST_STORAGE"), reconcile_delay=1)
        # The second delivery's outcome message finds the operation indexed already: once in the history.
        assert set(drain_index(azurite, names["queue"], indexer)) <= {"indexed", "already-indexed"}
        rows = [e for e in entities(azurite, names["table"]) if e["PhoneNumber"] == data["from"]]
        assert len(rows) == 1 and rows[0]["EndUser"] is True and rows[0]["Channel"] == "keyword"
    finally:
        keywords.close()


def test_a_disabled_trail_acknowledges_without_recording() -> None:
    keywords = EndUserKeywords(AuditTrail(None, disabled_reason="OPTOUT_AUDIT_WRITES is false"))
    assert keywords.handle(InboundEvent("e", "Microsoft.Communication.SMSReceived", sms("STOP"))).outcome == "disabled"
    with pytest.raises(MalformedSmsEvent):
        keywords.handle(InboundEvent("e", "Microsoft.Communication.SMSReceived", "not an object"))
    with pytest.raises(MalformedSmsEvent):
        keywords.handle(InboundEvent("e", "Microsoft.Communication.SMSReceived", {**sms("STOP"), "message": 7}))


# -- the emulator loop -----------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_an_inbound_sms_to_the_emulator_reaches_the_audit_trail(host: LocalHost, acs: AcsEmulator, schema: str) -> None:
    acs.subscribe(host.event_grid_url(FUNCTION), schema)  # the schema's handshake, as Event Grid does
    number = unique_number()
    route = f"{acs.endpoint}/emulator/sms:receive"

    stopped = requests.post(route, json={"from": number, "to": SENDER, "message": "Stop"}, timeout=60).json()
    assert (stopped["keyword"], stopped["optedOut"], stopped["delivered"], stopped["webhookStatus"]) == (
        "STOP", True, True, 202)
    assert number in acs.opted_out(SENDER)  # ACS's own automatic handling
    (record,) = indexed_history(host, number)
    assert (record["channel"], record["endUser"], record["action"], record["correlationId"]) == (
        "keyword", True, "add", stopped["messageId"])

    started = requests.post(route, json={"from": number, "to": SENDER, "message": "START"}, timeout=60).json()
    assert (started["keyword"], started["optedOut"], started["delivered"]) == ("START", False, True)
    assert number not in acs.opted_out(SENDER)
    assert [r["action"] for r in indexed_history(host, number, 2)] == ["remove", "add"]

    chatter = requests.post(route, json={"from": number, "to": SENDER, "message": "thanks!"}, timeout=60).json()
    assert (chatter["keyword"], chatter["delivered"]) == (None, True)
    time.sleep(1)
    assert len(history(host, number)) == 2
    assert acs.event_subscription is not None and acs.event_subscription.undelivered == []


def test_the_emulator_route_validates_and_keeps_what_it_could_not_deliver(acs: AcsEmulator) -> None:
    route = f"{acs.endpoint}/emulator/sms:receive"
    assert requests.post(route, json={"from": "nope", "to": SENDER, "message": "STOP"}, timeout=30).status_code == 400
    assert requests.post(route, data=b"{", timeout=30).status_code == 400
    assert requests.post(route, json={"from": unique_number(), "to": SENDER, "message": "x" * 5000},
                         timeout=30).status_code == 400
    with AcsEmulator() as lonely:
        number = unique_number()
        answer = lonely.receive_sms(number, SENDER, "STOP")
        assert (answer["subscribed"], answer["delivered"], answer["optedOut"]) == (False, False, True)
