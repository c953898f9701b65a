"""Opt-out requests that arrive as queue messages, and the results published for them.

Every message ends in exactly one terminal state, announced on the results queue:

- `completed`: processed; per-number results as the HTTP API gives them;
- `rejected`: the message itself is invalid; never retried;
- `failed`: the provider stayed unavailable through every delivery; the message goes to the
  poison queue untouched (the host moves it there when the last attempt raises).

Transient failures are retried by redelivery: `process` raises `RetryLater` and the
host makes the message visible again after host.json's `visibilityTimeout`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from optouts.audit.trail import queue_context
from optouts.config import DEFAULT_REQUESTS_QUEUE, Settings, SettingsError
from optouts.domain.commands import OptOutCommand, decode_json, parse_command
from optouts.domain.problems import Problem
from optouts.domain.reports import OperationReport
from optouts.usecases.service import OptOutService

_logger = logging.getLogger(__name__)

#: Storage queue messages hold 64 KiB; results larger than this go to a blob.
MAX_RESULT_MESSAGE_BYTES = 60_000


class RetryLater(Exception):
    """The message could not be finished now; the host should deliver it again."""

    def __init__(self, reason: str, *, final: bool) -> None:
        super().__init__(reason)
        #: True on the last allowed delivery: a `failed` result is already published
        #: and the host is about to move the message to the poison queue.
        self.final = final


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: str
    body: bytes
    dequeue_count: int


class ResultPublisher:
    """Sends result messages as plain JSON text; oversized ones point to a blob instead."""

    def __init__(self, queue_client: Any, container_client: Any | None) -> None:
        self._queue = queue_client
        self._container = container_client
        self._prepared = False
        self._lock = threading.Lock()

    def publish(self, result: dict[str, Any]) -> None:
        self._prepare()
        text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode("utf-8")) > MAX_RESULT_MESSAGE_BYTES:
            text = self._offload(result, text)
        self._queue.send_message(text)

    def _offload(self, result: dict[str, Any], text: str) -> str:
        if self._container is None:
            raise RuntimeError("result too large for a queue message and no results container is configured")
        name = f"{result['correlationId']}/{result['messageId']}.json"
        self._container.upload_blob(name, text.encode("utf-8"), overwrite=True)
        pointer = {key: value for key, value in result.items() if key != "results"}
        pointer["resultsBlob"] = {"container": self._container.container_name, "name": name}
        return json.dumps(pointer, ensure_ascii=False, separators=(",", ":"))

    def _prepare(self) -> None:
        """Create the queue and container on first use (Azurite starts empty; in Azure they exist)."""
        if self._prepared:
            return
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if self._prepared:
                return
            for create in (self._queue.create_queue, getattr(self._container, "create_container", None)):
                if create is None:
                    continue
                try:
                    create()
                except ResourceExistsError:
                    pass
            self._prepared = True


class QueuedRequestProcessor:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        service: Callable[[], OptOutService],
        publisher: ResultPublisher,
        max_dequeue_count: int,
        time_budget: float,
        requests_queue: str = DEFAULT_REQUESTS_QUEUE,
    ) -> None:
        self._settings = settings
        self._service = service
        self._publisher = publisher
        self._requests_queue = requests_queue  # the audit trail's "caller" for queued requests
        self._max_dequeue_count = max_dequeue_count
        self._time_budget = time_budget

    def process(self, message: QueuedMessage) -> str:
        """Carry out one message; returns the terminal state published, or raises `RetryLater`."""
        payload: Any = None
        try:
            settings = self._settings()
            payload = decode_message(message.body, max_bytes=settings.max_body_bytes)
            command = parse_command(payload, settings)
        except Problem as problem:
            self._publisher.publish(_rejected(message, payload, problem))
            _logger.warning("queue message %s rejected: %s", message.id, problem.code)
            return "rejected"
        except SettingsError as error:
            return self._retry_or_fail(message, None, "GatewayMisconfigured", str(error))

        try:
            audit = queue_context(self._requests_queue, command.correlation_id or message.id)
            report = self._service().execute(command, time_budget=self._time_budget, audit=audit)
        except Problem as problem:
            return self._retry_or_fail(message, command, problem.code, problem.detail)
        except SettingsError as error:
            return self._retry_or_fail(message, command, "GatewayMisconfigured", str(error))
        transient_code = report.transient_failure_code
        if transient_code is not None:
            return self._retry_or_fail(
                message, command, transient_code,
                f"{report.summary['failed']} numbers could not be processed", report,
            )
        self._publisher.publish(_completed(message, command, report))
        return "completed"

    def _retry_or_fail(
        self,
        message: QueuedMessage,
        command: OptOutCommand | None,
        code: str,
        detail: str,
        report: OperationReport | None = None,
    ) -> str:
        final = message.dequeue_count >= self._max_dequeue_count
        if final:
            self._publisher.publish(_failed(message, command, code, detail, report))
        _logger.warning("queue message %s attempt %d of %d failed (%s)%s", message.id, message.dequeue_count,
                        self._max_dequeue_count, code, "; giving up" if final else "; will be redelivered")
        raise RetryLater(f"{code}: {detail}", final=final)


def decode_message(body: bytes, *, max_bytes: int) -> Any:
    """JSON text as the Azure Queues connector posts it, or base64-encoded JSON as older SDKs send it."""
    try:
        return decode_json(body, max_bytes=max_bytes)
    except Problem as not_json:
        if not_json.status != 400:
            raise
        try:
            decoded = base64.b64decode(body.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise not_json from None
        try:
            return decode_json(decoded, max_bytes=max_bytes)
        except Problem:
            raise not_json from None


def _header(message: QueuedMessage, correlation_id: str | None, status: str) -> dict[str, Any]:
    return {
        "correlationId": correlation_id or message.id,
        "messageId": message.id,
        "status": status,
        "completedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _completed(message: QueuedMessage, command: OptOutCommand, report: OperationReport) -> dict[str, Any]:
    result = _header(message, command.correlation_id, "completed")
    result.update(report.to_dict())
    return result


def _rejected(message: QueuedMessage, payload: Any, problem: Problem) -> dict[str, Any]:
    correlation_id = payload.get("correlationId") if isinstance(payload, dict) else None
    known = correlation_id if isinstance(correlation_id, str) and correlation_id else None
    result = _header(message, known, "rejected")
    action = payload.get("action") if isinstance(payload, dict) else None
    if isinstance(action, str):
        result["action"] = action[:16]
    error: dict[str, Any] = {"status": problem.status, "code": problem.code, "message": problem.detail}
    if problem.errors:
        error["errors"] = problem.errors
    result["error"] = error
    return result


def _failed(
    message: QueuedMessage, command: OptOutCommand | None, code: str, detail: str, report: OperationReport | None
) -> dict[str, Any]:
    result = _header(message, command.correlation_id if command else None, "failed")
    if command is not None:
        result.update({"action": command.action.value, "sender": command.sender})
    result["attempts"] = message.dequeue_count
    result["error"] = {"code": code, "message": detail}
    if report is not None:
        result.update({"results": [r.to_dict() for r in report.results], "summary": report.summary})
        if report.audit is not None:
            result["audit"] = report.audit.to_dict()
    return result
