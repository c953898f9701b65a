"""The audit trail against a real Azurite table: records written by the HTTP functions (called
in-process) and by the queue function (through the local host), read back newest first and
paged, concurrent writers, and a table that is down or hangs."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, free_port
from devtools.localhost import LocalHost
from optouts import runtime
from optouts.audit import trail as audit
from optouts.audit.trail import AuditContext, AuditRecord, AuditTrail, table_client
from optouts.domain.commands import OptOutCommand
from optouts.domain.operations import Operation
from optouts.usecases.service import OptOutService

from .conftest import OTHER_SENDER, SENDER, fast_client
from .test_http_api import assert_problem, body_of, call

NUMBER = "+14255550142"
OTHER_NUMBER = "+14255550143"
#: How long a test waits for something that should take a moment; a bound, not an expectation.
WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


def new_table_name() -> str:
    return f"audit{uuid.uuid4().hex[:12]}"  # one table per test: no test sees another's records


def read_table(azurite: Azurite, name: str) -> list[dict]:
    with TableClient.from_connection_string(azurite.connection_string, name) as table:
        return [dict(entity) for entity in table.list_entities()]


@pytest.fixture
def audit_env(emulator: AcsEmulator, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The in-process gateway with the audit trail in a fresh Azurite table; yields its name."""
    table = new_table_name()
    for name, value in {
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "OPTOUT_AUDIT_TABLE": table,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
        "OPTOUT_TIME_BUDGET_SECONDS": "10",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPTOUT_AUDIT_CHECKS", raising=False)
    runtime.reset()
    yield table
    runtime.reset()


def history(phone_number: str, **params: str) -> dict:
    response = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": phone_number}, params=params)
    assert response.status_code == 200, response.get_body()
    return body_of(response)


# -- the HTTP path ----------------------------------------------------------------------------------

def test_http_changes_are_recorded_with_caller_reason_and_trace(audit_env: str, azurite: Azurite,
                                                                 emulator: AcsEmulator) -> None:
    emulator.seed_opt_outs(SENDER, [NUMBER])
    principal = {"X-MS-CLIENT-PRINCIPAL-NAME": "crm-sync@contoso.com",
                 "X-MS-CLIENT-PRINCIPAL-ID": "6f1c2a4e-0000-4000-8000-000000000001"}
    removed = call("RemoveOptOuts", headers=principal, body={
        "phoneNumbers": [NUMBER, "(425) 555-0143", "garbage", NUMBER], "reason": "customer re-subscribed, ticket 4711"})
    assert removed.status_code == 200
    report = body_of(removed)
    # Two distinct numbers reached ACS; the unparseable one never did and the repeat is one call.
    assert report["audit"] == {"recorded": 2, "failed": 0}
    assert report["summary"] == {"total": 4, "succeeded": 3, "invalid": 1, "failed": 0}

    added = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER]}))
    assert added["audit"] == {"recorded": 1, "failed": 0}

    entities = read_table(azurite, audit_env)
    assert sorted(e["PhoneNumber"] for e in entities) == [NUMBER, NUMBER, OTHER_NUMBER]
    assert {e["PartitionKey"] for e in entities} == {audit.partition_key(SENDER, NUMBER),
                                                     audit.partition_key(SENDER, OTHER_NUMBER)}

    newest, oldest = history(NUMBER)["value"]
    assert newest["action"] == "add" and newest["caller"] == "function-key" and newest["callerId"] is None
    assert newest["reason"] is None
    assert oldest == {
        "occurredAt": oldest["occurredAt"], "action": "remove", "sender": SENDER, "phoneNumber": NUMBER,
        "outcome": "succeeded", "upstreamStatus": 200, "errorCode": None, "optedOut": None,
        "caller": "crm-sync@contoso.com", "callerId": "6f1c2a4e-0000-4000-8000-000000000001",
        "channel": "http", "correlationId": removed.headers["x-trace-id"],
        "reason": "customer re-subscribed, ticket 4711",
    }
    assert oldest["occurredAt"].endswith("Z") and oldest["occurredAt"] <= newest["occurredAt"]
    assert datetime.fromisoformat(oldest["occurredAt"].replace("Z", "+00:00")) <= datetime.now(UTC)


