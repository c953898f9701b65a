"""The audit trail: a write-ahead journal of operations, and the per-number history built from it.

Every audited operation is journalled in a bounded number of writes, whatever its size
(docs/audit.md has the formats and the guarantee):

1. before ACS is called: a delayed *reconcile* message on the index queue, then the operation's
   *intent* as one blob, `{operationId}/intent.json` (who, when, what: every number asked).
   If either write fails the change is refused (503 `AuditUnavailable`): fail closed;
2. once ACS answered: the *outcome* as one blob, `{operationId}/outcome.json`, then an *index*
   message with no delay;
3. the indexer (`optouts.audit.index`) turns the blobs into one history entity per number, in
   Table entity-group transactions. A worker that died before step 2 leaves the reconcile message:
   the indexer then records what was asked with the outcome `unknown`, and an outcome written
   later replaces those entities (same keys).

History keys: PartitionKey = one of `HISTORY_BUCKETS` buckets of the number's hash, so batches of
up to 100 entities share a partition; RowKey = `{hash}_{inverted ticks of the accepted time}_{operation
id}`, so one number's history is a single-partition range query, newest first, and re-indexing an
operation writes exactly the same keys. The hash (SHA-256 of `{sender}|{E.164}`) keeps phone numbers
out of request URLs, which HTTP libraries and proxies log.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import orjson
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError, ServiceResponseError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from optouts.audit.callers import AuditContext, keyword_context
from optouts.azure.storage import (
    blob_container_client,
    connection_string,
    identity_credential,
    queue_client,
    service_url,
    transport_options,
)
from optouts.config import STORAGE_CONNECTION, SettingsError
from optouts.domain.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, OPERATION_ID_REGEX  # noqa: F401 - part of this module's interface
from optouts.domain.problems import Problem

_logger = logging.getLogger(__name__)

#: Fixed for the life of a table: readers find a number's partition from it.
HISTORY_BUCKETS = 16
#: Table Storage's limit on one entity-group transaction.
MAX_BATCH_ENTITIES = 100
#: Storage calls an operation waits on: bounded, so a hanging account fails in seconds.
STORAGE_TIMEOUT_SECONDS = 10.0
AUDIT_RETRY_AFTER_SECONDS = 30
BATCH_ATTEMPTS = 3
#: The journal's format version, in every blob and message.
FORMAT_VERSION = 1

INTENT_BLOB = "intent.json"
OUTCOME_BLOB = "outcome.json"
INDEX_BLOB = "index.json"

OPERATION_ID_PATTERN = re.compile(OPERATION_ID_REGEX)
#: A continuation token is the part of the last RowKey after the number's hash.
_CONTINUATION_PATTERN = re.compile(r"[0-9]{19}_[0-9a-f]{32}")
_HASH_LENGTH = 64

# .NET DateTime ticks (100 ns since 0001-01-01): the convention Table Storage tools read.
_MAX_TICKS = 3_155_378_975_999_999_999
_TICKS_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)

OUTCOMES = ("succeeded", "invalid", "failed", "unknown")


# -- keys ------------------------------------------------------------------------------------------


def number_hash(sender: str, phone_number: str) -> str:
    return hashlib.sha256(f"{sender}|{phone_number}".encode()).hexdigest()


def partition_for(hashed: str) -> str:
    return f"{int(hashed[:8], 16) % HISTORY_BUCKETS:02d}"


def inverted_ticks(instant: datetime) -> str:
    ticks = (instant - _TICKS_EPOCH) // _ONE_MICROSECOND * 10
    return f"{_MAX_TICKS - ticks:019d}"


def history_keys(sender: str, phone_number: str, accepted_at: datetime, operation_id: str) -> tuple[str, str]:
    hashed = number_hash(sender, phone_number)
    return partition_for(hashed), f"{hashed}_{inverted_ticks(accepted_at)}_{operation_id}"


def new_operation_id() -> str:
    return uuid.uuid4().hex


def end_user_operation_id(message_id: str) -> str:
    """The operation id of an end user's change: derived from the SMS's message id, so that the
    same message, however often it is delivered, is one operation."""
    return hashlib.sha256(f"end-user-sms|{message_id}".encode()).hexdigest()[:32]


def blob_name(operation_id: str, part: str) -> str:
    return f"{operation_id}/{part}"


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError("not a timestamp")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# -- the journal's records ------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationIntent:
    """What was asked, persisted before ACS is called."""

    operation_id: str
    accepted_at: datetime
    action: str
    sender: str
    #: Every distinct number sent to ACS, in E.164, in the order asked.
    numbers: tuple[str, ...]
    context: AuditContext
    reason: str | None
    #: Inputs that were not phone numbers: never sent to ACS, so not in the history.
    invalid_inputs: int = 0
    #: Who keeps the sender's list: "acs" or "aws" (None in records written before providers).
    provider: str | None = None

    def to_json(self) -> dict[str, Any]:
        c = self.context
        return {
            "version": FORMAT_VERSION, "operationId": self.operation_id, "acceptedAt": _iso(self.accepted_at),
            "action": self.action, "sender": self.sender, "channel": c.channel, "caller": c.caller,
            "callerId": c.caller_id, "callerVerified": c.verified, "claimedCaller": c.claimed_caller,
            "claimedCallerId": c.claimed_caller_id, "correlationId": c.correlation_id, "traceId": c.trace_id,
            "reason": self.reason, "invalidInputs": self.invalid_inputs, "numbers": list(self.numbers),
            "provider": self.provider, "endUser": c.end_user,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OperationIntent:
        context = AuditContext(
            channel=str(data["channel"]), caller=str(data["caller"]), correlation_id=str(data["correlationId"]),
            caller_id=data.get("callerId"), verified=bool(data.get("callerVerified")),
            claimed_caller=data.get("claimedCaller"), claimed_caller_id=data.get("claimedCallerId"),
            trace_id=data.get("traceId"), end_user=data.get("endUser") is True,
        )
        numbers = data["numbers"]
        if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
            raise ValueError("numbers must be a list of strings")
        return cls(str(data["operationId"]), _parse_time(data["acceptedAt"]), str(data["action"]),
                   str(data["sender"]), tuple(numbers), context, data.get("reason"),
                   int(data.get("invalidInputs") or 0), _optional_text(data.get("provider")))


@dataclass(frozen=True, slots=True)
class NumberOutcome:
    status: str  # succeeded | invalid | failed | unknown
    upstream_status: int | None = None
    error_code: str | None = None
    opted_out: bool | None = None
    #: The provider's own facts about the number (AWS: optedOutTimestamp, endUserOptedOut...).
    details: Mapping[str, Any] | None = None


UNKNOWN = NumberOutcome("unknown")


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _details(value: Any) -> dict[str, Any] | None:
    """Provider facts as stored (a JSON object, or its text in a table entity); None otherwise."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return dict(value) if isinstance(value, dict) and value else None


