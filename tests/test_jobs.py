"""Jobs end to end: real Azurite, the local host running every function (HTTP and the jobs
queue), the ACS emulator behind it. Each wait is bounded; nothing is timed."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from optouts import runtime
from optouts.audit.callers import AuditContext
from optouts.audit.trail import AuditTrail, storage_for, table_client
from optouts.azure.storage import blob_container_client, queue_client
from optouts.config import JobSettings
from optouts.domain.jobs import REPORT_COLUMNS
from optouts.domain.operations import Operation
from optouts.providers.fake import FakeProvider
from optouts.usecases.jobs import JobService, JobStorage, RetryLater
from optouts.usecases.service import OptOutService

from .conftest import SENDER

KEY = "jobs-test-key"
#: Bounds, not expectations: a 50,000-number job takes seconds here.
WAIT_SECONDS = 120
UPLOADS = "optout-uploads"


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
        "OPTOUT_JOB_MAX_ROWS": "60000",
        "OPTOUT_AUDIT_RECONCILE_SECONDS": "3600",
        # Change events are tested in test_change_events.py; here they would only add 50,000 queue writes.
        "OPTOUT_EVENTS_SINKS": "none",
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.200",
    }
    runtime.reset()
    # Thousands of Storage calls a job: the SDKs' per-request DEBUG lines (kept and scanned by the
    # suite's log scan) would cost more than the job. The gateway's own lines are all kept.
    quiet = {name: logging.getLogger(name).level for name in ("azure", "urllib3")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with LocalHost(app_dir=".", app_module="function_app", port=0, settings=settings,
                       function_keys={"default": KEY}) as host:
            yield host
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        runtime.reset()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["x-functions-key"] = KEY
        yield session


def post_csv(gateway: LocalHost, http: requests.Session, body: bytes, **query: str) -> requests.Response:
    return http.post(f"{gateway.base_url}/api/jobs", params=query, data=body, headers={"content-type": "text/csv"},
                     timeout=60)


def wait_for(gateway: LocalHost, http: requests.Session, job_id: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = http.get(f"{gateway.base_url}/api/jobs/{job_id}", timeout=30).json()
        if done(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job did not get there in time: {job}")


def finished(job: dict[str, Any]) -> bool:
    return job["state"] == "failed" or (job["state"] in ("completed", "cancelled") and job["reportReady"])


def report_rows(gateway: LocalHost, http: requests.Session, job_id: str) -> list[dict[str, str]]:
    answer = http.get(f"{gateway.base_url}/api/jobs/{job_id}/report", timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(answer.content.decode("utf-8")))
    assert tuple(reader.fieldnames or ()) == REPORT_COLUMNS
    return list(reader)


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+1206{start + n:07d}" for n in range(count)]


def test_a_50000_number_csv_job_reports_every_number_exactly_once(gateway: LocalHost, http: requests.Session,
                                                                  acs: AcsEmulator) -> None:
    listed = numbers(49_990) + [f"bad-{n}" for n in range(10)]
    body = ("phone,name\r\n" + "".join(f"{number},x\r\n" for number in listed)).encode()
    answer = post_csv(gateway, http, body, action="add", reason="bulk test")
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["Location"] == f"/api/jobs/{job['id']}"
    assert (job["state"], job["total"], job["processed"], job["reportReady"]) == ("queued", 50_000, 0, False)
    assert job["workItems"] == {"total": 50, "done": 0}
    early = http.get(f"{gateway.base_url}/api/jobs/{job['id']}/report", timeout=30)
    if early.status_code != 200:  # it may be done already on a fast machine
        assert (early.status_code, early.json()["code"]) == (409, "ReportNotReady")

    job = wait_for(gateway, http, job["id"], finished)
    assert job["state"] == "completed"
    assert job["counts"] == {"succeeded": 49_990, "invalid": 10, "failed": 0, "cancelled": 0}
    assert (job["processed"], job["percentDone"], job["etaSeconds"]) == (50_000, 100.0, None)
    assert job["workItems"] == {"total": 50, "done": 50}
    assert job["finishedAt"] and job["ratePerSecond"] > 0

    rows = report_rows(gateway, http, job["id"])
    assert [row["input"] for row in rows] == listed  # every number once, in input order
    assert Counter(row["status"] for row in rows) == {"succeeded": 49_990, "invalid": 10}
    assert all(row["e164"] == row["input"] for row in rows[:49_990])
    assert {row["code"] for row in rows[49_990:]} == {"UnexpectedCharacters"}
    assert set(listed[:49_990]) <= acs.opted_out(SENDER)


def test_the_work_items_are_audited_with_the_job_as_correlation(gateway: LocalHost, http: requests.Session) -> None:
    answer = post_csv(gateway, http, b"phone\n+12065550001\n", action="remove")
    job = wait_for(gateway, http, answer.json()["id"], finished)
    history = http.get(f"{gateway.base_url}/api/optouts/%2B12065550001/history", timeout=30)
    deadline = time.monotonic() + WAIT_SECONDS  # the indexer may still be busy with earlier jobs' numbers
    while not [r for r in history.json()["value"] if r["correlationId"] == job["id"]] and time.monotonic() < deadline:
        time.sleep(0.3)
        history = http.get(f"{gateway.base_url}/api/optouts/%2B12065550001/history", timeout=30)
    record = next(r for r in history.json()["value"] if r["correlationId"] == job["id"])
    assert (record["channel"], record["action"], record["outcome"]) == ("job", "remove", "succeeded")


@pytest.mark.parametrize(("body", "code", "rows"), [
    (b"+12065550001\n+12065550002\n", "CsvHeaderMissing", ["row 1"]),
    (b"phone;name\n+12065550001;a\n", "CsvWrongDelimiter", ["row 1"]),
    (b"phone\n+12065550001\n\n+12065550002\n", "InvalidCsv", ["row 3"]),
    (b"phone,name\n+12065550001,a,b\n", "InvalidCsv", ["row 2"]),
    (b"phone\n" + b"+12065550001\n" * 60_001, "TooManyRows", ["row 60002"]),
    (b"phone\n", "EmptyInput", []),
])
def test_malformed_csvs_get_a_400_naming_the_rows(gateway: LocalHost, http: requests.Session, body: bytes,
                                                  code: str, rows: list[str]) -> None:
    answer = post_csv(gateway, http, body, action="remove")
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == code
    assert list(problem.get("errors", {})) == rows


def test_a_bom_is_accepted(gateway: LocalHost, http: requests.Session) -> None:
    answer = post_csv(gateway, http, b"\xef\xbb\xbfPhone Number\r\n+12065550003\r\n", action="check")
    assert answer.status_code == 202
    job = wait_for(gateway, http, answer.json()["id"], finished)
    [row] = report_rows(gateway, http, job["id"])
    assert (row["input"], row["status"]) == ("+12065550003", "succeeded")
    assert row["optedOut"] in ("true", "false")


def test_bad_requests_are_refused(gateway: LocalHost, http: requests.Session) -> None:
    base = f"{gateway.base_url}/api/jobs"
    assert post_csv(gateway, http, b"phone\n+12065550001\n").json()["errors"] == {
        "action": ["is required: one of add, remove, check"]}
    assert post_csv(gateway, http, b"phone\n+1\n", action="remove", sendr="x").status_code == 400
    assert post_csv(gateway, http, b"phone\n+1\n", action="remove", sender="+18005559999").status_code == 403
    answer = http.post(base, data=b"x", headers={"content-type": "text/plain"}, timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (415, "UnsupportedMediaType")
    answer = http.post(base, json={"action": "remove", "blobUrl": "https://evil.example/x.csv"}, timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (400, "InvalidBlobUrl")
    answer = http.post(base, json={"action": "remove", "blobUrl": "../x.csv"}, timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (400, "InvalidBlobUrl")
    for path in ("0" * 32, "not-an-id", f"{'0' * 32}/report"):
        answer = http.get(f"{base}/{path}", timeout=30)
        assert (answer.status_code, answer.json()["code"]) == (404, "JobNotFound")
    assert http.delete(f"{base}/{'0' * 32}", timeout=30).status_code == 404


def test_cancel_part_way_leaves_a_report_with_every_row(gateway: LocalHost, http: requests.Session,
                                                        acs: AcsEmulator) -> None:
    # 40 work items at 100 ms a call: the host takes 16 at a time, so most have not started when
    # the first is counted.
    listed = numbers(40_000, start=5_000_000)
    acs.faults = FaultConfig(latency_seconds=0.1)
    try:
        answer = post_csv(gateway, http, ("phone\n" + "\n".join(listed) + "\n").encode(), action="add")
        job_id = answer.json()["id"]
        wait_for(gateway, http, job_id, lambda job: job["processed"] > 0)
        cancelled = http.delete(f"{gateway.base_url}/api/jobs/{job_id}", timeout=30)
    finally:
        acs.faults = FaultConfig()
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    job = wait_for(gateway, http, job_id, finished)
    assert job["state"] == "cancelled" and job["processed"] == 40_000
    assert 0 < job["counts"]["cancelled"] < 40_000
    rows = report_rows(gateway, http, job_id)
    assert [row["input"] for row in rows] == listed
    skipped = {row["input"] for row in rows if row["status"] == "cancelled"}
    assert len(skipped) == job["counts"]["cancelled"]
    assert {row["code"] for row in rows if row["status"] == "cancelled"} == {"JobCancelled"}
    assert not skipped & acs.opted_out(SENDER)  # skipped numbers never reached the provider
    again = http.delete(f"{gateway.base_url}/api/jobs/{job_id}", timeout=30)
    assert again.status_code == 200  # cancelled already: the same job


def test_cancelling_a_completed_job_is_a_conflict(gateway: LocalHost, http: requests.Session) -> None:
    job = wait_for(gateway, http, post_csv(gateway, http, b"phone\n+12065550004\n", action="remove").json()["id"],
                   finished)
    answer = http.delete(f"{gateway.base_url}/api/jobs/{job['id']}", timeout=30)
    assert (answer.status_code, answer.json()["code"]) == (409, "JobFinished")


def uploads(azurite: Azurite) -> ContainerClient:
    container = ContainerClient.from_connection_string(azurite.connection_string, UPLOADS)
    try:
        container.create_container()
    except Exception:  # already there
        pass
    return container


def test_a_job_on_a_blob_and_its_report_by_sas(gateway: LocalHost, http: requests.Session,
                                              azurite: Azurite) -> None:
    name = f"lists/{uuid.uuid4()}.ndjson"
    listed = numbers(2_500, start=7_000_000)
    uploads(azurite).upload_blob(name, "".join(json.dumps({"phoneNumber": n}) + "\n" for n in listed).encode())
    answer = http.post(f"{gateway.base_url}/api/jobs", json={"action": "remove", "blobUrl": name}, timeout=30)
    assert answer.status_code == 202, answer.text
    assert answer.json()["source"] == "blob" and answer.json()["total"] is None
    job = wait_for(gateway, http, answer.json()["id"], finished)
    assert (job["state"], job["total"], job["counts"]["succeeded"]) == ("completed", 2_500, 2_500)
    link = http.get(f"{gateway.base_url}/api/jobs/{job['id']}/report", params={"delivery": "sas"}, timeout=30)
    assert link.status_code == 200, link.text
    report = requests.get(link.json()["url"], timeout=30)
    assert report.status_code == 200
    assert [row["input"] for row in csv.DictReader(io.StringIO(report.text))] == listed


def test_a_malformed_or_missing_blob_fails_the_job_with_the_rows(gateway: LocalHost, http: requests.Session,
                                                                azurite: Azurite) -> None:
    name = f"{uuid.uuid4()}.csv"
    uploads(azurite).upload_blob(name, b"phone\n+12065550001\n\n+12065550002\n")
    for blob, code in ((name, "InvalidCsv"), ("missing.csv", "BlobNotFound")):
        url = f"{uploads(azurite).url}/{blob}"
        answer = http.post(f"{gateway.base_url}/api/jobs", json={"action": "add", "blobUrl": url}, timeout=30)
        assert answer.status_code == 202, answer.text
        job = wait_for(gateway, http, answer.json()["id"], finished)
        assert (job["state"], job["error"]["code"]) == ("failed", code)
        report = http.get(f"{gateway.base_url}/api/jobs/{job['id']}/report", timeout=30)
        assert (report.status_code, report.json()["code"]) == (409, "NoReport")
    assert job["error"]["code"] == "BlobNotFound"


def test_a_queued_request_may_carry_its_numbers_in_a_blob(gateway: LocalHost, azurite: Azurite,
                                                         acs: AcsEmulator) -> None:
    name = f"{uuid.uuid4()}.csv"
    listed = numbers(40, start=8_000_000)
    uploads(azurite).upload_blob(name, ("phone\n" + "\n".join(listed) + "\n").encode())
    requests_queue = QueueClient.from_connection_string(azurite.connection_string, "optout-requests")
    results = QueueClient.from_connection_string(azurite.connection_string, "optout-results")
    try:
        results.create_queue()  # nothing may have been published yet
    except Exception:  # already there
        pass
    correlation_id = str(uuid.uuid4())
    requests_queue.send_message(json.dumps({"action": "add", "phoneNumbersBlob": name,
                                            "correlationId": correlation_id}))
    missing_id = str(uuid.uuid4())
    requests_queue.send_message(json.dumps({"action": "add", "phoneNumbersBlob": "nothing-here.csv",
                                            "correlationId": missing_id}))
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + WAIT_SECONDS
    while len(found) < 2 and time.monotonic() < deadline:
        for message in results.receive_messages(messages_per_page=32, max_messages=32):
            result = json.loads(message.content)
            if result.get("correlationId") in (correlation_id, missing_id):
                found[result["correlationId"]] = result
            results.delete_message(message)
        time.sleep(0.2)
    assert found[correlation_id]["status"] == "completed"
    assert [r["phoneNumber"] for r in found[correlation_id]["results"]] == listed
    assert set(listed) <= acs.opted_out(SENDER)
    assert (found[missing_id]["status"], found[missing_id]["error"]["code"]) == ("rejected", "BlobNotFound")


# -- a worker that crashes mid-job ------------------------------------------------------------------


class Crash(BaseException):
    """A worker dying: not an Exception, so nothing in the gateway catches it."""


def test_a_worker_crash_mid_job_neither_loses_nor_double_counts(azurite: Azurite,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every delivery is driven by hand: item 0's worker dies after writing its part and before
    counting it, item 1's after counting and before the message was deleted; both are delivered
    again. Every number is in the report once and counted once."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    suffix = uuid.uuid4().hex[:8]
    settings = JobSettings.from_environ({"OPTOUT_JOBS_QUEUE": f"crash-{suffix}", "OPTOUT_JOBS_TABLE": f"crash{suffix}",
                                         "OPTOUT_JOBS_CONTAINER": f"crash-{suffix}", "OPTOUT_JOB_ITEM_SIZE": "1000"})
    storage = JobStorage(lambda: table_client(settings.table), lambda: blob_container_client(settings.container),
                         lambda: blob_container_client(settings.uploads_container),
                         lambda: queue_client(settings.queue))
    provider = FakeProvider()
    trail = AuditTrail(storage_for(container=f"crash-audit-{suffix}", table=f"crashaudit{suffix}",
                                   queue=f"crash-audit-{suffix}"))
    service = OptOutService(provider, trail)
    jobs = JobService(settings=settings, storage=storage, service=lambda: service, item_size=lambda s, a: 1000,
                      time_budget=lambda s: 10.0)
    listed = numbers(3_000, start=9_000_000)
    context = AuditContext("http", "function-key", "trace")
    job = jobs.create_from_upload(Operation.ADD, SENDER, "US", None, [("phone\n" + "\n".join(listed)).encode()],
                                  "csv", context)
    queue = QueueClient.from_connection_string(azurite.connection_string, settings.queue)

    def deliver_all(crash: dict[int, str]) -> None:
        for _ in range(20):  # bounded: a plan message and three items, some twice
            messages = list(queue.receive_messages(max_messages=32, visibility_timeout=1))
            if not messages:
                break
            for message in messages:
                body = json.loads(message.content)
                index = body.get("index")
                point = crash.pop(index, None) if index is not None else None
                if point == "before-count":
                    monkeypatch.setattr(jobs, "_count", _crashing)
                    with pytest.raises(Crash):
                        jobs.process(message.content.encode(), message.dequeue_count, 5)
                    monkeypatch.undo()
                    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
                    continue  # not deleted: delivered again once visible
                try:
                    jobs.process(message.content.encode(), message.dequeue_count, 5)
                except RetryLater:
                    continue
                if point == "after-count":
                    continue  # counted, but the worker died before deleting the message
                queue.delete_message(message)
            time.sleep(1.1)

    deliver_all({0: "before-count", 1: "after-count"})
    done = jobs.get(job.id)
    assert (done.state, done.report_ready, done.items_done) == ("completed", True, 3)
    assert done.counts == {"succeeded": 3_000, "invalid": 0, "failed": 0, "cancelled": 0}
    rows = list(csv.DictReader(io.StringIO(jobs.report(job.id).decode())))
    assert [row["input"] for row in rows] == listed
    # Item 0's numbers reached the provider once: its part was written before the crash.
    sent = Counter(number for call in provider.calls for number in call.recipients)
    assert set(sent) == set(listed) and set(sent.values()) == {1}
    jobs.close()
    trail.close()


def _crashing(*args: object, **kwargs: object) -> None:
    raise Crash()
