"""Jobs: an action on a list of numbers of any size, carried out in work items (docs/jobs.md).

The job's state and counters, its JSON, the work items' messages and the report's rows. No
storage here: optouts/usecases/jobs.py keeps them in Table Storage and blobs.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optouts.domain.reports import NumberResult

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)
FINAL_STATES = frozenset({COMPLETED, FAILED, CANCELLED})

#: Report statuses, each counted in the job's `counts`.
STATUSES = ("succeeded", "invalid", "failed", "cancelled")
REPORT_COLUMNS = ("input", "e164", "status", "code", "message", "optedOut")
CANCELLED_CODE = "JobCancelled"
CANCELLED_MESSAGE = "the job was cancelled before this number was processed"

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
#: Most work items of one job: its `Counted` bitmap stays far below a Table property's 64 KiB.
MAX_WORK_ITEMS = 100_000
#: The version of every job message; a message of another version is dropped, logged.
MESSAGE_VERSION = 1

UPLOAD = "upload"
BLOB = "blob"


def new_job_id() -> str:
    return uuid.uuid4().hex


def iso(instant: datetime | None) -> str | None:
    if instant is None:
        return None
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    """A job as stored; `etag` is the entity's, for optimistic concurrency."""

    id: str
    action: str
    sender: str
    region: str
    reason: str | None
    source: str
    state: str
    created_at: datetime
    #: Who asked, as the audit trail records it (AuditContext fields), kept for the work items.
    caller: Mapping[str, Any]
    total: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    items_total: int | None = None
    items_done: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    report_ready: bool = False
    error: Mapping[str, Any] | None = None
    #: The referenced blob (`blobUrl`), by name in the uploads container, and its format.
    input_blob: str | None = None
    input_format: str | None = None
    #: A bit per work item, set once the item is counted (Table Storage keeps it as Edm.Binary).
    counted: bytes = b""
    etag: str | None = None

    def is_counted(self, index: int) -> bool:
        byte = index // 8
        return byte < len(self.counted) and bool(self.counted[byte] & (1 << (index % 8)))

    def counted_with(self, index: int) -> bytes:
        bits = bytearray(self.counted)
        if len(bits) <= index // 8:
            bits.extend(b"\0" * (index // 8 + 1 - len(bits)))
        bits[index // 8] |= 1 << (index % 8)
        return bytes(bits)

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self, now: datetime) -> dict[str, Any]:
        rate = self._rate(now)
        remaining = None if self.total is None else max(0, self.total - self.processed)
        eta = None
        if rate and remaining is not None and not self.is_final:
            eta = round(remaining / rate, 1)
        percent = None
        if self.total is not None:
            percent = 100.0 if self.total == 0 else round(100.0 * self.processed / self.total, 1)
        base = f"/api/jobs/{self.id}"
        return {
            "id": self.id, "action": self.action, "sender": self.sender, "region": self.region,
            "reason": self.reason, "source": self.source, "state": self.state, "total": self.total,
            "processed": self.processed, "counts": dict(self.counts), "percentDone": percent,
            "ratePerSecond": rate, "etaSeconds": eta,
            "workItems": {"total": self.items_total, "done": self.items_done},
            "createdAt": iso(self.created_at), "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at), "reportReady": self.report_ready,
            "error": dict(self.error) if self.error else None,
            "links": {"self": base, "report": f"{base}/report"},
        }

    def _rate(self, now: datetime) -> float | None:
        if self.started_at is None:
            return None
        until = self.finished_at or now
        seconds = (until - self.started_at).total_seconds()
        if seconds <= 0:
            return None
        return round(self.processed / seconds, 1)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A range of the job's stored input: `count` rows from row `first_row` (0-based), at
    `offset`/`length` bytes of the input blob. Messages carry ranges, never numbers."""

    job_id: str
    index: int
    offset: int
    length: int
    first_row: int
    count: int

    def to_message(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "kind": "item", "jobId": self.job_id, "index": self.index,
                "offset": self.offset, "length": self.length, "firstRow": self.first_row, "count": self.count}

    def to_plan_row(self) -> list[int]:
        return [self.offset, self.length, self.first_row, self.count]

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> WorkItem:
        values = [message.get(name) for name in ("index", "offset", "length", "firstRow", "count")]
        numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
        if len(numbers) != len(values):
            raise ValueError("a work item's index, offset, length, firstRow and count are whole numbers")
        job_id = message.get("jobId")
        if not (isinstance(job_id, str) and JOB_ID_PATTERN.fullmatch(job_id)):
            raise ValueError("a work item names its job by id")
        index, offset, length, first_row, count = numbers
        return cls(job_id, index, offset, length, first_row, count)


# -- the report -----------------------------------------------------------------------------------

#: What a spreadsheet runs as a formula when a cell starts with it (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """The cell as written: a `'` before text a spreadsheet would run as a formula. E.164
    numbers and other `+digits`/`-digits` are left as they are."""
    if not text:
        return text
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    if text[0] in "+-" and not (len(text) > 1 and (text[1].isdigit() or text[1] == " ")):
        return "'" + text
    return text


def report_header() -> bytes:
    return _csv_bytes([list(REPORT_COLUMNS)])


def report_rows(results: Iterable[NumberResult]) -> bytes:
    rows = []
    for result in results:
        error = result.error
        rows.append([
            safe_cell(result.input), result.phone_number or "", result.status,
            safe_cell(error.code) if error else "", safe_cell(error.message) if error else "",
            "" if result.opted_out is None else ("true" if result.opted_out else "false"),
        ])
    return _csv_bytes(rows)


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def count_statuses(results: Iterable[NumberResult]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
