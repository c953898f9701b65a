"""The indexer: turns journalled operations into per-number history, from the index queue.

At-least-once and idempotent: a message may be delivered twice, or die half-way; every run of
one operation writes the same keys (`optouts.audit.trail.history_keys`) with upserts, so a re-run
neither duplicates nor skips. Entities go in entity-group transactions of up to 100, one
partition (hash bucket) each, several in flight at once.

Two kinds of messages, both carrying only an operation id:
- `outcome`, sent once the outcome blob is written: index it;
- `reconcile`, sent delayed before ACS was called. If the outcome was indexed already, there is
  nothing to do. If no outcome was ever written (the worker died around the ACS call), every
  number of the intent is indexed with the outcome `unknown`; then the outcome blob is read again,
  so an outcome that landed meanwhile is never overwritten by `unknown`.

Once an operation's outcome is in the history, its change events (optouts.audit.events) go to the
configured sinks, and only then is the index marker written: a sink that is down leaves the
message to be delivered again (the history is written with the same keys, nothing duplicated),
and when the history was already written, a later delivery only sends the events. A marker whose
events are `pending` says so; the reconcile message finishes them like an unindexed operation.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from azure.core.exceptions import AzureError

from optouts import telemetry
from optouts.audit.events import change_events
from optouts.audit.sinks import EventPublisher
from optouts.audit.trail import (
    FORMAT_VERSION,
    INDEX_BLOB,
    MAX_BATCH_ENTITIES,
    OPERATION_ID_PATTERN,
    AuditStorage,
    OperationIntent,
    OperationOutcome,
    blob_name,
    describe_error,
    history_records,
    index_message,
    load_intent,
    load_json,
    load_outcome,
)
from optouts.config import SettingsError

_logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENCY = 8
#: An index message holds an operation id and a kind: a few dozen bytes.
MAX_MESSAGE_BYTES = 1024
_KINDS = frozenset({"outcome", "reconcile"})


@dataclass(frozen=True, slots=True)
class IndexMessage:
    operation_id: str
    kind: str


def parse_index_message(body: bytes) -> IndexMessage | None:
    """The message, or None when it is not one this gateway sends (logged and dropped: a
    garbage message can never index anything, and retrying it would only poison the queue)."""
    if len(body) > MAX_MESSAGE_BYTES:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    operation_id, kind = value.get("operationId"), value.get("kind")
    if not (isinstance(operation_id, str) and OPERATION_ID_PATTERN.fullmatch(operation_id) and kind in _KINDS):
        return None
    return IndexMessage(operation_id, kind)


class AuditIndexer:
    """`events` gives the change-event publisher when it is first needed (None: no events); a
    broken events setting then holds back the events, never the history."""

    def __init__(self, storage: AuditStorage, *, reconcile_delay: float,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
                 events: Callable[[], EventPublisher | None] | None = None) -> None:
        self._storage = storage
        self._reconcile_delay = reconcile_delay
        self._events = events or (lambda: None)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="audit-index")

    def process(self, body: bytes, *, dequeue_count: int = 1, max_dequeue_count: int = 5) -> str:
        """Index the operation a message names; returns what was done. Raises on a storage failure
        so that the host delivers the message again; on the last allowed delivery, a fresh delayed
        message takes over instead, so that indexing is never abandoned to the poison queue while
        storage still accepts a message."""
        message = parse_index_message(body)
        if message is None:
            _logger.warning("audit index: a message that is not an index message was dropped (%d bytes)", len(body))
            return "ignored"
        try:
            return self.index(message)
        except (AzureError, SettingsError, OSError, ValueError, KeyError, TypeError) as error:
            if dequeue_count < max_dequeue_count:
                raise
            _logger.warning("audit index: operation %s failed on delivery %d (%s); retried in %g s",
                            message.operation_id, dequeue_count, describe_error(error), self._reconcile_delay)
            self._storage.send(index_message(message.operation_id, "reconcile"), delay_seconds=self._reconcile_delay)
            return "deferred"

    def index(self, message: IndexMessage) -> str:
        intent = load_intent(self._storage, message.operation_id)
        if intent is None:
            # Refused before it was accepted: the intent write failed after the reconcile was sent.
            return "no-intent"
        outcome = load_outcome(self._storage, intent)
        if outcome is None:
            self._write(intent, None)
            outcome = load_outcome(self._storage, intent)  # landed while the unknowns were written?
            if outcome is None:
                _logger.warning("audit index: operation %s has no outcome; its %d numbers are recorded as unknown",
                                intent.operation_id, len(intent.numbers))
                return "unknown"
        else:
            marker = load_json(self._storage, blob_name(intent.operation_id, INDEX_BLOB))
            if marker is not None and marker.get("outcome") == "recorded":
                if marker.get("events") != "pending":
                    # Markers written before change events have no "events": nothing is owed for them.
                    return "already-indexed"
                self._emit(intent, outcome)  # the history holds the outcome; only the events are owed
                return "events-sent"
        self._write(intent, outcome)
        return "indexed"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _write(self, intent: OperationIntent, outcome: OperationOutcome | None) -> None:
        batches = list(_batches(e.to_entity() for e in history_records(intent, outcome)))
        # list() waits for every batch and raises the first failure; the others may have landed,
        # which a redelivery overwrites with the same entities.
        list(self._pool.map(self._storage.upsert_batch, batches))
        if outcome is not None:
            telemetry.record_audit_lag((datetime.now(UTC) - intent.accepted_at).total_seconds(), "indexed")
            self._emit(intent, outcome)
        else:
            self._mark(intent, "unknown", "none", 0)

    def _emit(self, intent: OperationIntent, outcome: OperationOutcome) -> None:
        """The operation's change events, then the marker that says the operation is done. On a
        failure the marker says the events are pending, and the failure is raised."""
        events = change_events(intent, outcome)
        try:
            publisher = self._events() if events else None
            if publisher is not None and publisher.enabled:
                publisher.publish(intent.operation_id, events)
            else:
                events = []
        except (AzureError, SettingsError, OSError, ValueError) as error:
            if isinstance(error, SettingsError):
                _logger.warning("change events: operation %s waits for a setting (%s)", intent.operation_id, error)
            self._mark(intent, "recorded", "pending", 0)
            raise
        self._mark(intent, "recorded", "sent" if events else "none", len(events))

    def _mark(self, intent: OperationIntent, outcome: str, events: str, sent: int) -> None:
        marker = {
            "version": FORMAT_VERSION, "operationId": intent.operation_id,
            "outcome": outcome, "indexedNumbers": len(intent.numbers),
            "indexedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            # "sent": every change event went to every sink; "pending": they are owed; "none": no
            # effective change, or no sink.
            "events": events, "eventCount": sent,
        }
        self._storage.put_blob(blob_name(intent.operation_id, INDEX_BLOB), orjson.dumps(marker), overwrite=True)


def _batches(entities: Iterator[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entity in entities:
        by_partition[entity["PartitionKey"]].append(entity)
    for group in by_partition.values():
        for start in range(0, len(group), MAX_BATCH_ENTITIES):
            yield group[start:start + MAX_BATCH_ENTITIES]
