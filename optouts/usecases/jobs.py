"""Jobs: lists of any size, processed in work items over a Storage queue (docs/jobs.md).

Storage layout (the jobs container, table and queue of `JobSettings`):

- `{job}/input.ndjson`: the list as accepted, one JSON string (the number's cell) per line;
  staged in blocks of `INPUT_BLOCK_BYTES`, so neither the POST nor the ingest of a blob holds it;
- `{job}/plan.json`: the work items, `[offset, length, firstRow, count]` byte ranges of the input;
- `{job}/parts/{index}.csv`: one work item's report rows, written once (the first writer wins),
  with its counts in the blob's metadata;
- `{job}/report.csv`: a block blob whose blocks are the header and every part, staged by the work
  items and committed once, when the last one is counted;
- table: the job entity (PartitionKey = job id, RowKey `job`) with the counters and `Counted`, a
  bitmap of the work items counted. A work item is counted by one update that sets its bit and adds
  its counts under the job's ETag: a redelivered work item finds its bit and is never counted
  twice, and two work items counted at once retry on 412. (One entity, not an entity-group
  transaction with a marker entity: Azurite ignores If-Match inside transactions, Azurite#1233.)

Messages (never numbers): `ingest` (read a referenced blob into the input), `plan` (enqueue the
work items a page at a time), `item` (one range).
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    generate_blob_sas,
)
from azure.storage.queue import QueueClient

from optouts.audit.callers import AuditContext
from optouts.config import JobSettings, SettingsError
from optouts.domain import jobs as model
from optouts.domain.commands import OptOutCommand
from optouts.domain.jobs import Job, WorkItem
from optouts.domain.logtext import log_safe
from optouts.domain.numberlists import NumberListReader, blob_format
from optouts.domain.operations import Operation
from optouts.domain.phone import InvalidNumber, normalize
from optouts.domain.problems import Problem, validation_problem
from optouts.domain.reports import NumberError, NumberResult
from optouts.usecases.service import OptOutService

_logger = logging.getLogger(__name__)

INPUT_BLOB = "input.ndjson"
PLAN_BLOB = "plan.json"
REPORT_BLOB = "report.csv"
JOB_ROW = "job"
#: The input is staged in blocks of this size: what a POST or an ingest holds at most.
INPUT_BLOCK_BYTES = 4 * 1024 * 1024
#: Work item messages sent per `plan` message; the rest by the next one (bounded work).
PLAN_PAGE = 64
#: Attempts at counting a work item against concurrent updates (412) before redelivery.
COUNT_ATTEMPTS = 40
MAX_BLOB_NAME = 1024
STORAGE_RETRY_AFTER = 30
_HEADER_BLOCK = base64.b64encode(b"h0000000").decode()


def block_id(index: int) -> str:
    # Every block id of a blob has the same length.
    return base64.b64encode(f"i{index:07d}".encode()).decode()


class RetryLater(Exception):
    """The message is to be delivered again."""


def jobs_unavailable(detail: str = "the job store did not answer; nothing was created, retry later") -> Problem:
    return Problem(503, "JobsUnavailable", "Jobs unavailable", detail, retry_after=STORAGE_RETRY_AFTER)


def not_found() -> Problem:
    return Problem(404, "JobNotFound", "Job not found", "no job with this id exists")


@dataclass
class JobStorage:
    """The jobs' Storage clients, built on first use; in Azurite what is missing is created."""

    table_factory: Callable[[], TableClient]
    container_factory: Callable[[], ContainerClient]
    uploads_factory: Callable[[], ContainerClient]
    queue_factory: Callable[[], QueueClient]

    def __post_init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def _get(self, name: str, factory: Callable[[], Any]) -> Any:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = factory()
        return client

    @property
    def table(self) -> TableClient:
        client: TableClient = self._get("table", self.table_factory)
        return client

    @property
    def container(self) -> ContainerClient:
        client: ContainerClient = self._get("container", self.container_factory)
        return client

    @property
    def uploads(self) -> ContainerClient:
        client: ContainerClient = self._get("uploads", self.uploads_factory)
        return client

    @property
    def queue(self) -> QueueClient:
        client: QueueClient = self._get("queue", self.queue_factory)
        return client

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()