def test_failures_reported_by_acs_are_recorded_as_such(audit_env: str, emulator: AcsEmulator) -> None:
    from devtools.acs_emulator import FaultConfig

    emulator.faults = FaultConfig(recipient_error_rate=1.0)
    report = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER]}))
    assert report["results"][0]["status"] == "failed" and report["audit"] == {"recorded": 1, "failed": 0}
    (record,) = history(NUMBER)["value"]
    assert (record["outcome"], record["errorCode"]) == ("failed", "AcsUnavailable")
    assert record["upstreamStatus"] >= 500


def test_checks_are_audited_only_when_asked(audit_env: str, azurite: Azurite,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    check = body_of(call("CheckOptOuts", body={"phoneNumbers": [NUMBER]}))
    assert "audit" not in check
    single = body_of(call("GetOptOutStatus", method="GET", route_params={"phoneNumber": NUMBER}))
    assert "audit" not in single
    assert history(NUMBER) == {"value": []}  # nothing written: the table was never even created

    monkeypatch.setenv("OPTOUT_AUDIT_CHECKS", "true")
    runtime.reset()
    assert body_of(call("CheckOptOuts", body={"phoneNumbers": [NUMBER]}))["audit"] == {"recorded": 1, "failed": 0}
    single = body_of(call("GetOptOutStatus", method="GET", route_params={"phoneNumber": NUMBER}))
    assert single["audit"] == {"recorded": 1, "failed": 0}
    records = history(NUMBER)["value"]
    assert [(r["action"], r["optedOut"]) for r in records] == [("check", False), ("check", False)]


def test_writes_can_be_turned_off(audit_env: str, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    body_of(call("RemoveOptOuts", body={"phoneNumbers": [NUMBER]}))  # written while on
    monkeypatch.setenv("OPTOUT_AUDIT_WRITES", "false")
    runtime.reset()
    report = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER, OTHER_NUMBER]}))
    assert report["summary"]["succeeded"] == 2
    assert "audit" not in report
    assert [r["action"] for r in history(NUMBER)["value"]] == ["remove"]  # history still reads
    assert len(read_table(azurite, audit_env)) == 1


def test_a_number_nobody_sent_is_not_audited(audit_env: str, azurite: Azurite) -> None:
    report = body_of(call("RemoveOptOuts", body={"phoneNumbers": ["garbage", ""]}))
    assert report["audit"] == {"recorded": 0, "failed": 0}


# -- reading the history ------------------------------------------------------------------------------

def test_history_pages_newest_first_with_an_absolute_next_link(audit_env: str) -> None:
    trace_ids = []
    for n in range(5):
        action = "AddOptOuts" if n % 2 else "RemoveOptOuts"
        response = call(action, body={"phoneNumbers": [NUMBER], "reason": f"step {n}"})
        assert body_of(response)["audit"] == {"recorded": 1, "failed": 0}
        trace_ids.append(response.headers["x-trace-id"])
    call("AddOptOuts", body={"phoneNumbers": [OTHER_NUMBER]})  # another partition: never in NUMBER's pages
    call("AddOptOuts", body={"phoneNumbers": [NUMBER], "sender": OTHER_SENDER})  # another sender: neither

    seen: list[dict] = []
    pages = 0
    params = {"top": "2"}
    for _ in range(10):  # bounded: 5 records in pages of 2 need 3
        page = history(NUMBER, **params)
        pages += 1
        assert len(page["value"]) <= 2
        seen += page["value"]
        if "nextLink" not in page:
            break
        link = urlsplit(page["nextLink"])
        assert (link.scheme, link.netloc) == ("http", "127.0.0.1:7071")
        assert link.path == "/api/optouts/%2B14255550142/history"
        assert "code" not in parse_qs(link.query)  # the function key is never echoed
        params = {name: values[0] for name, values in parse_qs(link.query).items()}
        assert params["sender"] == SENDER and params["top"] == "2"
    assert pages >= 3
    assert [r["correlationId"] for r in seen] == trace_ids[::-1]
    assert [r["reason"] for r in seen] == [f"step {n}" for n in range(4, -1, -1)]
    assert {(r["sender"], r["phoneNumber"]) for r in seen} == {(SENDER, NUMBER)}

    other_sender = history(NUMBER, sender=OTHER_SENDER)["value"]
    assert [r["sender"] for r in other_sender] == [OTHER_SENDER]


