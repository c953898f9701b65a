"""The audit trail against a real Azurite: the write-ahead journal (intent and outcome blobs), the
indexer that builds each number's history from it, operation records, the caller's identity, and
crash safety: the worker killed, or storage failing, at every point of an operation, then recovery.

The indexer runs in-process here, fed from the real index queue (`drain_index`), as the queue
function would run it; the local-host test at the end runs the deployed functions end to end."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, free_port
from devtools.localhost import LocalHost
from optouts import runtime
from optouts.audit import trail as audit
from optouts.audit.callers import AuditContext, queue_context
from optouts.audit.index import AuditIndexer
from optouts.audit.trail import AuditStorage, AuditTrail, storage_for
from optouts.domain.commands import OptOutCommand
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem
from optouts.usecases.queued_requests import QueuedMessage, QueuedRequestProcessor, RetryLater
from optouts.usecases.service import OptOutService

from .conftest import OTHER_SENDER, SENDER, azurite_for_module, fast_client
from .test_http_api import assert_problem, body_of, call

NUMBER = "+14255550142"
OTHER_NUMBER = "+14255550143"
#: How long a test waits for something that should take a moment; a bound, not an expectation.
WAIT_SECONDS = 120
RECONCILE_SECONDS = 1


class WorkerDied(BaseException):
    """The process dying at this point: nothing in the gateway catches it, as nothing survives a kill."""


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with azurite_for_module() as running:
        yield running


@pytest.fixture
def names() -> dict[str, str]:
    """A fresh table, container and index queue per test: no test sees another's records."""
    suffix = uuid.uuid4().hex[:12]
    return {"table": f"audit{suffix}", "container": f"ops-{suffix}", "queue": f"index-{suffix}"}