@dataclass(frozen=True)
class OperationOutcome:
    """What ACS answered, one entry per number of the intent, in the intent's order."""

    completed_at: datetime
    outcomes: tuple[NumberOutcome, ...]
    #: Set when ACS answered for no number at all (the whole operation failed).
    error_code: str | None = None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def to_json(self, operation_id: str) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION, "operationId": operation_id, "completedAt": _iso(self.completed_at),
            "errorCode": self.error_code, "counts": self.counts(),
            # Compact: [status, upstream status, error code, opted out, provider details], aligned with
            # the intent's numbers (journals written before providers have four items).
            "outcomes": [[o.status, o.upstream_status, o.error_code, o.opted_out, o.details] for o in self.outcomes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], expected: int) -> OperationOutcome:
        rows = data["outcomes"]
        if not isinstance(rows, list) or len(rows) != expected:
            raise ValueError("the outcome does not match the intent's numbers")
        outcomes = []
        for row in rows:
            if not isinstance(row, list) or len(row) not in (4, 5):
                raise ValueError("an outcome row has four or five items")
            status, upstream, error_code, opted_out = row[:4]
            outcomes.append(NumberOutcome(str(status) if status in OUTCOMES else "unknown",
                                          int(upstream) if upstream is not None else None,
                                          error_code, opted_out, _details(row[4]) if len(row) == 5 else None))
        return cls(_parse_time(data["completedAt"]), tuple(outcomes), data.get("errorCode"))