def creating(call: Callable[[], Any], create: Callable[[], Any]) -> Any:
    """`call`, creating its container, table or queue when it is missing (Azurite starts empty)."""
    try:
        return call()
    except ResourceNotFoundError as error:
        if getattr(error, "error_code", None) in ("BlobNotFound", "ResourceNotFound", "EntityNotFound"):
            raise
        try:
            create()
        except ResourceExistsError:
            pass
        return call()


class _InputWriter:
    """The accepted list as JSON lines, staged block by block; the work items' boundaries."""

    def __init__(self, container: ContainerClient, name: str, item_size: int) -> None:
        self._blob = container.get_blob_client(name)
        self._create = container.create_container
        self._item_size = item_size
        self._buffer = bytearray()
        self._blocks: list[BlobBlock] = []
        self.size = 0
        self.rows = 0
        self._starts: list[tuple[int, int]] = []

    def add(self, cell: str) -> None:
        if self.rows % self._item_size == 0:
            self._starts.append((self.rows, self.size))
        line = orjson.dumps(cell) + b"\n"
        self._buffer += line
        self.size += len(line)
        self.rows += 1
        if len(self._buffer) >= INPUT_BLOCK_BYTES:
            self._stage()

    def _stage(self) -> None:
        if not self._buffer:
            return
        ident = block_id(len(self._blocks))
        data = bytes(self._buffer)
        creating(lambda: self._blob.stage_block(ident, data), self._create)
        self._blocks.append(BlobBlock(block_id=ident))
        self._buffer.clear()

    def commit(self, job_id: str) -> list[WorkItem]:
        self._stage()
        creating(lambda: self._blob.commit_block_list(self._blocks), self._create)
        items = []
        for index, (first_row, offset) in enumerate(self._starts):
            next_row, next_offset = self._starts[index + 1] if index + 1 < len(self._starts) \
                else (self.rows, self.size)
            items.append(WorkItem(job_id, index, offset, next_offset - offset, first_row, next_row - first_row))
        return items