def test_history_next_link_names_the_public_host(audit_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_TRUSTED_FORWARDERS", "10.0.0.0/24")  # the proxy, as App Service saw it
    for _ in range(2):
        call("AddOptOuts", body={"phoneNumbers": [NUMBER]})
    response = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": "(425) 555-0142"},
                    params={"top": "1"},
                    headers={"X-Forwarded-Host": "optouts.contoso.com", "X-Forwarded-Proto": "https",
                             "X-Forwarded-For": "203.0.113.9, 10.0.0.4:50123"})
    assert body_of(response)["nextLink"].startswith("https://optouts.contoso.com/api/optouts/%2B14255550142/history?")


def test_history_refuses_bad_input(audit_env: str) -> None:
    def get(phone_number: str, **params: str):
        return call("GetOptOutHistory", method="GET", route_params={"phoneNumber": phone_number}, params=params)

    assert "phoneNumber" in assert_problem(get("not a number"), 400)["errors"]
    assert_problem(get(NUMBER, sender="+18005559999"), 403, "SenderNotAllowed")
    for top in ("0", "501", "ten", "-1", "٣", "1.5"):
        assert "top" in assert_problem(get(NUMBER, top=top), 400, "ValidationFailed")["errors"]
    well_formed = "2516069451093398339_" + "a" * 32
    for token in ("%%%", "bm90IGpzb24", "' or 1 eq 1 or '", "2516069451093398339_" + "X" * 32, "x" * 3000,
                  " ", f" {well_formed}", f"{well_formed}\n", "\u0662" * 19 + "_" + "a" * 32):
        assert "continuationToken" in assert_problem(get(NUMBER, continuationToken=token), 400)["errors"]
    assert get(NUMBER, continuationToken="").status_code == 200  # empty: the first page
    assert get(NUMBER, continuationToken=well_formed).status_code == 200