@pytest.fixture
def audit_env(emulator: AcsEmulator, azurite: Azurite, names: dict[str, str],
              monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The in-process gateway with the audit trail in fresh Azurite resources."""
    for name, value in {
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "OPTOUT_AUDIT_TABLE": names["table"],
        "OPTOUT_AUDIT_CONTAINER": names["container"],
        "OPTOUT_AUDIT_INDEX_QUEUE": names["queue"],
        "OPTOUT_AUDIT_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
        "OPTOUT_TIME_BUDGET_SECONDS": "30",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("OPTOUT_AUDIT_CHECKS", "OPTOUT_AUDIT_WRITES", "WEBSITE_AUTH_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    yield names
    runtime.reset()


def drain_index(azurite: Azurite, queue_name: str, indexer: AuditIndexer | None = None) -> list[str]:
    """Run the indexer over the index queue as the host would, until no message is left, delayed
    reconcile messages included (a failed message is left to become visible again)."""
    indexer = indexer or runtime.get_audit_indexer()
    queue = QueueClient.from_connection_string(azurite.connection_string, queue_name)
    done: list[str] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            if queue.get_queue_properties().approximate_message_count == 0:
                return done
        except Exception:  # no queue yet: nothing was ever sent
            return done
        for message in queue.receive_messages(messages_per_page=32, visibility_timeout=1, max_messages=32):
            try:
                outcome = indexer.process(message.content.encode(), dequeue_count=message.dequeue_count)
            except Exception:  # as the host does: the message becomes visible again and is redelivered
                continue
            done.append(outcome)
            queue.delete_message(message)
        time.sleep(0.2)
    raise AssertionError(f"the index queue was not drained within {WAIT_SECONDS} s")


def entities(azurite: Azurite, table: str) -> list[dict[str, Any]]:
    # Pages of a listing are linked by NextRowKey, the base64 of a (hashed) RowKey: urllib3's DEBUG lines
    # for this test helper's own listing would read as key material to the suite's log scan.
    pool_logger = logging.getLogger("urllib3.connectionpool")
    level = pool_logger.level
    pool_logger.setLevel(logging.INFO)
    try:
        with TableClient.from_connection_string(azurite.connection_string, table) as client:
            return [dict(entity) for entity in client.list_entities()]
    except Exception:  # no table: nothing indexed
        return []
    finally:
        pool_logger.setLevel(level)


def blobs(azurite: Azurite, container: str) -> list[str]:
    with ContainerClient.from_connection_string(azurite.connection_string, container) as client:
        try:
            return sorted(blob.name for blob in client.list_blobs())
        except Exception:
            return []


def history(phone_number: str, **params: str) -> dict:
    response = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": phone_number}, params=params)
    assert response.status_code == 200, response.get_body()
    return body_of(response)


def operation(operation_id: str) -> dict:
    response = call("GetOperation", method="GET", route_params={"operationId": operation_id})
    assert response.status_code == 200, response.get_body()
    return body_of(response)


# -- the HTTP path ----------------------------------------------------------------------------------

def test_a_change_is_journalled_before_the_answer_and_indexed_per_number(
        audit_env: dict[str, str], azurite: Azurite, emulator: AcsEmulator) -> None:
    emulator.seed_opt_outs(SENDER, [NUMBER])
    removed = call("RemoveOptOuts", headers={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}, body={
        "phoneNumbers": [NUMBER, "(425) 555-0143", "garbage", NUMBER], "reason": "customer re-subscribed, ticket 4711"})
    assert removed.status_code == 200
    report = body_of(removed)
    receipt = report["audit"]
    assert receipt == {"status": "accepted", "operationId": receipt["operationId"],
                       "acceptedAt": receipt["acceptedAt"], "outcomeRecorded": True}
    operation_id = receipt["operationId"]
    # Durable when the answer is sent: the intent and the outcome, one blob each.
    assert blobs(azurite, audit_env["container"]) == [f"{operation_id}/intent.json", f"{operation_id}/outcome.json"]
    record = operation(operation_id)
    assert record["indexing"]["state"] == "pending" and record["outcome"] == "recorded"

    assert drain_index(azurite, audit_env["queue"]) == ["indexed", "already-indexed"]  # outcome, then reconcile
    stored = entities(azurite, audit_env["table"])
    assert sorted(e["PhoneNumber"] for e in stored) == [NUMBER, OTHER_NUMBER]  # distinct numbers ACS was sent
    assert all(len(e["PartitionKey"]) == 2 and e["RowKey"].endswith(operation_id) for e in stored)

    (entry,) = history(NUMBER)["value"]
    trace_id = removed.headers["x-trace-id"]
    assert entry == {
        "occurredAt": entry["occurredAt"], "operationId": operation_id, "action": "remove", "sender": SENDER,
        "phoneNumber": NUMBER, "outcome": "succeeded", "upstreamStatus": 200, "errorCode": None, "optedOut": None,
        "caller": "function-key", "callerId": None, "callerVerified": False, "claimedCaller": None,
        "claimedCallerId": None, "channel": "http", "correlationId": trace_id, "traceId": trace_id,
        "reason": "customer re-subscribed, ticket 4711", "provider": "acs", "details": None, "endUser": False,
    }
    assert trace_id.startswith(f"00-{'a' * 32}-")
    assert entry["occurredAt"][:23] == receipt["acceptedAt"][:23]

    record = operation(operation_id)
    assert record == {
        **record, "operationId": operation_id, "action": "remove", "sender": SENDER, "channel": "http",
        "caller": "function-key", "numbers": 2, "invalidInputs": 1, "outcome": "recorded", "errorCode": None,
        "counts": {"succeeded": 2, "invalid": 0, "failed": 0, "unknown": 0},
        "reason": "customer re-subscribed, ticket 4711", "correlationId": trace_id, "endUser": False,
    }
    assert record["indexing"]["state"] == "indexed" and record["indexing"]["indexedNumbers"] == 2
    assert record["acceptedAt"] <= record["completedAt"]


def test_failures_reported_by_acs_are_recorded_as_such(audit_env: dict[str, str], azurite: Azurite,
                                                       emulator: AcsEmulator) -> None:
    emulator.faults = FaultConfig(recipient_error_rate=1.0)
    report = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER]}))
    assert report["results"][0]["status"] == "failed" and report["audit"]["outcomeRecorded"] is True
    drain_index(azurite, audit_env["queue"])
    (record,) = history(NUMBER)["value"]
    assert (record["outcome"], record["errorCode"]) == ("failed", "AcsUnavailable")
    assert record["upstreamStatus"] >= 500
    assert operation(report["audit"]["operationId"])["counts"]["failed"] == 1


def test_an_operation_acs_refused_as_a_whole_is_recorded_failed(audit_env: dict[str, str], azurite: Azurite,
                                                                emulator: AcsEmulator,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_CONNECTION_STRING", emulator.connection_string.replace(
        emulator.connection_string.split("accesskey=")[1], "d3Jvbmcta2V5LXdyb25nLWtleQ=="))
    runtime.reset()
    refused = call("AddOptOuts", body={"phoneNumbers": [NUMBER]})
    assert_problem(refused, 502, "AcsAuthenticationFailed")
    drain_index(azurite, audit_env["queue"])
    (record,) = history(NUMBER)["value"]
    assert (record["outcome"], record["errorCode"], record["upstreamStatus"]) == ("failed",
                                                                                 "AcsAuthenticationFailed", None)


def test_checks_are_audited_only_when_asked(audit_env: dict[str, str], azurite: Azurite,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert "audit" not in body_of(call("CheckOptOuts", body={"phoneNumbers": [NUMBER]}))
    assert "audit" not in body_of(call("GetOptOutStatus", method="GET", route_params={"phoneNumber": NUMBER}))
    assert blobs(azurite, audit_env["container"]) == []  # nothing journalled
    assert history(NUMBER) == {"value": []}

    monkeypatch.setenv("OPTOUT_AUDIT_CHECKS", "true")
    runtime.reset()
    assert body_of(call("CheckOptOuts", body={"phoneNumbers": [NUMBER]}))["audit"]["status"] == "accepted"
    single = body_of(call("GetOptOutStatus", method="GET", route_params={"phoneNumber": NUMBER}))
    assert single["audit"]["status"] == "accepted"
    drain_index(azurite, audit_env["queue"])
    assert [(r["action"], r["optedOut"]) for r in history(NUMBER)["value"]] == [("check", False), ("check", False)]


def test_writes_can_be_turned_off(audit_env: dict[str, str], azurite: Azurite,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    body_of(call("RemoveOptOuts", body={"phoneNumbers": [NUMBER]}))  # journalled while on
    drain_index(azurite, audit_env["queue"])
    monkeypatch.setenv("OPTOUT_AUDIT_WRITES", "false")
    runtime.reset()
    report = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER, OTHER_NUMBER]}))
    assert report["summary"]["succeeded"] == 2
    assert report["audit"] == {"status": "disabled", "reason": "OPTOUT_AUDIT_WRITES is false"}
    assert [r["action"] for r in history(NUMBER)["value"]] == ["remove"]  # history still reads
    assert len(blobs(azurite, audit_env["container"])) == 3  # intent, outcome, index marker of the first


def test_storage_not_configured_is_detected_once_and_shown(emulator: AcsEmulator,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_CONNECTION_STRING", emulator.connection_string)
    monkeypatch.setenv("OPTOUT_DEFAULT_SENDER", SENDER)
    for name in ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName", "OPTOUT_AUDIT_WRITES"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    try:
        health = body_of(call("Health", method="GET"))
        assert health["configuration"]["audit"] == {"enabled": False,
                                                    "disabledReason": "AzureWebJobsStorage is not configured",
                                                    "checks": False, "verifiedCallers": False}
        numbers = [f"+1425555{n:04d}" for n in range(300)]
        report = body_of(call("AddOptOuts", body={"phoneNumbers": numbers}))
        assert report["summary"]["succeeded"] == 300
        assert report["audit"] == {"status": "disabled", "reason": "AzureWebJobsStorage is not configured"}
        assert not runtime.get_audit_trail().enabled
        assert_problem(call("GetOptOutHistory", method="GET", route_params={"phoneNumber": NUMBER}),
                       503, "AuditDisabled")
    finally:
        runtime.reset()


def test_history_pages_newest_first_with_next_links(audit_env: dict[str, str], azurite: Azurite) -> None:
    for action in ("AddOptOuts", "RemoveOptOuts", "AddOptOuts", "RemoveOptOuts", "AddOptOuts"):
        assert call(action, body={"phoneNumbers": [NUMBER]}).status_code == 200
    call("AddOptOuts", body={"phoneNumbers": [NUMBER], "sender": OTHER_SENDER})  # another sender's list
    drain_index(azurite, audit_env["queue"])
    first = history(NUMBER, top="2")
    assert [r["action"] for r in first["value"]] == ["add", "remove"]
    token = first["nextLink"].split("continuationToken=")[1]
    second = history(NUMBER, top="2", continuationToken=token)
    third = history(NUMBER, top="2", continuationToken=second["nextLink"].split("continuationToken=")[1])
    assert [r["action"] for r in second["value"] + third["value"]] == ["add", "remove", "add"]
    assert "nextLink" not in third
    times = [r["occurredAt"] for r in first["value"] + second["value"] + third["value"]]
    assert times == sorted(times, reverse=True)
    assert [r["sender"] for r in history(NUMBER, sender=OTHER_SENDER)["value"]] == [OTHER_SENDER]
    bad = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": NUMBER},
               params={"continuationToken": "x' or PartitionKey ne '"})
    assert_problem(bad, 400, "ValidationFailed")


def test_history_next_links_are_absolute_and_never_carry_the_key(audit_env: dict[str, str], azurite: Azurite) -> None:
    trace_ids = []
    for n in range(5):
        action = "AddOptOuts" if n % 2 else "RemoveOptOuts"
        response = call(action, body={"phoneNumbers": [NUMBER], "reason": f"step {n}"})
        trace_ids.append(response.headers["x-trace-id"])
    call("AddOptOuts", body={"phoneNumbers": [OTHER_NUMBER]})  # another number: never in NUMBER's pages
    drain_index(azurite, audit_env["queue"])
    seen: list[dict] = []
    params = {"top": "2"}
    for _ in range(10):  # bounded: 5 records in pages of 2 need 3
        page = history(NUMBER, **params)
        seen += page["value"]
        if "nextLink" not in page:
            break
        link = urlsplit(page["nextLink"])
        assert (link.scheme, link.netloc, link.path) == ("http", "127.0.0.1:7071", "/api/optouts/%2B14255550142/history")
        assert "code" not in parse_qs(link.query)  # the function key is never echoed
        params = {name: values[0] for name, values in parse_qs(link.query).items()}
        assert params["sender"] == SENDER and params["top"] == "2"
    assert [r["correlationId"] for r in seen] == trace_ids[::-1]
    assert [r["reason"] for r in seen] == [f"step {n}" for n in range(4, -1, -1)]


@pytest.mark.parametrize(("records", "top", "expected_pages"), [(4, 2, [2, 2]), (2, 2, [2]), (3, 1, [1, 1, 1])])
def test_history_at_an_exact_multiple_of_the_page_size_has_no_empty_last_page(
        audit_env: dict[str, str], azurite: Azurite, records: int, top: int, expected_pages: list[int]) -> None:
    for n in range(records):
        call("AddOptOuts", body={"phoneNumbers": [NUMBER], "reason": f"r{n}"})
    drain_index(azurite, audit_env["queue"])
    sizes: list[int] = []
    reasons: list[str] = []
    params = {"top": str(top)}
    for _ in range(records + 2):  # bounded: one page more than needed is already the bug
        page = history(NUMBER, **params)
        sizes.append(len(page["value"]))
        reasons += [r["reason"] for r in page["value"]]
        if "nextLink" not in page:
            break
        params = {name: values[0] for name, values in parse_qs(urlsplit(page["nextLink"]).query).items()}
    assert sizes == expected_pages
    assert reasons == [f"r{n}" for n in range(records - 1, -1, -1)]


def test_history_next_link_names_the_public_host(audit_env: dict[str, str], azurite: Azurite,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_TRUSTED_FORWARDERS", "10.0.0.0/24")  # the proxy, as App Service saw it
    for _ in range(2):
        call("AddOptOuts", body={"phoneNumbers": [NUMBER]})
    drain_index(azurite, audit_env["queue"])
    response = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": "(425) 555-0142"},
                    params={"top": "1"},
                    headers={"X-Forwarded-Host": "optouts.contoso.com", "X-Forwarded-Proto": "https",
                             "X-Forwarded-For": "203.0.113.9, 10.0.0.4:50123"})
    assert body_of(response)["nextLink"].startswith("https://optouts.contoso.com/api/optouts/%2B14255550142/history?")


def test_history_refuses_bad_input(audit_env: dict[str, str]) -> None:
    def get(phone_number: str, **params: str):
        return call("GetOptOutHistory", method="GET", route_params={"phoneNumber": phone_number}, params=params)

    assert "phoneNumber" in assert_problem(get("not a number"), 400)["errors"]
    assert_problem(get(NUMBER, sender="+18005559999"), 403, "SenderNotAllowed")
    for top in ("0", "501", "ten", "-1", "\u0663", "1.5"):
        assert "top" in assert_problem(get(NUMBER, top=top), 400, "ValidationFailed")["errors"]
    well_formed = "2516069451093398339_" + "a" * 32
    for token in ("%%%", "bm90IGpzb24", "' or 1 eq 1 or '", "2516069451093398339_" + "X" * 32, "x" * 3000,
                  " ", f" {well_formed}", f"{well_formed}\n", "\u0662" * 19 + "_" + "a" * 32):
        assert "continuationToken" in assert_problem(get(NUMBER, continuationToken=token), 400)["errors"]
    assert get(NUMBER, continuationToken="").status_code == 200  # empty: the first page
    assert get(NUMBER, continuationToken=well_formed).status_code == 200


def test_operation_ids_are_validated_and_unknown_ones_are_404(audit_env: dict[str, str]) -> None:
    assert_problem(call("GetOperation", method="GET", route_params={"operationId": "../../x"}), 400, "ValidationFailed")
    assert_problem(call("GetOperation", method="GET", route_params={"operationId": "0" * 32}), 404, "OperationNotFound")


# -- caller identity ----------------------------------------------------------------------------------

PRINCIPAL = {"X-MS-CLIENT-PRINCIPAL-NAME": "crm-sync@contoso.com",
             "X-MS-CLIENT-PRINCIPAL-ID": "6f1c2a4e-0000-4000-8000-000000000001"}


@pytest.mark.parametrize(("auth_enabled", "headers", "expected"), [
    # No App Service authentication in front: the headers are the caller's own claim.
    (None, PRINCIPAL, ("function-key", None, False, "crm-sync@contoso.com", PRINCIPAL["X-MS-CLIENT-PRINCIPAL-ID"])),
    ("False", PRINCIPAL, ("function-key", None, False, "crm-sync@contoso.com", PRINCIPAL["X-MS-CLIENT-PRINCIPAL-ID"])),
    # App Service authentication on: it set the headers itself, so they are verified.
    ("True", PRINCIPAL, ("crm-sync@contoso.com", PRINCIPAL["X-MS-CLIENT-PRINCIPAL-ID"], True, None, None)),
    ("True", {}, ("function-key", None, False, None, None)),
    # Control characters never reach the record; the length is bounded.
    (None, {"X-MS-CLIENT-PRINCIPAL-NAME": "evil\r\nname" + "x" * 400},
     ("function-key", None, False, "evilname" + "x" * 248, None)),
])
def test_only_a_platform_verified_caller_is_recorded_as_verified(
        audit_env: dict[str, str], azurite: Azurite, monkeypatch: pytest.MonkeyPatch,
        auth_enabled: str | None, headers: dict[str, str], expected: tuple) -> None:
    if auth_enabled is not None:
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", auth_enabled)
        runtime.reset()
    report = body_of(call("AddOptOuts", headers=headers, body={"phoneNumbers": [NUMBER]}))
    drain_index(azurite, audit_env["queue"])
    (record,) = history(NUMBER)["value"]
    fields = ("caller", "callerId", "callerVerified", "claimedCaller", "claimedCallerId")
    assert tuple(record[f] for f in fields) == expected
    assert tuple(operation(report["audit"]["operationId"])[f] for f in fields) == expected


# -- fail closed ------------------------------------------------------------------------------------

def closed_port_storage() -> str:
    """Azurite's account with every endpoint on a port nothing listens on."""
    port = free_port()
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")


def test_storage_down_refuses_the_change_instead_of_making_it_unaudited(
        audit_env: dict[str, str], emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", closed_port_storage())
    runtime.reset()
    emulator.seed_opt_outs(SENDER, [NUMBER, OTHER_NUMBER])
    response = call("RemoveOptOuts", body={"phoneNumbers": [NUMBER, OTHER_NUMBER], "reason": "ticket 9"})
    assert_problem(response, 503, "AuditUnavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert emulator.opted_out(SENDER) == {NUMBER, OTHER_NUMBER}  # ACS was not changed
    assert ACCOUNT_KEY not in caplog.text and "4255550142" not in caplog.text
    assert_problem(call("GetOptOutHistory", method="GET", route_params={"phoneNumber": NUMBER}),
                   503, "AuditUnavailable")


def test_a_queued_request_is_redelivered_while_the_audit_is_unavailable(
        audit_env: dict[str, str], emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", closed_port_storage())
    runtime.reset()
    published: list[dict] = []

    class Publisher:
        def publish(self, result: dict) -> None:
            published.append(result)

    processor = QueuedRequestProcessor(settings=runtime.get_settings, service=runtime.get_service,
                                       publisher=Publisher(), max_dequeue_count=5, time_budget=20)  # type: ignore[arg-type]
    body = json.dumps({"action": "add", "phoneNumbers": [NUMBER]}).encode()
    with pytest.raises(RetryLater) as retry:
        processor.process(QueuedMessage("m-1", body, dequeue_count=1))
    assert "AuditUnavailable" in str(retry.value) and not retry.value.final
    assert emulator.opted_out(SENDER) == set() and published == []


# -- crash safety -------------------------------------------------------------------------------------

def direct_service(emulator: AcsEmulator, azurite: Azurite, names: dict[str, str],
                   monkeypatch: pytest.MonkeyPatch) -> tuple[OptOutService, AuditTrail, AuditStorage, AuditIndexer]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    storage = storage_for(container=names["container"], table=names["table"], queue=names["queue"])
    trail = AuditTrail(storage, reconcile_delay=RECONCILE_SECONDS)
    indexer = AuditIndexer(storage_for(container=names["container"], table=names["table"], queue=names["queue"]),
                           reconcile_delay=RECONCILE_SECONDS)
    return OptOutService(fast_client(emulator.connection_string), trail), trail, storage, indexer


def fail_on(storage: AuditStorage, method: str, when: Callable[..., bool], error: BaseException) -> None:
    original = getattr(storage, method)

    def failing(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            raise error
        return original(*args, **kwargs)

    setattr(storage, method, failing)


NUMBERS = tuple(f"+1425555{n:04d}" for n in range(250))
CONTEXT = AuditContext("http", "function-key", "trace-crash", trace_id="trace-crash")


def assert_history_once(azurite: Azurite, names: dict[str, str], numbers: tuple[str, ...],
                        outcome: str) -> list[dict[str, Any]]:
    stored = entities(azurite, names["table"])
    assert Counter(e["PhoneNumber"] for e in stored) == Counter({n: 1 for n in numbers})  # each once, none lost
    assert {e["Outcome"] for e in stored} == {outcome}
    return stored


def test_an_intent_upload_retried_after_its_answer_was_lost_is_not_refused(
        emulator: AcsEmulator, azurite: Azurite, names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    service, trail, storage, indexer = direct_service(emulator, azurite, names, monkeypatch)
    original = storage.put_blob

    def lost_answer(name: str, data: bytes, *, overwrite: bool) -> None:
        original(name, data, overwrite=overwrite)  # the first attempt lands...
        if name.endswith("/intent.json"):  # ...its answer is lost, and the SDK's retry finds the blob
            original(name, data, overwrite=overwrite)

    monkeypatch.setattr(storage, "put_blob", lost_answer)
    report = service.execute(OptOutCommand(Operation.ADD, NUMBERS[:3], SENDER, "US"), audit=CONTEXT)
    assert report.audit is not None and report.audit.to_dict()["status"] == "accepted"
    assert emulator.opted_out(SENDER) == set(NUMBERS[:3])
    drain_index(azurite, names["queue"], indexer)
    assert_history_once(azurite, names, NUMBERS[:3], "succeeded")


def test_killed_between_intent_and_acs_call_shows_unknown(emulator: AcsEmulator, azurite: Azurite,
                                                          names: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    service, trail, _, indexer = direct_service(emulator, azurite, names, monkeypatch)

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise WorkerDied()

    monkeypatch.setattr(service.provider, "run", dies)
    with pytest.raises(WorkerDied):
        service.execute(OptOutCommand(Operation.ADD, NUMBERS, SENDER, "US"), audit=CONTEXT)
    assert emulator.opted_out(SENDER) == set()
    (intent_blob,) = blobs(azurite, names["container"])
    operation_id = intent_blob.split("/")[0]
    before = trail.operation(operation_id)
    assert before is not None and before["outcome"] == "unknown" and before["counts"]["unknown"] == len(NUMBERS)

    assert drain_index(azurite, names["queue"], indexer) == ["unknown"]  # the reconcile message, once visible
    assert_history_once(azurite, names, NUMBERS, "unknown")
    after = trail.operation(operation_id)
    assert after is not None and after["indexing"]["state"] == "indexedUnknown"
    assert after["indexing"]["indexedNumbers"] == len(NUMBERS)


def test_killed_between_acs_answer_and_outcome_write_keeps_every_change(
        emulator: AcsEmulator, azurite: Azurite, names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    service, trail, storage, indexer = direct_service(emulator, azurite, names, monkeypatch)
    fail_on(storage, "put_blob", lambda name, *a, **k: name.endswith("outcome.json"), WorkerDied())
    with pytest.raises(WorkerDied):
        service.execute(OptOutCommand(Operation.ADD, NUMBERS, SENDER, "US"), audit=CONTEXT)
    assert emulator.opted_out(SENDER) == set(NUMBERS)  # ACS made every change
    assert drain_index(azurite, names["queue"], indexer) == ["unknown"]
    stored = assert_history_once(azurite, names, NUMBERS, "unknown")
    assert {e["Action"] for e in stored} == {"add"}  # what was asked


def test_outcome_write_failing_still_answers_and_is_reconciled(
        emulator: AcsEmulator, azurite: Azurite, names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import ServiceRequestError

    service, trail, storage, indexer = direct_service(emulator, azurite, names, monkeypatch)
    fail_on(storage, "put_blob", lambda name, *a, **k: name.endswith("outcome.json"), ServiceRequestError("down"))
    report = service.execute(OptOutCommand(Operation.ADD, NUMBERS, SENDER, "US"), audit=CONTEXT)
    assert report.summary["succeeded"] == len(NUMBERS)
    assert report.audit is not None and report.audit.to_dict()["outcomeRecorded"] is False
    assert drain_index(azurite, names["queue"], indexer) == ["unknown"]
    assert_history_once(azurite, names, NUMBERS, "unknown")


def test_an_outcome_written_late_replaces_the_unknowns_without_duplicates(
        emulator: AcsEmulator, azurite: Azurite, names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker stalls after ACS answered, the reconcile records `unknown`, then the worker resumes."""
    service, trail, storage, indexer = direct_service(emulator, azurite, names, monkeypatch)
    reconciled = threading.Event()
    original_put = storage.put_blob

    def stalls(name: str, data: bytes, *, overwrite: bool) -> None:
        if name.endswith("outcome.json"):
            reconciled.wait(WAIT_SECONDS)
        original_put(name, data, overwrite=overwrite)

    monkeypatch.setattr(storage, "put_blob", stalls)
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(
        service.execute(OptOutCommand(Operation.REMOVE, NUMBERS, SENDER, "US"), audit=CONTEXT)))
    worker.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not blobs(azurite, names["container"]) and time.monotonic() < deadline:
            time.sleep(0.05)  # the intent is written: ACS is being called, the outcome will stall
        assert drain_index(azurite, names["queue"], indexer) == ["unknown"]
        assert_history_once(azurite, names, NUMBERS, "unknown")
    finally:
        reconciled.set()
        worker.join(WAIT_SECONDS)
    (report,) = answers
    assert report.audit.to_dict()["outcomeRecorded"] is True
    assert drain_index(azurite, names["queue"], indexer) == ["indexed"]
    assert_history_once(azurite, names, NUMBERS, "succeeded")
    view = trail.operation(report.audit.operation_id)
    assert view is not None and view["indexing"]["state"] == "indexed"


def test_killed_in_the_middle_of_indexing_is_finished_by_the_redelivery(
        emulator: AcsEmulator, azurite: Azurite, names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    service, trail, _, indexer = direct_service(emulator, azurite, names, monkeypatch)
    # 16 partitions, one batch each (the 10,000-number test fills batches of 100): three land, then it dies.
    numbers = tuple(f"+1206555{n:04d}" for n in range(300))
    report = service.execute(OptOutCommand(Operation.ADD, numbers, SENDER, "US"), audit=CONTEXT)
    calls = {"n": 0}
    original = indexer._storage.upsert_batch  # type: ignore[attr-defined]

    def dies_after_three(batch: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise WorkerDied()
        original(batch)

    monkeypatch.setattr(indexer._storage, "upsert_batch", dies_after_three)  # type: ignore[attr-defined]
    queue = QueueClient.from_connection_string(azurite.connection_string, names["queue"])
    (message,) = queue.receive_messages(visibility_timeout=1, max_messages=1)  # the outcome's index message
    with pytest.raises(WorkerDied):
        indexer.process(message.content.encode(), dequeue_count=message.dequeue_count)
    partial = len(entities(azurite, names["table"]))
    assert 0 < partial < len(numbers)  # died half-way; the message was not deleted
    monkeypatch.setattr(indexer._storage, "upsert_batch", original)  # type: ignore[attr-defined]
    results = drain_index(azurite, names["queue"], indexer)
    # The redelivered message and the reconcile, in whichever order they became visible.
    assert len(results) == 2 and set(results) <= {"indexed", "already-indexed"}
    assert_history_once(azurite, names, numbers, "succeeded")
    view = trail.operation(report.audit.operation_id)  # type: ignore[union-attr]
    assert view is not None and view["indexing"] == {**view["indexing"], "state": "indexed",
                                                     "indexedNumbers": len(numbers)}


def test_indexing_that_keeps_failing_is_handed_to_a_fresh_delayed_message(
        emulator: AcsEmulator, azurite: Azurite, names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import ServiceResponseError

    service, _, _, indexer = direct_service(emulator, azurite, names, monkeypatch)
    service.execute(OptOutCommand(Operation.ADD, NUMBERS[:5], SENDER, "US"), audit=CONTEXT)
    fail_on(indexer._storage, "upsert_batch", lambda *a: True, ServiceResponseError("table down"))  # type: ignore[attr-defined]
    queue = QueueClient.from_connection_string(azurite.connection_string, names["queue"])
    (message,) = queue.receive_messages(visibility_timeout=1, max_messages=1)
    with pytest.raises(ServiceResponseError):
        indexer.process(message.content.encode(), dequeue_count=1, max_dequeue_count=5)
    assert indexer.process(message.content.encode(), dequeue_count=5, max_dequeue_count=5) == "deferred"
    queue.delete_message(message)
    assert queue.get_queue_properties().approximate_message_count == 2  # the reconcile, and the fresh one


def test_garbage_index_messages_are_dropped(azurite: Azurite, names: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    indexer = AuditIndexer(storage_for(container=names["container"], table=names["table"], queue=names["queue"]),
                           reconcile_delay=RECONCILE_SECONDS)
    for body in (b"", b"not json", b"[]", b'{"operationId": "../x", "kind": "outcome"}',
                 b'{"operationId": "' + b"a" * 32 + b'", "kind": "delete"}', b"{" * 5000):
        assert indexer.process(body) == "ignored"
    assert indexer.process(json.dumps({"operationId": "b" * 32, "kind": "outcome"}).encode()) == "no-intent"


# -- scale and order ---------------------------------------------------------------------------------

def test_a_10000_number_remove_has_every_numbers_history(audit_env: dict[str, str], azurite: Azurite,
                                                          emulator: AcsEmulator,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    numbers = [f"+1{area}555{n:04d}" for area in (206, 425) for n in range(5000)]
    emulator.seed_opt_outs(SENDER, numbers)
    monkeypatch.setenv("OPTOUT_MAX_NUMBERS", "10000")
    monkeypatch.setenv("OPTOUT_MAX_BODY_BYTES", "1048576")
    # The history is what this test reads; 10,000 change events would only add minutes on Azurite
    # (a large operation's events are tested in test_change_events.py).
    monkeypatch.setenv("OPTOUT_EVENTS_SINKS", "none")
    runtime.reset()
    report = body_of(call("RemoveOptOuts", body={"phoneNumbers": numbers, "reason": "bulk re-subscribe"}))
    assert report["summary"]["succeeded"] == 10_000 and emulator.opted_out(SENDER) == set()
    operation_id = report["audit"]["operationId"]
    # A bounded number of writes, whatever the size: two blobs before the answer.
    assert blobs(azurite, audit_env["container"]) == [f"{operation_id}/intent.json", f"{operation_id}/outcome.json"]
    drain_index(azurite, audit_env["queue"])

    stored = entities(azurite, audit_env["table"])
    by_number = {e["PhoneNumber"]: e for e in stored}
    assert len(stored) == len(by_number) == 10_000 and set(by_number) == set(numbers)
    for number, entity in by_number.items():  # every number's record, where its history query finds it
        partition, row = audit.history_keys(SENDER, number, entity["OccurredAt"], operation_id)
        assert (entity["PartitionKey"], entity["RowKey"], entity["Outcome"], entity["Action"]) == (
            partition, row, "succeeded", "remove")
    assert len({e["PartitionKey"] for e in stored}) == audit.HISTORY_BUCKETS
    for number in numbers[::500]:  # and read back through the API
        (record,) = history(number)["value"]
        assert (record["phoneNumber"], record["operationId"], record["reason"]) == (number, operation_id,
                                                                                    "bulk re-subscribe")
    assert operation(operation_id)["counts"]["succeeded"] == 10_000


def test_concurrent_operations_on_the_same_numbers_keep_their_order(audit_env: dict[str, str],
                                                                     azurite: Azurite) -> None:
    numbers = [NUMBER, OTHER_NUMBER, "+14255550144"]
    receipts: list[tuple[str, str]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for step in range(4):
            action = "AddOptOuts" if (n + step) % 2 else "RemoveOptOuts"
            answer = body_of(call(action, body={"phoneNumbers": numbers, "reason": f"w{n}s{step}"}))
            with lock:
                receipts.append((answer["audit"]["acceptedAt"], answer["audit"]["operationId"]))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert len(receipts) == 16
    drain_index(azurite, audit_env["queue"])
    # Newest first by the time each operation was accepted; ties (same microsecond) by operation id.
    expected = [op for _, op in sorted(receipts, key=lambda r: (r[0], r[1]), reverse=True)]
    for number in numbers:
        records = history(number, top="50")["value"]
        assert [r["operationId"] for r in records] == sorted(
            expected, key=lambda op: (dict((o, t) for t, o in receipts)[op], op), reverse=True)
        accepted = [datetime.fromisoformat(r["occurredAt"].replace("Z", "+00:00")) for r in records]
        assert accepted == sorted(accepted, reverse=True)


# -- the queue path, through the local host ----------------------------------------------------------

def test_queued_changes_are_journalled_indexed_and_readable(azurite: Azurite, emulator: AcsEmulator,
                                                            names: dict[str, str]) -> None:
    key = "audit-test-key"
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_AUDIT_TABLE": names["table"],
        "OPTOUT_AUDIT_CONTAINER": names["container"],
        "OPTOUT_AUDIT_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.500",
    }
    emulator.seed_opt_outs(SENDER, [NUMBER])
    correlation_id = str(uuid.uuid4())
    runtime.reset()
    try:
        with LocalHost(app_dir=".", app_module="function_app", port=0, function_keys={"default": key},
                       settings=settings) as host:
            requests_queue = QueueClient.from_connection_string(azurite.connection_string, "optout-requests")
            results_queue = QueueClient.from_connection_string(azurite.connection_string, "optout-results")
            for client in (requests_queue, results_queue):
                try:
                    client.create_queue()
                except Exception:  # already there
                    pass
            requests_queue.send_message(json.dumps({
                "action": "remove", "phoneNumbers": [NUMBER, "(425) 555-0143", "nonsense"],
                "reason": "re-subscribed at the shop", "correlationId": correlation_id}))
            result = wait_for_result(results_queue, correlation_id)
            assert result["status"] == "completed"
            assert result["audit"]["status"] == "accepted" and result["audit"]["outcomeRecorded"] is True
            operation_id = result["audit"]["operationId"]

            headers = {"x-functions-key": key}
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:  # the host's indexer function runs on its own
                record = requests.get(f"{host.base_url}/api/operations/{operation_id}", headers=headers,
                                      timeout=30).json()
                if record["indexing"]["state"] == "indexed":
                    break
                time.sleep(0.2)
            response = requests.get(f"{host.base_url}/api/optouts/%2B14255550142/history", headers=headers,
                                    timeout=30)
            assert response.status_code == 200
            (entry,) = response.json()["value"]
            assert requests.get(f"{host.base_url}/api/operations/{operation_id}", timeout=30).status_code == 401
    finally:
        runtime.reset()
    assert record["indexing"]["state"] == "indexed"
    assert (record["channel"], record["caller"], record["numbers"]) == ("queue", "optout-requests", 2)
    assert (entry["channel"], entry["caller"], entry["correlationId"], entry["operationId"]) == (
        "queue", "optout-requests", correlation_id, operation_id)
    assert (entry["action"], entry["outcome"], entry["reason"]) == ("remove", "succeeded", "re-subscribed at the shop")


def wait_for_result(results_queue: QueueClient, correlation_id: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for message in results_queue.receive_messages(messages_per_page=32, max_messages=32):
            result = json.loads(message.content)
            results_queue.delete_message(message)
            if result["correlationId"] == correlation_id:
                return result
        time.sleep(0.2)
    raise AssertionError(f"no result for {correlation_id} within {WAIT_SECONDS} s")


# -- keys -------------------------------------------------------------------------------------------

def test_history_keys_sort_newest_first_and_are_the_same_on_every_run() -> None:

    older = datetime(2026, 1, 1, 12, 0, 0, 0, tzinfo=UTC)
    newer = datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=UTC)
    operation_id = "c" * 32
    assert audit.history_keys(SENDER, NUMBER, newer, operation_id)[1] < audit.history_keys(SENDER, NUMBER, older,
                                                                                         operation_id)[1]
    assert audit.history_keys(SENDER, NUMBER, older, operation_id) == audit.history_keys(SENDER, NUMBER, older,
                                                                                       operation_id)
    partition, row = audit.history_keys(SENDER, NUMBER, older, operation_id)
    assert "4255550142" not in partition + row and 0 <= int(partition) < audit.HISTORY_BUCKETS
    assert audit.history_keys(OTHER_SENDER, NUMBER, older, operation_id) != (partition, row)


def test_a_queue_context_is_not_a_verified_caller() -> None:
    context = queue_context("optout-requests", "c-1")
    assert (context.caller, context.verified, context.claimed_caller) == ("optout-requests", False, None)


def test_intent_problem_is_a_problem() -> None:
    problem = audit.audit_unavailable_problem("x")
    assert isinstance(problem, Problem) and problem.status == 503 and problem.retry_after
