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
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from azure.core.exceptions import AzureError

from optouts import telemetry
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
    def __init__(self, storage: AuditStorage, *, reconcile_delay: float,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY) -> None:
        self._storage = storage
        self._reconcile_delay = reconcile_delay
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
        except (AzureError, OSError, ValueError, KeyError, TypeError) as error:
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
        elif message.kind == "reconcile" and self._already_indexed(intent):
            return "already-indexed"
        self._write(intent, outcome)
        return "indexed"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _already_indexed(self, intent: OperationIntent) -> bool:
        marker = load_json(self._storage, blob_name(intent.operation_id, INDEX_BLOB))
        return marker is not None and marker.get("outcome") == "recorded"

    def _write(self, intent: OperationIntent, outcome: OperationOutcome | None) -> None:
        batches = list(_batches(e.to_entity() for e in history_records(intent, outcome)))
        # list() waits for every batch and raises the first failure; the others may have landed,
        # which a redelivery overwrites with the same entities.
        list(self._pool.map(self._storage.upsert_batch, batches))
        marker = {
            "version": FORMAT_VERSION, "operationId": intent.operation_id,
            "outcome": "recorded" if outcome else "unknown", "indexedNumbers": len(intent.numbers),
            "indexedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        self._storage.put_blob(blob_name(intent.operation_id, INDEX_BLOB), orjson.dumps(marker), overwrite=True)
        if outcome is not None:
            telemetry.record_audit_lag((datetime.now(UTC) - intent.accepted_at).total_seconds(), "indexed")


def _batches(entities: Iterator[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entity in entities:
        by_partition[entity["PartitionKey"]].append(entity)
    for group in by_partition.values():
        for start in range(0, len(group), MAX_BATCH_ENTITIES):
            yield group[start:start + MAX_BATCH_ENTITIES]