@dataclass(frozen=True, slots=True)
class EndUserChange:
    """A change the end user made themselves, by texting a keyword to the sender: ACS made it
    before the gateway heard of it, so it is recorded as done (outcome `succeeded`)."""

    #: ACS's id of the SMS: the operation's identity (see `end_user_operation_id`).
    message_id: str
    #: When ACS received the SMS: the operation's time in the history.
    received_at: datetime
    action: str  # add (opted out) | remove (opted back in)
    #: The gateway's number the end user texted (the event's `to`).
    sender: str
    #: The end user (the event's `from`), in E.164.
    phone_number: str
    #: The keyword, canonically spelled (optouts.domain.keywords).
    keyword: str
    provider: str = "acs"


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """The answer's `audit` object."""

    status: str  # accepted | disabled
    operation_id: str | None = None
    accepted_at: datetime | None = None
    outcome_recorded: bool = False
    disabled_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.status == "disabled":
            return {"status": "disabled", "reason": self.disabled_reason}
        assert self.accepted_at is not None  # nosec B101 - accepted receipts always carry it
        return {"status": "accepted", "operationId": self.operation_id,
                "acceptedAt": _iso(self.accepted_at), "outcomeRecorded": self.outcome_recorded}


# -- history records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    occurred_at: datetime  # when the gateway accepted the operation: the order of the history
    operation_id: str
    action: str
    sender: str
    phone_number: str
    outcome: str
    upstream_status: int | None
    error_code: str | None
    opted_out: bool | None
    caller: str
    caller_id: str | None
    caller_verified: bool
    claimed_caller: str | None
    claimed_caller_id: str | None
    channel: str
    correlation_id: str
    trace_id: str | None
    reason: str | None
    provider: str | None = None
    details: Mapping[str, Any] | None = None
    end_user: bool = False

    def to_entity(self) -> dict[str, Any]:
        partition, row = history_keys(self.sender, self.phone_number, self.occurred_at, self.operation_id)
        properties = {
            "PartitionKey": partition, "RowKey": row, "OccurredAt": self.occurred_at,
            "OperationId": self.operation_id, "Action": self.action, "Sender": self.sender,
            "PhoneNumber": self.phone_number, "Outcome": self.outcome, "UpstreamStatus": self.upstream_status,
            "ErrorCode": self.error_code, "OptedOut": self.opted_out, "Caller": self.caller,
            "CallerId": self.caller_id, "CallerVerified": self.caller_verified,
            "ClaimedCaller": self.claimed_caller, "ClaimedCallerId": self.claimed_caller_id,
            "Channel": self.channel, "CorrelationId": self.correlation_id, "TraceId": self.trace_id,
            "Reason": self.reason, "Provider": self.provider,
            "Details": orjson.dumps(dict(self.details)).decode() if self.details else None,
            # Only when true: records of callers' operations keep the shape they always had.
            "EndUser": True if self.end_user else None,
        }
        # An absent property, not a null one: Table Storage has no null.
        return {name: value for name, value in properties.items() if value is not None}

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> HistoryRecord:
        occurred_at = entity.get("OccurredAt")
        if not isinstance(occurred_at, datetime):
            occurred_at = _TICKS_EPOCH
        upstream = entity.get("UpstreamStatus")
        return cls(
            occurred_at=occurred_at.astimezone(UTC),
            operation_id=str(entity.get("OperationId", "")),
            action=str(entity.get("Action", "")),
            sender=str(entity.get("Sender", "")),
            phone_number=str(entity.get("PhoneNumber", "")),
            outcome=str(entity.get("Outcome", "unknown")),
            upstream_status=int(upstream) if upstream is not None else None,
            error_code=entity.get("ErrorCode"),
            opted_out=entity.get("OptedOut"),
            caller=str(entity.get("Caller", "")),
            caller_id=entity.get("CallerId"),
            caller_verified=bool(entity.get("CallerVerified", False)),
            claimed_caller=entity.get("ClaimedCaller"),
            claimed_caller_id=entity.get("ClaimedCallerId"),
            channel=str(entity.get("Channel", "")),
            correlation_id=str(entity.get("CorrelationId", "")),
            trace_id=entity.get("TraceId"),
            reason=entity.get("Reason"),
            provider=_optional_text(entity.get("Provider")),
            details=_details(entity.get("Details")),
            end_user=entity.get("EndUser") is True,
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's shape: every field present, null when not known, so flows see one shape."""
        return {
            "occurredAt": self.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "operationId": self.operation_id,
            "action": self.action,
            "sender": self.sender,
            "phoneNumber": self.phone_number,
            "outcome": self.outcome,
            "upstreamStatus": self.upstream_status,
            "errorCode": self.error_code,
            "optedOut": self.opted_out,
            "caller": self.caller,
            "callerId": self.caller_id,
            "callerVerified": self.caller_verified,
            "claimedCaller": self.claimed_caller,
            "claimedCallerId": self.claimed_caller_id,
            "channel": self.channel,
            "correlationId": self.correlation_id,
            "traceId": self.trace_id,
            "reason": self.reason,
            "provider": self.provider,
            "details": dict(self.details) if self.details else None,
            "endUser": self.end_user,
        }


def history_records(intent: OperationIntent, outcome: OperationOutcome | None) -> list[HistoryRecord]:
    """One record per number of the intent; `unknown` for each when no outcome was written."""
    outcomes: Sequence[NumberOutcome] = outcome.outcomes if outcome else (UNKNOWN,) * len(intent.numbers)
    c = intent.context
    return [
        HistoryRecord(intent.accepted_at, intent.operation_id, intent.action, intent.sender, number,
                      result.status, result.upstream_status, result.error_code, result.opted_out, c.caller,
                      c.caller_id, c.verified, c.claimed_caller, c.claimed_caller_id, c.channel, c.correlation_id,
                      c.trace_id, intent.reason, intent.provider, result.details, c.end_user)
        # Not strict: a stored outcome comes from a blob, and a short one must not fail the indexer.
        for number, result in zip(intent.numbers, outcomes, strict=False)
    ]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    records: list[HistoryRecord]
    continuation_token: str | None


class InvalidContinuationToken(ValueError):
    pass


class AuditUnavailable(Exception):
    """The journal could not be written or read; never carries the SDK's text."""


def audit_unavailable_problem(detail: str) -> Problem:
    return Problem(503, "AuditUnavailable", "Audit trail unavailable", detail, retry_after=AUDIT_RETRY_AFTER_SECONDS)


# -- storage -----------------------------------------------------------------------------------------


@dataclass
class AuditStorage:
    """The trail's Storage clients, built on first use. In Azure the container, table and queue are
    provisioned (infra/); Azurite starts empty, so a call that finds one missing creates it once."""

    container: Callable[[], ContainerClient]
    table: Callable[[], TableClient]
    queue: Callable[[], QueueClient]
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, name: str) -> Any:
        client = self._clients.get(name)
        if client is None:
            with self._lock:
                client = self._clients.get(name)
                if client is None:
                    # Not cached when it fails: a fixed setting is picked up by the next call.
                    client = self._clients[name] = getattr(self, name)()
        return client

    def put_blob(self, name: str, data: bytes, *, overwrite: bool) -> None:
        container: ContainerClient = self._client("container")
        self._creating(lambda: container.upload_blob(name, data, overwrite=overwrite), container.create_container)

    def get_blob(self, name: str) -> bytes | None:
        container: ContainerClient = self._client("container")
        try:
            return container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None

    def send(self, message: Mapping[str, Any], *, delay_seconds: float = 0) -> None:
        queue: QueueClient = self._client("queue")
        text = orjson.dumps(message).decode("ascii")
        # Never expiring (time_to_live=-1): a message the indexer has not seen yet must not vanish after
        # the default 7 days, whatever happened to the app meanwhile.
        self._creating(lambda: queue.send_message(text, visibility_timeout=int(delay_seconds) or None,
                                                  time_to_live=-1),
                       queue.create_queue)

    def upsert_batch(self, entities: Sequence[Mapping[str, Any]]) -> None:
        """One entity-group transaction: up to 100 entities of one partition, all or none."""
        table: TableClient = self._client("table")
        operations = [("upsert", entity, {"mode": UpdateMode.REPLACE}) for entity in entities]
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                self._creating(lambda: table.submit_transaction(operations), table.create_table)
                return
            except ServiceResponseError:
                # azure-core does not retry a POST whose answer was lost (a reused connection the
                # server had closed); a batch of upserts is idempotent, so it is sent again.
                if attempt == BATCH_ATTEMPTS:
                    raise

    def query(self, query: str, parameters: Mapping[str, str], limit: int) -> list[dict[str, Any]]:
        table: TableClient = self._client("table")
        entities = table.query_entities(query, parameters=dict(parameters), results_per_page=limit)
        try:
            return [dict(entity) for entity in islice(entities, limit)]
        except ResourceNotFoundError:  # nothing was ever indexed: no table yet
            return []

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    @staticmethod
    def _creating(call: Callable[[], Any], create: Callable[[], Any]) -> Any:
        try:
            return call()
        except (ResourceNotFoundError, TableTransactionError) as error:
            if isinstance(error, TableTransactionError) and getattr(error, "status_code", None) != 404:
                raise
            try:
                create()
            except ResourceExistsError:
                pass
            return call()


