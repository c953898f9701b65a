"""The audit trail: who changed which number's opt-out state, when, and why.

ACS keeps no history of its opt-out list. Every add and remove that reaches ACS (and every
check when OPTOUT_AUDIT_CHECKS=true) appends one record per distinct number to Azure Table
Storage; `GET /api/optouts/{phoneNumber}/history` reads them back, newest first.

Keys (docs/audit.md): PartitionKey = SHA-256 of `{sender}|{E.164}`, so one number's history is
a single-partition query and no phone number appears in a request URL (HTTP libraries log
those); RowKey = inverted UTC ticks + a uuid, so newest sorts first and two instances writing
the same number in the same tick never collide.

Writing must never hold the caller's answer hostage: records are written in parallel on a
small per-process pool and the caller waits at most `time_budget` seconds; what was not
confirmed by then is counted as failed, logged with masked numbers, and reported in the
answer (`"audit": {"recorded": n, "failed": m}`). No transactions: a transaction is limited
to one partition, and one operation writes each (sender, number) partition exactly once.

azure-data-tables is imported on first use only: indexing the app does not need it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from optouts.azure.storage import (
    connection_string,
    identity_credential,
    service_url,
    transport_options,
)
from optouts.config import SettingsError

# Part of this module's interface too (the history API's page sizes).
from optouts.domain.limits import DEFAULT_PAGE_SIZE as DEFAULT_PAGE_SIZE
from optouts.domain.limits import MAX_PAGE_SIZE as MAX_PAGE_SIZE
from optouts.domain.phone import mask

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from optouts.domain.commands import OptOutCommand
    from optouts.domain.reports import OperationReport

_logger = logging.getLogger(__name__)

#: The longest the caller's answer waits for its audit records.
DEFAULT_TIME_BUDGET_SECONDS = 10.0
#: Table calls in flight at once, per process (shared by all operations).
DEFAULT_MAX_CONCURRENCY = 8
#: Principal names come from a header: kept, but not without limit.
MAX_CALLER_LENGTH = 256
#: A continuation token is the last RowKey of the previous page.
_ROW_KEY_PATTERN = re.compile(r"[0-9]{19}_[0-9a-f]{32}")
#: HTTP callers authenticated only by a function key: the host does not say which key.
FUNCTION_KEY_CALLER = "function-key"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"

# .NET DateTime ticks (100 ns since 0001-01-01): the convention Table Storage tools read.
_MAX_TICKS = 3_155_378_975_999_999_999
_TICKS_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_MASKED_IN_LOGS = 5


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who asked and through which door; the same for every number of one operation."""

    channel: str  # http | queue
    caller: str
    correlation_id: str
    caller_id: str | None = None


def http_context(headers: Mapping[str, str], trace_id: str) -> AuditContext:
    """The Entra principal App Service authentication vouches for, else "function-key".

    App Service authentication strips these headers from incoming requests and sets them itself;
    without it in front of the app, a caller holding a function key could write any name here."""
    name = _header_text(headers.get(PRINCIPAL_NAME_HEADER))
    principal_id = _header_text(headers.get(PRINCIPAL_ID_HEADER))
    return AuditContext("http", name or principal_id or FUNCTION_KEY_CALLER, trace_id, principal_id)


def queue_context(queue_name: str, correlation_id: str) -> AuditContext:
    return AuditContext("queue", queue_name, correlation_id)