def test_history_without_storage_settings_names_the_setting(audit_env: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureWebJobsStorage")
    runtime.reset()
    report = body_of(call("AddOptOuts", body={"phoneNumbers": [NUMBER]}))
    assert report["audit"] == {"recorded": 0, "failed": 1}  # the change itself went through
    assert report["summary"]["succeeded"] == 1
    response = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": NUMBER})
    assert "AzureWebJobsStorage" in assert_problem(response, 503, "GatewayMisconfigured")["detail"]


# -- concurrent writers ------------------------------------------------------------------------------

def test_concurrent_writers_in_the_same_tick_never_collide(azurite: Azurite) -> None:
    table = new_table_name()
    instant = datetime.now(UTC)  # the same timestamp everywhere: only the key suffix tells them apart
    per_writer = 40
    trails = [AuditTrail(lambda: table_client(table, connection="AUDIT_TEST_STORAGE"), max_concurrency=4)
              for _ in range(2)]
    outcomes: list[audit.AuditOutcome] = []

    def write(trail: AuditTrail, writer: int) -> None:
        records = [record_at(instant, f"writer {writer} #{n}") for n in range(per_writer)]
        outcomes.append(trail.record(records))

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIT_TEST_STORAGE", azurite.connection_string)
        threads = [threading.Thread(target=write, args=(trail, n)) for n, trail in enumerate(trails)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT_SECONDS)
        page = trails[0].history(SENDER, NUMBER, top=audit.MAX_PAGE_SIZE)
    for trail in trails:
        trail.close()
    assert sorted((o.recorded, o.failed) for o in outcomes) == [(per_writer, 0)] * 2
    assert len(page.records) == 2 * per_writer and page.continuation_token is None
    entities = read_table(azurite, table)
    assert len({e["RowKey"] for e in entities}) == 2 * per_writer
    assert {e["CorrelationId"] for e in entities} == {f"writer {w} #{n}" for w in range(2) for n in range(per_writer)}
    assert len({e["RowKey"][:19] for e in entities}) == 1  # really the same tick


def record_at(instant: datetime, correlation_id: str) -> AuditRecord:
    return AuditRecord(occurred_at=instant, action="remove", sender=SENDER, phone_number=NUMBER,
                       outcome="succeeded", upstream_status=200, error_code=None, opted_out=None,
                       caller="test", caller_id=None, channel="http", correlation_id=correlation_id, reason=None)


def test_row_keys_sort_newest_first() -> None:
    older = datetime(2026, 1, 1, 12, 0, 0, 0, tzinfo=UTC)
    newer = datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert audit.row_key(newer) < audit.row_key(older)
    assert audit.row_key(older) != audit.row_key(older)


def test_partition_keys_are_one_per_sender_and_number_and_hold_no_number() -> None:
    key = audit.partition_key(SENDER, NUMBER)
    assert key == audit.partition_key(SENDER, NUMBER) and len(key) == 64 and set(key) <= set("0123456789abcdef")
    assert "4255550142" not in key
    assert key != audit.partition_key(OTHER_SENDER, NUMBER) != audit.partition_key(SENDER, OTHER_NUMBER)


# -- the table down or hanging -------------------------------------------------------------------

def closed_port_storage() -> str:
    """Azurite's account with the table endpoint on a port nothing listens on."""
    port = free_port()
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")


def test_table_unavailable_the_change_still_answers_200_flagged(
    audit_env: str, emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="optouts.audit.trail")
    monkeypatch.setenv("AzureWebJobsStorage", closed_port_storage())
    runtime.reset()
    emulator.seed_opt_outs(SENDER, [NUMBER, OTHER_NUMBER])
    response = call("RemoveOptOuts", body={"phoneNumbers": [NUMBER, OTHER_NUMBER], "reason": "ticket 9"})
    assert response.status_code == 200
    report = body_of(response)
    assert [r["status"] for r in report["results"]] == ["succeeded", "succeeded"]
    assert report["audit"] == {"recorded": 0, "failed": 2}
    assert emulator.opted_out(SENDER) == set()  # ACS was changed all the same
    assert "+1425***0142" in caplog.text and "4255550142" not in caplog.text
    assert ACCOUNT_KEY not in caplog.text
    assert runtime.get_audit_trail().failed_total == 2

    unreadable = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": NUMBER})
    assert_problem(unreadable, 503, "AuditUnavailable")
    assert int(unreadable.headers["Retry-After"]) >= 1


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a storage endpoint that hangs."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._accepted.append(connection)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()
        for connection in self._accepted:
            connection.close()
        self._thread.join(timeout=10)


def test_a_hanging_table_is_cut_off_by_the_time_budget(emulator: AcsEmulator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with SilentServer() as silent:
        monkeypatch.setenv("AUDIT_TEST_STORAGE", (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint=http://127.0.0.1:{silent.port}/{ACCOUNT};"))
        # The SDK on its own would wait out a 300 s read timeout; the trail's budget is half a second.
        trail = AuditTrail(lambda: table_client("hangs", timeout=300, connection="AUDIT_TEST_STORAGE"),
                           time_budget=0.5)
        service = OptOutService(fast_client(emulator.connection_string), trail)
        command = OptOutCommand(Operation.ADD, (NUMBER, OTHER_NUMBER), SENDER, "US", reason="hang test")
        answers: list = []
        worker = threading.Thread(target=lambda: answers.append(
            service.execute(command, audit=AuditContext("http", "function-key", "trace"))))
        worker.start()
        worker.join(timeout=WAIT_SECONDS)  # a bound against hanging the suite, not a timing assertion
        finished = not worker.is_alive()
        trail.close()
        service.provider.close()
    assert finished, "the operation waited on the hanging table past its budget"
    (report,) = answers
    assert report.summary["succeeded"] == 2 and report.audit == audit.AuditOutcome(recorded=0, failed=2)
    assert report.to_dict()["audit"] == {"recorded": 0, "failed": 2}


# -- the queue path, through the local host ----------------------------------------------------------

def test_queued_changes_are_recorded_with_the_queue_as_caller(azurite: Azurite, emulator: AcsEmulator) -> None:
    table = new_table_name()
    key = "audit-test-key"
    settings = {
        "AzureWebJobsStorage": azurite.connection_string,
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_AUDIT_TABLE": table,
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
            assert result["audit"] == {"recorded": 2, "failed": 0}

            response = requests.get(f"{host.base_url}/api/optouts/%2B14255550142/history",
                                    headers={"x-functions-key": key}, timeout=30)
            assert response.status_code == 200
            (record,) = response.json()["value"]
            without_key = requests.get(f"{host.base_url}/api/optouts/%2B14255550142/history", timeout=30)
            assert without_key.status_code == 401
    finally:
        runtime.reset()
    assert (record["channel"], record["caller"], record["correlationId"]) == ("queue", "optout-requests",
                                                                             correlation_id)
    assert (record["action"], record["outcome"], record["reason"]) == ("remove", "succeeded",
                                                                       "re-subscribed at the shop")
    assert sorted(e["PhoneNumber"] for e in read_table(azurite, table)) == [NUMBER, OTHER_NUMBER]


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