def table_client(table_name: str, *, timeout: float = STORAGE_TIMEOUT_SECONDS,
                 connection: str = STORAGE_CONNECTION) -> TableClient:
    """A client for the history table in the app's storage account (the queue trigger's setting
    shapes). Few retries and short timeouts: a caller waits on some of these calls."""
    options = transport_options(_bounded_options(timeout))
    conn_str = connection_string(connection)
    if conn_str is not None:
        return TableClient.from_connection_string(conn_str, table_name, **options)
    return TableClient(service_url(connection, "table"), table_name, credential=identity_credential(connection),
                       **options)


def _bounded_options(timeout: float) -> dict[str, Any]:
    return {"retry_total": 2, "retry_backoff_factor": 0.2, "connection_timeout": min(timeout, 5.0),
            "read_timeout": timeout}


def bounded_queue_client(queue: str, *, connection: str = STORAGE_CONNECTION,
                         timeout: float = STORAGE_TIMEOUT_SECONDS) -> QueueClient:
    """A queue in the app's storage account with the trail's few retries and short timeouts
    (the change events' queue: optouts.audit.sinks)."""
    client: QueueClient = queue_client(queue, connection, **_bounded_storage_options(timeout))
    return client
#: The blob and queue clients retry on Storage's own policy (`ExponentialRetry`), which reads neither
#: `retry_backoff_factor` nor `retry_backoff_max`: its defaults pause 15 s + 3^n s (± 3 s) before each
#: retry, so a storage account that is down held every change about 40 s before its 503. These pause
#: 1.2 s (± 0.2 s) before each retry.
STORAGE_RETRY_PAUSES: dict[str, float] = {"initial_backoff": 0.2, "increment_base": 1, "random_jitter_range": 0.2}