class JobService:
    def __init__(
        self,
        *,
        settings: JobSettings,
        storage: JobStorage,
        service: Callable[[], OptOutService],
        item_size: Callable[[str, str], int],
        time_budget: Callable[[str], float],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._storage = storage
        self._service = service
        self._item_size = item_size
        self._time_budget = time_budget
        self._clock = clock

    # -- creating ---------------------------------------------------------------------------------

    def create_from_upload(self, action: Operation, sender: str, region: str, reason: str | None,
                           chunks: Iterable[bytes], list_format: str, context: AuditContext) -> Job:
        """Validate every row, store the list and the job, enqueue its plan; 400 for a malformed
        list (nothing stored), 503 when Storage fails (nothing queued)."""
        job = self._new_job(action, sender, region, reason, model.UPLOAD, context)
        reader = NumberListReader(chunks, list_format, max_rows=self.settings.max_rows)
        try:
            items = self._store_input(job.id, reader.cells(), action.value, sender)
            job.total, job.items_total = reader.rows, len(items)
            self._stage_report_header(job.id)
            self._insert_job(job)
            self._send({"v": model.MESSAGE_VERSION, "kind": "plan", "jobId": job.id, "from": 0})
        except AzureError as error:
            _logger.error("job %s not created: storage failed (%s)", job.id, type(error).__name__)
            raise jobs_unavailable() from None
        _logger.info("job %s accepted: %s of %d rows for %s in %d work items", job.id, action.value,
                     job.total, sender, job.items_total)
        return job

    def create_from_blob(self, action: Operation, sender: str, region: str, reason: str | None,
                         blob_reference: str, context: AuditContext) -> Job:
        name = self.uploads_blob_name(blob_reference)
        job = self._new_job(action, sender, region, reason, model.BLOB, context)
        job.input_blob = name
        try:
            self._insert_job(job)
            self._send({"v": model.MESSAGE_VERSION, "kind": "ingest", "jobId": job.id})
        except AzureError as error:
            _logger.error("job %s not created: storage failed (%s)", job.id, type(error).__name__)
            raise jobs_unavailable() from None
        _logger.info("job %s accepted: %s of a blob for %s", job.id, action.value, sender)
        return job

    def uploads_blob_name(self, reference: str) -> str:
        """A blob in the uploads container, by name or by its URL there; 400 for anything else."""
        text = reference.strip()
        prefix = self._storage.uploads.url.rstrip("/") + "/"
        if "://" in text:
            parts, base = urlsplit(text), urlsplit(prefix)
            if parts.query or parts.fragment or parts.scheme.lower() != base.scheme.lower() \
                    or parts.netloc.lower() != base.netloc.lower() or not parts.path.startswith(base.path):
                raise _invalid_blob(f"must be a blob in the gateway's uploads container "
                                    f"({self.settings.uploads_container}) of its own storage account, without a "
                                    f"query string")
            text = unquote(parts.path[len(base.path):])
        if not text or len(text) > MAX_BLOB_NAME or text.startswith("/") or "\\" in text \
                or ".." in text.split("/") or not text.isprintable():
            raise _invalid_blob("must name a blob in the uploads container")
        return text

    def claimed_numbers(self, reference: str, max_numbers: int) -> list[str]:
        """A queued request's claim check (`phoneNumbersBlob`): the numbers of that upload."""
        try:
            name = self.uploads_blob_name(reference)
        except Problem as problem:
            raise validation_problem({"phoneNumbersBlob": problem.errors.get("blobUrl", [problem.detail])},
                                     code=problem.code) from None
        return read_number_blob(self._storage.uploads, name, max_bytes=self.settings.max_body_bytes,
                                max_numbers=max_numbers)

    def _new_job(self, action: Operation, sender: str, region: str, reason: str | None, source: str,
                 context: AuditContext) -> Job:
        caller = {"caller": context.caller, "callerId": context.caller_id, "verified": context.verified,
                  "claimedCaller": context.claimed_caller, "claimedCallerId": context.claimed_caller_id,
                  "traceId": context.trace_id}
        return Job(model.new_job_id(), action.value, sender, region, reason, source, model.QUEUED, self._clock(),
                   caller)

    def _store_input(self, job_id: str, cells: Iterator[str], action: str, sender: str) -> list[WorkItem]:
        # Never more than MAX_WORK_ITEMS items, whatever the provider's size, so the bitmap stays small.
        size = max(self._item_size(sender, action), -(-self.settings.max_rows // model.MAX_WORK_ITEMS))
        writer = _InputWriter(self._storage.container, f"{job_id}/{INPUT_BLOB}", size)
        for cell in cells:
            writer.add(cell)
        items = writer.commit(job_id)
        plan = orjson.dumps([item.to_plan_row() for item in items])
        container = self._storage.container
        creating(lambda: container.upload_blob(f"{job_id}/{PLAN_BLOB}", plan, overwrite=True),
                 container.create_container)
        return items

    def _stage_report_header(self, job_id: str) -> None:
        report = self._storage.container.get_blob_client(f"{job_id}/{REPORT_BLOB}")
        creating(lambda: report.stage_block(_HEADER_BLOCK, model.report_header()),
                 self._storage.container.create_container)

    # -- reading ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        if not model.JOB_ID_PATTERN.fullmatch(job_id):
            raise not_found()
        try:
            job = self._load(job_id)
        except AzureError as error:
            _logger.error("job %s not read: storage failed (%s)", job_id, type(error).__name__)
            raise jobs_unavailable("the job store did not answer; retry later") from None
        if job is None:
            raise not_found()
        return job

    def describe(self, job: Job) -> dict[str, Any]:
        return job.to_dict(self._clock())

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        try:
            for _ in range(COUNT_ATTEMPTS):
                if job.state in (model.COMPLETED, model.FAILED):
                    raise Problem(409, "JobFinished", "Job already finished",
                                  f"the job is {job.state}; only a queued or running job can be cancelled")
                if job.state == model.CANCELLED:
                    return job
                now = self._clock()
                patch: dict[str, Any] = {"State": model.CANCELLED, "CancelledAt": now}
                if job.items_total is not None and job.items_done >= job.items_total:
                    patch["FinishedAt"] = now
                if self._update(job, patch):
                    _logger.info("job %s cancelled", job_id)
                    try:
                        self._finish_if_done(self.get(job_id))
                    except RetryLater:
                        pass  # the work items still running finish it
                    return self.get(job_id)
                job = self.get(job_id)
        except AzureError as error:
            _logger.error("job %s not cancelled: storage failed (%s)", job_id, type(error).__name__)
            raise jobs_unavailable("the job store did not answer; retry later") from None
        raise jobs_unavailable("the job changed too often to be cancelled; retry")

    def report(self, job_id: str) -> bytes:
        job = self._finished_report(job_id)
        blob = self._storage.container.get_blob_client(f"{job.id}/{REPORT_BLOB}")
        try:
            size = blob.get_blob_properties().size
            if size > self.settings.max_streamed_report_bytes:
                raise Problem(413, "ReportTooLarge", "Report too large to stream",
                              f"the report is {size} bytes, more than this gateway streams "
                              f"({self.settings.max_streamed_report_bytes}); ask for ?delivery=sas")
            data: bytes = blob.download_blob().readall()
        except AzureError as error:
            _logger.error("report of job %s not read: storage failed (%s)", job.id, type(error).__name__)
            raise jobs_unavailable("the report could not be read; retry later") from None
        return data

    def report_sas(self, job_id: str) -> dict[str, str]:
        job = self._finished_report(job_id)
        container = self._storage.container
        name = f"{job.id}/{REPORT_BLOB}"
        now = self._clock()
        expiry = now + timedelta(minutes=self.settings.report_sas_minutes)
        credential = container.credential
        try:
            account_key = getattr(credential, "account_key", None)
            if account_key:
                sas = generate_blob_sas(container.account_name or "", container.container_name, name,
                                        account_key=account_key, permission=BlobSasPermissions(read=True),
                                        expiry=expiry, start=now - timedelta(minutes=5))
            elif hasattr(credential, "get_token"):
                account_url = container.url.rsplit("/", 1)[0]
                with BlobServiceClient(account_url, credential=credential) as service:
                    key = service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
                sas = generate_blob_sas(container.account_name or "", container.container_name, name,
                                        user_delegation_key=key, permission=BlobSasPermissions(read=True),
                                        expiry=expiry, start=now - timedelta(minutes=5))
            else:
                raise Problem(501, "SasNotAvailable", "SAS not available",
                              "the gateway reaches Storage with neither a managed identity nor an account key; "
                              "download the report streamed")
        except AzureError as error:
            _logger.error("report SAS of job %s not issued: storage failed (%s)", job.id, type(error).__name__)
            raise jobs_unavailable("the report link could not be issued; retry later") from None
        url = container.get_blob_client(name).url
        return {"url": f"{url}?{sas}", "expiresOn": model.iso(expiry) or ""}

    def _finished_report(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.report_ready:
            return job
        if job.state == model.FAILED:
            raise Problem(409, "NoReport", "No report", "the job failed before any number was processed; "
                                                        "its error says why")
        raise Problem(409, "ReportNotReady", "Report not ready",
                      f"the job is {job.state}; the report is ready once every work item is done", retry_after=5)

    # -- processing -------------------------------------------------------------------------------

    def process(self, body: bytes, dequeue_count: int, max_dequeue_count: int) -> None:
        """One job message; raises `RetryLater` for a redelivery. A message that is not one of
        ours is logged and dropped (never retried)."""
        try:
            message = orjson.loads(body)
            if not isinstance(message, dict) or message.get("v") != model.MESSAGE_VERSION:
                raise ValueError("not a job message of this version")
            kind = message.get("kind")
            job_id = message.get("jobId")
            if not (isinstance(job_id, str) and model.JOB_ID_PATTERN.fullmatch(job_id)):
                raise ValueError("no job id")
        except (orjson.JSONDecodeError, ValueError) as error:
            _logger.error("job message dropped: %s", log_safe(error))
            return
        final = dequeue_count >= max_dequeue_count
        try:
            job = self._load(job_id)
            if job is None:
                _logger.error("job message for job %s dropped: no such job", job_id)
                return
            if kind == "ingest":
                self._ingest(job)
            elif kind == "plan":
                start = message.get("from")
                self._plan(job, start if isinstance(start, int) and start >= 0 else 0)
            elif kind == "item":
                self._item(job, WorkItem.from_message(message), final)
            else:
                _logger.error("job message of kind %s dropped", log_safe(kind))
        except ValueError as error:
            _logger.error("job message for job %s dropped: %s", job_id, log_safe(error))
        except (AzureError, SettingsError) as error:
            _logger.warning("job %s: %s message delivery %d failed (%s)", job_id, log_safe(kind), dequeue_count,
                            type(error).__name__)
            raise RetryLater(f"storage failed ({type(error).__name__})") from None

    def _ingest(self, job: Job) -> None:
        if job.items_total is not None or job.state == model.FAILED:
            self._plan(job, 0)
            return
        name = job.input_blob or ""
        blob = self._storage.uploads.get_blob_client(name)
        try:
            properties = blob.get_blob_properties()
        except ResourceNotFoundError:
            self._fail(job, {"code": "BlobNotFound", "message": "no such blob in the uploads container"})
            return
        if properties.size > self.settings.max_blob_bytes:
            self._fail(job, {"code": "BlobTooLarge", "message": f"the blob is larger than "
                                                               f"{self.settings.max_blob_bytes} bytes"})
            return
        list_format = blob_format(name, properties.content_settings.content_type)
        reader = NumberListReader(blob.download_blob().chunks(), list_format, max_rows=self.settings.max_rows)
        try:
            items = self._store_input(job.id, reader.cells(), job.action, job.sender)
        except Problem as problem:
            error: dict[str, Any] = {"code": problem.code, "message": problem.detail}
            if problem.errors:
                error["errors"] = problem.errors
            self._fail(job, error)
            return
        self._stage_report_header(job.id)
        planned = {"Total": reader.rows, "ItemsTotal": len(items), "InputFormat": list_format}
        for _ in range(COUNT_ATTEMPTS):
            if self._update(job, planned):
                break
            reloaded = self._load(job.id)
            if reloaded is None:
                return
            job = reloaded
        else:
            raise RetryLater("the job changed too often to be planned")
        job = self._load(job.id) or job
        _logger.info("job %s: the blob holds %d rows, %d work items", job.id, reader.rows, len(items))
        self._plan(job, 0)

    def _fail(self, job: Job, error: Mapping[str, Any]) -> None:
        _logger.warning("job %s failed: %s", job.id, log_safe(error.get("code")))
        for _ in range(COUNT_ATTEMPTS):
            state = job.state if job.state == model.CANCELLED else model.FAILED
            if self._update(job, {"State": state, "Error": orjson.dumps(dict(error)).decode(),
                                  "FinishedAt": self._clock()}):
                return
            reloaded = self._load(job.id)
            if reloaded is None:
                return
            job = reloaded

    def _plan(self, job: Job, start: int) -> None:
        if job.items_total is None:
            return
        plan = self._plan_rows(job.id)
        if start == 0 and job.state == model.QUEUED:
            if not self._update(job, {"State": model.RUNNING, "StartedAt": self._clock()}):
                reloaded = self._load(job.id)
                if reloaded is not None and reloaded.state == model.QUEUED:
                    raise RetryLater("the job changed while it was planned")
        end = min(len(plan), start + PLAN_PAGE)
        for index in range(start, end):
            offset, length, first_row, count = plan[index]
            self._send(WorkItem(job.id, index, offset, length, first_row, count).to_message())
        if end < len(plan):
            self._send({"v": model.MESSAGE_VERSION, "kind": "plan", "jobId": job.id, "from": end})

    def _plan_rows(self, job_id: str) -> list[list[int]]:
        data = self._storage.container.download_blob(f"{job_id}/{PLAN_BLOB}").readall()
        rows = orjson.loads(data)
        if not isinstance(rows, list):
            raise ValueError("the plan is not a list")
        return rows

    def _item(self, job: Job, item: WorkItem, final: bool) -> None:
        if job.is_counted(item.index):
            self._finish_if_done(job)
            return
        part_name = f"{job.id}/parts/{item.index:08d}.csv"
        part = self._existing_part(part_name)
        if part is None:
            results = self._results(job, item, final)
            data = model.report_rows(results)
            counts = model.count_statuses(results)
            try:
                self._storage.container.upload_blob(part_name, data, overwrite=False,
                                                    metadata={name: str(n) for name, n in counts.items()})
                part = (data, counts)
            except ResourceExistsError:  # a concurrent delivery wrote it first: its rows count
                part = self._existing_part(part_name)
                if part is None:
                    raise RetryLater("the work item's part vanished") from None
        data, counts = part
        report = self._storage.container.get_blob_client(f"{job.id}/{REPORT_BLOB}")
        report.stage_block(block_id(item.index), data)
        counted = self._count(job, item, counts)
        if counted is not None:
            self._finish_if_done(counted)

    def _existing_part(self, name: str) -> tuple[bytes, dict[str, int]] | None:
        try:
            downloader = self._storage.container.download_blob(name)
        except ResourceNotFoundError:
            return None
        metadata = downloader.properties.metadata or {}
        counts = {status: int(metadata.get(status, "0")) for status in model.STATUSES}
        return downloader.readall(), counts

    def _cells(self, job: Job, item: WorkItem) -> list[str]:
        data = self._storage.container.download_blob(f"{job.id}/{INPUT_BLOB}", offset=item.offset,
                                                     length=item.length).readall()
        cells = [orjson.loads(line) for line in data.splitlines()]
        if len(cells) != item.count or not all(isinstance(cell, str) for cell in cells):
            raise RetryLater(f"work item {item.index} does not match the job's input")
        return cells

    def _results(self, job: Job, item: WorkItem, final: bool) -> list[NumberResult]:
        cells = self._cells(job, item)
        if job.state == model.CANCELLED:
            return [NumberResult(cell, None, "cancelled",
                                 error=NumberError(model.CANCELLED_CODE, model.CANCELLED_MESSAGE)) for cell in cells]
        command = OptOutCommand(Operation(job.action), tuple(cells), job.sender, job.region, job.reason,
                                correlation_id=job.id)
        caller = job.caller
        context = AuditContext("job", str(caller.get("caller") or "function-key"), job.id,
                               caller.get("callerId"), bool(caller.get("verified")), caller.get("claimedCaller"),
                               caller.get("claimedCallerId"), caller.get("traceId"))
        try:
            report = self._service().execute(command, time_budget=self._time_budget(job.sender), audit=context)
        except Problem as problem:
            # 413: the provider's rate is shared by the items running at once; later it fits.
            if (problem.is_transient or problem.status == 413) and not final:
                raise RetryLater(f"{problem.code}: {problem.detail}") from None
            _logger.warning("job %s work item %d failed as a whole (%s)", job.id, item.index, problem.code)
            return _all_failed(cells, job.region, problem.code, problem.detail)
        except SettingsError as error:
            if not final:
                raise RetryLater(str(error)) from None
            return _all_failed(cells, job.region, "GatewayMisconfigured", "the gateway is misconfigured")
        code = report.transient_failure_code
        if code is not None and not final:
            raise RetryLater(f"{code}: {report.summary['failed']} numbers could not be processed")
        return report.results

    def _count(self, job: Job, item: WorkItem, counts: Mapping[str, int]) -> Job | None:
        """Count the work item once: its bit in the job's `Counted` bitmap and its counts, in one
        update under the job's ETag. The job as counted, or None when it was counted before."""
        for attempt in range(COUNT_ATTEMPTS):
            if job.is_counted(item.index):
                return None
            patch: dict[str, Any] = {"ItemsDone": job.items_done + 1, "Counted": job.counted_with(item.index)}
            for status in model.STATUSES:
                patch[_COUNT_PROPERTIES[status]] = job.counts.get(status, 0) + counts.get(status, 0)
            if job.state == model.QUEUED:
                patch["State"] = model.RUNNING
            if job.started_at is None:
                patch["StartedAt"] = self._clock()
            if self._update(job, patch):
                # Read again for the ETag (and whatever other items counted meanwhile).
                return self._load(job.id)
            time.sleep(random.uniform(0, min(0.2, 0.005 * (attempt + 1))))  # nosec B311 - jitter only
            reloaded = self._load(job.id)
            if reloaded is None:
                return None
            job = reloaded
        raise RetryLater("the job's counters changed too often; counting again later")

    def _finish_if_done(self, job: Job) -> None:
        """Commit the report once every work item is counted (again, harmlessly, on a redelivery)."""
        if job.items_total is None or job.items_done < job.items_total or job.report_ready:
            return
        blocks = [BlobBlock(block_id=_HEADER_BLOCK)] + [BlobBlock(block_id=block_id(i))
                                                        for i in range(job.items_total)]
        self._storage.container.get_blob_client(f"{job.id}/{REPORT_BLOB}").commit_block_list(
            blocks, content_settings=_csv_content())
        for _ in range(COUNT_ATTEMPTS):
            state = model.CANCELLED if job.state == model.CANCELLED else model.COMPLETED
            if self._update(job, {"State": state, "ReportReady": True, "FinishedAt": job.finished_at or self._clock()}):
                _logger.info("job %s %s: %s", job.id, state, job.counts)
                return
            reloaded = self._load(job.id)
            if reloaded is None or reloaded.report_ready:
                return
            job = reloaded
        raise RetryLater("the job changed too often to be finished")

    # -- storage ----------------------------------------------------------------------------------

    def _send(self, message: Mapping[str, Any]) -> None:
        queue = self._storage.queue
        text = orjson.dumps(message).decode("ascii")
        creating(lambda: queue.send_message(text, time_to_live=-1), queue.create_queue)

    def _insert_job(self, job: Job) -> None:
        table = self._storage.table
        entity = _entity(job)
        creating(lambda: table.create_entity(entity), table.create_table)

    def _load(self, job_id: str) -> Job | None:
        try:
            entity = self._storage.table.get_entity(job_id, JOB_ROW)
        except ResourceNotFoundError:
            return None
        return _job(entity)

    def _update(self, job: Job, patch: Mapping[str, Any]) -> bool:
        """Merge `patch` into the job if nobody changed it since it was read (False on 412)."""
        try:
            self._storage.table.update_entity({"PartitionKey": job.id, "RowKey": JOB_ROW, **patch},
                                              mode=UpdateMode.MERGE, etag=job.etag,
                                              match_condition=MatchConditions.IfNotModified)
        except AzureError as error:
            if getattr(error, "status_code", None) == 412:
                return False
            raise
        return True

    def close(self) -> None:
        self._storage.close()


_COUNT_PROPERTIES = {"succeeded": "Succeeded", "invalid": "Invalid", "failed": "Failed", "cancelled": "Cancelled"}


def _csv_content() -> ContentSettings:
    return ContentSettings(content_type="text/csv; charset=utf-8")


def _invalid_blob(message: str) -> Problem:
    return validation_problem({"blobUrl": [message]}, code="InvalidBlobUrl")


def _all_failed(cells: list[str], region: str, code: str, message: str) -> list[NumberResult]:
    results = []
    for cell in cells:
        number = normalize(cell, region)
        if isinstance(number, InvalidNumber):
            results.append(NumberResult(cell, None, "invalid", error=NumberError(number.code, number.message)))
        else:
            results.append(NumberResult(cell, number.e164, "failed", error=NumberError(code, message)))
    return results


def _entity(job: Job) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "PartitionKey": job.id, "RowKey": JOB_ROW, "State": job.state, "Action": job.action, "Sender": job.sender,
        "Region": job.region, "Reason": job.reason, "Source": job.source, "CreatedAt": job.created_at,
        "Caller": orjson.dumps(dict(job.caller)).decode(), "Total": job.total, "ItemsTotal": job.items_total,
        "ItemsDone": job.items_done, "ReportReady": job.report_ready, "InputBlob": job.input_blob,
        "InputFormat": job.input_format,
        **{_COUNT_PROPERTIES[s]: job.counts.get(s, 0) for s in model.STATUSES},
    }
    return {name: value for name, value in properties.items() if value is not None}


def _job(entity: Mapping[str, Any]) -> Job:
    def optional_int(name: str) -> int | None:
        value = entity.get(name)
        return int(value) if value is not None else None

    def optional_time(name: str) -> datetime | None:
        value = entity.get(name)
        return value.astimezone(UTC) if isinstance(value, datetime) else None

    error = entity.get("Error")
    metadata = getattr(entity, "metadata", {}) or {}
    created = optional_time("CreatedAt") or datetime(1970, 1, 1, tzinfo=UTC)
    return Job(
        id=str(entity["PartitionKey"]), action=str(entity.get("Action", "")), sender=str(entity.get("Sender", "")),
        region=str(entity.get("Region", "")), reason=entity.get("Reason"), source=str(entity.get("Source", "")),
        state=str(entity.get("State", model.QUEUED)), created_at=created,
        caller=orjson.loads(entity.get("Caller") or "{}"), total=optional_int("Total"),
        counts={s: int(entity.get(_COUNT_PROPERTIES[s]) or 0) for s in model.STATUSES},
        items_total=optional_int("ItemsTotal"), items_done=int(entity.get("ItemsDone") or 0),
        started_at=optional_time("StartedAt"), finished_at=optional_time("FinishedAt"),
        report_ready=bool(entity.get("ReportReady")), error=orjson.loads(error) if error else None,
        counted=bytes(entity.get("Counted") or b""),
        input_blob=entity.get("InputBlob"), input_format=entity.get("InputFormat"), etag=metadata.get("etag"),
    )


def read_number_blob(uploads: ContainerClient, name: str, *, max_bytes: int, max_numbers: int) -> list[str]:
    """The claim check: the numbers of a blob in the uploads container, for a queued request.
    A Problem (the message is rejected) for a missing, oversized or malformed blob; AzureError
    (the message is retried) when Storage fails."""
    blob = uploads.get_blob_client(name)
    try:
        properties = blob.get_blob_properties()
    except ResourceNotFoundError:
        raise validation_problem({"phoneNumbersBlob": ["no such blob in the uploads container"]},
                                 code="BlobNotFound") from None
    if properties.size > max_bytes:
        raise Problem(413, "BlobTooLarge", "Payload too large", f"the blob is larger than {max_bytes} bytes")
    list_format = blob_format(name, properties.content_settings.content_type)
    reader = NumberListReader(blob.download_blob().chunks(), list_format, max_rows=max_numbers)
    try:
        return list(reader.cells())
    except Problem as problem:
        if problem.code == "TooManyRows":
            raise validation_problem({"phoneNumbersBlob": [f"at most {max_numbers} phone numbers per request; "
                                                           "use a job (POST /api/jobs) for more"]},
                                     status=413, code="TooManyPhoneNumbers") from None
        raise