def _header_text(value: str | None) -> str | None:
    text = (value or "").strip()[:MAX_CALLER_LENGTH]
    return text or None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    occurred_at: datetime
    action: str
    sender: str
    phone_number: str
    outcome: str  # succeeded | failed | invalid (refused by ACS)
    upstream_status: int | None
    error_code: str | None
    opted_out: bool | None
    caller: str
    caller_id: str | None
    channel: str
    correlation_id: str
    reason: str | None

    @property
    def partition_key(self) -> str:
        return partition_key(self.sender, self.phone_number)

    def to_entity(self) -> dict[str, Any]:
        properties = {
            "PartitionKey": self.partition_key,
            "RowKey": row_key(self.occurred_at),
            "OccurredAt": self.occurred_at,
            "Action": self.action,
            "Sender": self.sender,
            "PhoneNumber": self.phone_number,
            "Outcome": self.outcome,
            "UpstreamStatus": self.upstream_status,
            "ErrorCode": self.error_code,
            "OptedOut": self.opted_out,
            "Caller": self.caller,
            "CallerId": self.caller_id,
            "Channel": self.channel,
            "CorrelationId": self.correlation_id,
            "Reason": self.reason,
        }
        # An absent property, not a null one: Table Storage has no null.
        return {name: value for name, value in properties.items() if value is not None}

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> AuditRecord:
        occurred_at = entity.get("OccurredAt")
        if not isinstance(occurred_at, datetime):
            occurred_at = _TICKS_EPOCH
        upstream = entity.get("UpstreamStatus")
        return cls(
            occurred_at=occurred_at.astimezone(UTC),
            action=str(entity.get("Action", "")),
            sender=str(entity.get("Sender", "")),
            phone_number=str(entity.get("PhoneNumber", "")),
            outcome=str(entity.get("Outcome", "")),
            upstream_status=int(upstream) if upstream is not None else None,
            error_code=entity.get("ErrorCode"),
            opted_out=entity.get("OptedOut"),
            caller=str(entity.get("Caller", "")),
            caller_id=entity.get("CallerId"),
            channel=str(entity.get("Channel", "")),
            correlation_id=str(entity.get("CorrelationId", "")),
            reason=entity.get("Reason"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's shape: every field present, null when not known, so flows see one shape."""
        return {
            "occurredAt": self.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "action": self.action,
            "sender": self.sender,
            "phoneNumber": self.phone_number,
            "outcome": self.outcome,
            "upstreamStatus": self.upstream_status,
            "errorCode": self.error_code,
            "optedOut": self.opted_out,
            "caller": self.caller,
            "callerId": self.caller_id,
            "channel": self.channel,
            "correlationId": self.correlation_id,
            "reason": self.reason,
        }


def partition_key(sender: str, phone_number: str) -> str:
    """Hashed: a query's filter travels in the URL, which HTTP libraries and proxies log; and
    key characters Table Storage forbids (/ \\ # ?) cannot appear in whatever a sender id holds."""
    return hashlib.sha256(f"{sender}|{phone_number}".encode()).hexdigest()


def row_key(occurred_at: datetime) -> str:
    """Inverted ticks sort the newest record first; the uuid keeps concurrent writers apart."""
    ticks = (occurred_at - _TICKS_EPOCH) // _ONE_MICROSECOND * 10
    return f"{_MAX_TICKS - ticks:019d}_{uuid.uuid4().hex}"


def records_for(command: OptOutCommand, report: OperationReport, context: AuditContext,
                occurred_at: datetime | None = None) -> list[AuditRecord]:
    """One record per distinct number sent to ACS (the client sends each once); numbers
    that never reached ACS (unparseable) have no E.164 and are left out."""
    when = occurred_at or datetime.now(UTC)
    seen: set[str] = set()
    records: list[AuditRecord] = []
    for result in report.results:
        if result.phone_number is None or result.phone_number in seen:
            continue
        seen.add(result.phone_number)
        records.append(AuditRecord(
            occurred_at=when,
            action=report.action.value,
            sender=report.sender,
            phone_number=result.phone_number,
            outcome=result.status,
            upstream_status=result.upstream_status,
            error_code=result.error.code if result.error else None,
            opted_out=result.opted_out,
            caller=context.caller,
            caller_id=context.caller_id,
            channel=context.channel,
            correlation_id=context.correlation_id,
            reason=command.reason,
        ))
    return records


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    recorded: int
    failed: int

    def to_dict(self) -> dict[str, int]:
        return {"recorded": self.recorded, "failed": self.failed}


@dataclass(frozen=True, slots=True)
class HistoryPage:
    records: list[AuditRecord]
    continuation_token: str | None


class InvalidContinuationToken(ValueError):
    pass


class AuditTrail:
    """Appends audit records and reads them back. One per process (see optouts.runtime)."""

    def __init__(
        self,
        table: Callable[[], TableClient],
        *,
        include_checks: bool = False,
        time_budget: float = DEFAULT_TIME_BUDGET_SECONDS,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._table_factory = table
        self._table: TableClient | None = None
        self._table_lock = threading.Lock()
        self._include_checks = include_checks
        self._time_budget = time_budget
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="audit")
        self._counts_lock = threading.Lock()
        #: Running totals for this process; failures are also logged one operation at a time.
        self.recorded_total = 0
        self.failed_total = 0

    def audits(self, action: str) -> bool:
        return action != "check" or self._include_checks

    def record(self, records: Sequence[AuditRecord]) -> AuditOutcome:
        """Write the records; never raises and never waits longer than the time budget."""
        if not records:
            return AuditOutcome(0, 0)
        futures: list[Future[None]] = [self._pool.submit(self._write, record) for record in records]
        done, _ = wait(futures, timeout=self._time_budget)
        errors: list[tuple[AuditRecord, BaseException]] = []
        for record, future in zip(records, futures, strict=True):
            if future not in done:
                # Still queued: dropped. Already running: its outcome is unknown, so not confirmed.
                future.cancel()
                errors.append((record, TimeoutError(f"time budget of {self._time_budget:g} s exceeded")))
            elif (error := future.exception()) is not None:
                errors.append((record, error))
        outcome = AuditOutcome(len(records) - len(errors), len(errors))
        with self._counts_lock:
            self.recorded_total += outcome.recorded
            self.failed_total += outcome.failed
        if errors:
            self._log_failures(records[0], errors, outcome)
        return outcome

    def history(self, sender: str, phone_number: str, *, top: int = DEFAULT_PAGE_SIZE,
                continuation_token: str | None = None) -> HistoryPage:
        """One page of a number's records, newest first. Storage errors propagate.

        Paged by RowKey rather than by the service's continuation headers: one more entity than
        asked tells whether another page exists, so the last page never links to an empty one."""
        from azure.core.exceptions import ResourceNotFoundError

        if continuation_token is not None and not _ROW_KEY_PATTERN.fullmatch(continuation_token):
            raise InvalidContinuationToken("the continuation token is not one this API issued")
        query = "PartitionKey eq @key" + (" and RowKey gt @after" if continuation_token else "")
        parameters = {"key": partition_key(sender, phone_number), "after": continuation_token or ""}
        entities = self._table_client().query_entities(query, parameters=parameters, results_per_page=top + 1)
        try:
            found = list(islice(entities, top + 1))
        except ResourceNotFoundError:  # nothing was ever audited: no table yet
            return HistoryPage([], None)
        page = found[:top]
        following = str(page[-1]["RowKey"]) if len(found) > top else None
        return HistoryPage([AuditRecord.from_entity(entity) for entity in page], following)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        table, self._table = self._table, None
        if table is not None:
            table.close()

    # -- writing ---------------------------------------------------------------------------

    def _write(self, record: AuditRecord) -> None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        table = self._table_client()
        entity = record.to_entity()
        try:
            table.create_entity(entity)
        except ResourceExistsError:
            # The row key is unique to this record: a retried call found its own first write.
            return
        except ResourceNotFoundError:
            # Azurite starts empty and a table can be deleted; in Azure the infrastructure creates it.
            self._create_table(table)
            table.create_entity(entity)

    def _table_client(self) -> TableClient:
        if self._table is None:
            with self._table_lock:
                if self._table is None:
                    # Not cached when it fails: a fixed setting is picked up by the next call.
                    self._table = self._table_factory()
        return self._table

    @staticmethod
    def _create_table(table: TableClient) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            table.create_table()
        except ResourceExistsError:
            pass

    def _log_failures(self, first: AuditRecord, errors: list[tuple[AuditRecord, BaseException]],
                      outcome: AuditOutcome) -> None:
        examples = [mask(record.phone_number) for record, _ in errors[:_MASKED_IN_LOGS]]
        _logger.warning(
            "audit trail: %d of %d records of a %s (%s %s) not written (%s), e.g. %s; %d failed since start",
            outcome.failed, outcome.recorded + outcome.failed, first.action, first.channel,
            first.correlation_id, describe_error(errors[0][1]), examples, self.failed_total,
        )


def describe_error(error: BaseException) -> str:
    """What went wrong without the SDK's message text, which may carry URLs, keys or numbers."""
    if isinstance(error, SettingsError):
        return str(error)  # names the setting, never its value
    if isinstance(error, TimeoutError):
        return str(error)
    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None)
    details = " ".join(str(part) for part in (status and f"HTTP {status}", code) if part)
    return f"{type(error).__name__} {details}".strip()


# -- the table -----------------------------------------------------------------------------


def table_client(table_name: str, *, timeout: float = DEFAULT_TIME_BUDGET_SECONDS,
                 connection: str = "AzureWebJobsStorage") -> TableClient:
    """A client for the audit table in the app's storage account (same setting shapes as the
    queue trigger). Few retries and short timeouts: the caller's time budget is the real limit."""
    from azure.data.tables import TableClient

    options = transport_options({
        "retry_total": 2,
        "retry_backoff_factor": 0.2,
        "connection_timeout": min(timeout, 5.0),
        "read_timeout": timeout,
    })
    conn_str = connection_string(connection)
    if conn_str is not None:
        return TableClient.from_connection_string(conn_str, table_name, **options)
    return TableClient(service_url(connection, "table"), table_name, credential=identity_credential(connection),
                       **options)