def _bounded_storage_options(timeout: float) -> dict[str, Any]:
    return {**_bounded_options(timeout), **STORAGE_RETRY_PAUSES}


def storage_for(*, container: str, table: str, queue: str, connection: str = STORAGE_CONNECTION,
                timeout: float = STORAGE_TIMEOUT_SECONDS) -> AuditStorage:
    return AuditStorage(
        container=lambda: blob_container_client(container, connection, **_bounded_storage_options(timeout)),
        table=lambda: table_client(table, timeout=timeout, connection=connection),
        queue=lambda: queue_client(queue, connection, **_bounded_storage_options(timeout)),
    )


# -- the trail ---------------------------------------------------------------------------------------


def index_message(operation_id: str, kind: str) -> dict[str, Any]:
    """`kind`: `outcome` (sent once the outcome is written) or `reconcile` (sent delayed, before ACS)."""
    return {"version": FORMAT_VERSION, "operationId": operation_id, "kind": kind}


class AuditTrail:
    """Journals operations and reads the history back. One per process (see optouts.runtime).

    `storage` is None when the trail is disabled (`disabled_reason` says why): decided once,
    from the settings, so no operation tries and fails number by number."""

    def __init__(
        self,
        storage: AuditStorage | None,
        *,
        include_checks: bool = False,
        reconcile_delay: float = 300.0,
        disabled_reason: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._include_checks = include_checks
        self._reconcile_delay = reconcile_delay
        self.disabled_reason = disabled_reason or (None if storage is not None else "no storage configured")
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    def audits(self, action: str) -> bool:
        return action != "check" or self._include_checks

    # -- writing -----------------------------------------------------------------------------------

    def begin(self, action: str, sender: str, numbers: Iterable[str], context: AuditContext,
              reason: str | None, invalid_inputs: int = 0, provider: str | None = None) -> OperationIntent | None:
        """Journal the intent before ACS is called; None when the trail is disabled.

        Raises `Problem` 503 `AuditUnavailable` when it cannot: the change must not be made."""
        if not self.enabled or self._storage is None:
            return None
        intent = OperationIntent(new_operation_id(), self._clock(), action, sender, tuple(dict.fromkeys(numbers)),
                                 context, reason, invalid_inputs, provider)
        try:
            # The reconcile message first: an intent never exists without one. A reconcile that finds
            # no intent (the intent write failed, the change was refused) has nothing to do.
            self._storage.send(index_message(intent.operation_id, "reconcile"), delay_seconds=self._reconcile_delay)
            try:
                self._storage.put_blob(blob_name(intent.operation_id, INTENT_BLOB), orjson.dumps(intent.to_json()),
                                       overwrite=False)
            except ResourceExistsError:
                # The name holds a fresh uuid4: only this call's own earlier attempt can have written it (the
                # SDK retried an upload whose answer was lost), so the intent is durable.
                pass
        except (AzureError, SettingsError, OSError, ValueError) as error:
            _logger.error("audit trail: the intent of a %s (%s %s) could not be written (%s); change refused",
                          action, context.channel, intent.operation_id, describe_error(error))
            raise audit_unavailable_problem(
                "the audit trail could not record the operation, so the change was not made; retry later"
            ) from None
        return intent

    def finish(self, intent: OperationIntent | None, outcomes: Mapping[str, NumberOutcome]) -> AuditReceipt:
        """Journal what ACS answered (`outcomes` by E.164) and have it indexed. Never raises:
        the change is made; if the outcome cannot be written, the reconcile message records
        the intent's numbers as `unknown`."""
        if intent is None:
            return AuditReceipt("disabled", disabled_reason=self.disabled_reason)
        outcome = OperationOutcome(self._clock(), tuple(outcomes.get(n, UNKNOWN) for n in intent.numbers))
        return self._write_outcome(intent, outcome)

    def fail(self, intent: OperationIntent | None, error_code: str) -> None:
        """ACS answered for no number (the operation failed as a whole): recorded as such."""
        if intent is None:
            return
        failed = NumberOutcome("failed", error_code=error_code)
        self._write_outcome(intent, OperationOutcome(self._clock(), (failed,) * len(intent.numbers), error_code))

    def record_end_user_change(self, change: EndUserChange) -> AuditReceipt:
        """Journal a change the end user already made (a keyword ACS acted on by itself) and have it
        indexed: intent, outcome and index message, all written before this returns.

        Idempotent: the operation id comes from the SMS's message id, so a redelivered event writes
        the same blobs (the intent is never overwritten) and the same history keys; a delivery that
        died half-way is completed by the next one. Raises `AuditUnavailable` when storage fails, so
        that the event is delivered again rather than acknowledged unrecorded."""
        if not self.enabled or self._storage is None:
            return AuditReceipt("disabled", disabled_reason=self.disabled_reason)
        storage = self._storage
        intent = OperationIntent(end_user_operation_id(change.message_id), change.received_at, change.action,
                                 change.sender, (change.phone_number,), keyword_context(change.message_id),
                                 None, provider=change.provider)
        outcome = OperationOutcome(change.received_at, (NumberOutcome(
            "succeeded", opted_out=change.action == "add",
            details={"keyword": change.keyword, "messageId": change.message_id,
                     "receivedTimestamp": _iso(change.received_at)}),))
        try:
            try:
                storage.put_blob(blob_name(intent.operation_id, INTENT_BLOB), orjson.dumps(intent.to_json()),
                                 overwrite=False)
            except ResourceExistsError:
                # Delivered before: the first delivery's intent stands. Once it is indexed there is nothing
                # left to do (and nothing is indexed twice); else the rest is redone.
                marker = load_json(storage, blob_name(intent.operation_id, INDEX_BLOB))
                if marker is not None and marker.get("outcome") == "recorded":
                    return AuditReceipt("accepted", intent.operation_id, intent.accepted_at, outcome_recorded=True)
            # Its time is the SMS's, not this delivery's: every delivery writes the same outcome.
            storage.put_blob(blob_name(intent.operation_id, OUTCOME_BLOB),
                             orjson.dumps(outcome.to_json(intent.operation_id)), overwrite=True)
            storage.send(index_message(intent.operation_id, "outcome"))
        except (AzureError, SettingsError, OSError, ValueError) as error:
            _logger.error("audit trail: the end-user %s of operation %s could not be recorded (%s); the event "
                          "is to be delivered again", change.action, intent.operation_id, describe_error(error))
            raise AuditUnavailable(intent.operation_id) from None
        return AuditReceipt("accepted", intent.operation_id, intent.accepted_at, outcome_recorded=True)

    def _write_outcome(self, intent: OperationIntent, outcome: OperationOutcome) -> AuditReceipt:
        assert self._storage is not None  # nosec B101 - an intent exists only with storage
        receipt = AuditReceipt("accepted", intent.operation_id, intent.accepted_at, outcome_recorded=False)
        try:
            self._storage.put_blob(blob_name(intent.operation_id, OUTCOME_BLOB),
                                   orjson.dumps(outcome.to_json(intent.operation_id)), overwrite=True)
        except (AzureError, SettingsError, OSError, ValueError) as error:
            _logger.warning("audit trail: the outcome of operation %s could not be written (%s); its numbers "
                            "will be recorded with the outcome unknown", intent.operation_id, describe_error(error))
            return receipt
        try:
            self._storage.send(index_message(intent.operation_id, "outcome"))
        except (AzureError, SettingsError, OSError, ValueError) as error:
            _logger.warning("audit trail: operation %s will be indexed by its reconcile message (%s)",
                            intent.operation_id, describe_error(error))
        return AuditReceipt("accepted", intent.operation_id, intent.accepted_at, outcome_recorded=True)

    # -- reading -----------------------------------------------------------------------------------

    def history(self, sender: str, phone_number: str, *, top: int = DEFAULT_PAGE_SIZE,
                continuation_token: str | None = None) -> HistoryPage:
        """One page of a number's records, newest first. Storage errors propagate.

        Paged by RowKey rather than by the service's continuation headers: one more entity than
        asked tells whether another page exists, so the last page never links to an empty one."""
        if continuation_token is not None and not _CONTINUATION_PATTERN.fullmatch(continuation_token):
            raise InvalidContinuationToken("the continuation token is not one this API issued")
        storage = self._readable_storage()
        hashed = number_hash(sender, phone_number)
        # Every RowKey of this number starts with "{hash}_"; "`" is the character after "_".
        query = "PartitionKey eq @partition and RowKey gt @after and RowKey lt @end"
        parameters = {"partition": partition_for(hashed), "after": f"{hashed}_{continuation_token or ''}",
                      "end": f"{hashed}`"}
        found = storage.query(query, parameters, top + 1)
        page = found[:top]
        following = str(page[-1]["RowKey"])[_HASH_LENGTH + 1:] if len(found) > top else None
        return HistoryPage([HistoryRecord.from_entity(entity) for entity in page], following)

    def operation(self, operation_id: str) -> dict[str, Any] | None:
        """The operation's record as `GET /api/operations/{id}` shows it; None when no such
        operation was accepted. Storage errors propagate."""
        storage = self._readable_storage()
        intent = load_intent(storage, operation_id)
        if intent is None:
            return None
        outcome = load_outcome(storage, intent)
        index = load_json(storage, blob_name(operation_id, INDEX_BLOB))
        c = intent.context
        counts = outcome.counts() if outcome else {**dict.fromkeys(OUTCOMES, 0), "unknown": len(intent.numbers)}
        indexed_outcome = index.get("outcome") if index else None
        return {
            "operationId": intent.operation_id,
            "acceptedAt": _iso(intent.accepted_at),
            "completedAt": _iso(outcome.completed_at) if outcome else None,
            "action": intent.action,
            "sender": intent.sender,
            "channel": c.channel,
            "caller": c.caller,
            "callerId": c.caller_id,
            "callerVerified": c.verified,
            "claimedCaller": c.claimed_caller,
            "claimedCallerId": c.claimed_caller_id,
            "correlationId": c.correlation_id,
            "traceId": c.trace_id,
            "endUser": c.end_user,
            "reason": intent.reason,
            "provider": intent.provider,
            "numbers": len(intent.numbers),
            "invalidInputs": intent.invalid_inputs,
            "outcome": "recorded" if outcome else "unknown",
            "errorCode": outcome.error_code if outcome else None,
            "counts": counts,
            "indexing": {
                # "indexed": every number's history holds this operation's outcome; "indexedUnknown":
                # it holds what was asked, outcome unknown; "pending": not yet indexed.
                "state": ("indexed" if indexed_outcome == "recorded" and outcome
                          else "indexedUnknown" if indexed_outcome is not None else "pending"),
                "indexedNumbers": int(index.get("indexedNumbers", 0)) if index else 0,
                "indexedAt": index.get("indexedAt") if index else None,
            },
        }

    def _readable_storage(self) -> AuditStorage:
        if self._storage is None:
            raise Problem(503, "AuditDisabled", "Audit trail disabled",
                          f"the audit trail is disabled: {self.disabled_reason}", retry_after=60)
        return self._storage

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()


def load_json(storage: AuditStorage, name: str) -> dict[str, Any] | None:
    data = storage.get_blob(name)
    if data is None:
        return None
    value = orjson.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not a JSON object")
    return value


def load_intent(storage: AuditStorage, operation_id: str) -> OperationIntent | None:
    data = load_json(storage, blob_name(operation_id, INTENT_BLOB))
    return OperationIntent.from_json(data) if data is not None else None


def load_outcome(storage: AuditStorage, intent: OperationIntent) -> OperationOutcome | None:
    data = load_json(storage, blob_name(intent.operation_id, OUTCOME_BLOB))
    return OperationOutcome.from_json(data, len(intent.numbers)) if data is not None else None


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
