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
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError

from optouts import telemetry
from optouts.audit.callers import queue_context
from optouts.config import DEFAULT_REQUESTS_QUEUE, Settings, SettingsError
from optouts.domain.commands import OptOutCommand, decode_json, is_valid_identifier, parse_command
from optouts.domain.logtext import log_safe
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem, validation_problem
from optouts.domain.reports import OperationReport
from optouts.usecases.service import OptOutService

_logger = logging.getLogger(__name__)

#: Storage queue messages hold 64 KiB; results larger than this go to a blob.
MAX_RESULT_MESSAGE_BYTES = 60_000
#: Storage queue messages are at most 64 KiB; a larger body is not decoded twice for its trace.
MAX_TRACED_MESSAGE_BYTES = 65_536


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
    """Sends result messages as plain JSON text; oversized ones point to a blob instead.

    Whatever happens to the result as first written (too large with no container, the blob
    upload refused, the queue refusing the text), one result message still goes out: the
    same outcome without the per-number details, and an `error` saying why they are missing.
    Only a results queue that cannot be reached at all raises (the message is then retried).
    """

    def __init__(self, queue_client: Any, container_client: Any | None) -> None:
        self._queue = queue_client
        self._container = container_client
        self._prepared = False
        self._lock = threading.Lock()

    def publish(self, result: dict[str, Any]) -> None:
        self._prepare()
        text = _encode(result)
        if len(text) > MAX_RESULT_MESSAGE_BYTES:
            text = self._offload(result, text)
        try:
            self._queue.send_message(text)
        except HttpResponseError as error:
            if not (error.status_code and 400 <= error.status_code < 500):
                raise
            _logger.error("results queue refused the result of message %s (HTTP %s); sending it without details",
                          log_safe(result.get("messageId")), error.status_code)
            self._queue.send_message(_encode(_undeliverable(result, "the results queue refused the full result")))

    def _offload(self, result: dict[str, Any], text: str) -> str:
        if self._container is None:
            return _encode(_undeliverable(result, "too large for a queue message and no results container is set"))
        name = results_blob_name(result.get("messageId"))
        try:
            self._container.upload_blob(name, text.encode("ascii"), overwrite=True)
        except AzureError as error:
            _logger.error("results blob of message %s not written (%s); sending the result without details",
                          log_safe(result.get("messageId")), type(error).__name__)
            return _encode(_undeliverable(result, "too large for a queue message and the results blob could not "
                                                  "be written"))
        pointer = {key: value for key, value in result.items() if key != "results"}
        pointer["resultsBlob"] = {"container": self._container.container_name, "name": name}
        encoded = _encode(pointer)
        if len(encoded) > MAX_RESULT_MESSAGE_BYTES:  # a rejection's list of errors is the bulk
            encoded = _encode({**_undeliverable(result, "the full result is in the results blob"),
                               "resultsBlob": pointer["resultsBlob"]})
        return encoded

    def _prepare(self) -> None:
        """Create the queue and container on first use (Azurite starts empty; in Azure they exist)."""
        if self._prepared:
            return
        with self._lock:
            if self._prepared:
                return
            try:
                self._queue.create_queue()
            except ResourceExistsError:
                pass
            if self._container is not None:
                try:
                    self._container.create_container()
                except ResourceExistsError:
                    pass
                except AzureError as error:  # results still go out, without their blobs
                    _logger.error("results container unavailable (%s)", type(error).__name__)
            self._prepared = True


def results_blob_name(message_id: object) -> str:
    """`{yyyy-mm-dd}/{messageId}.json`: only ids the gateway or the queue service made. A
    message id that is not a plain id (the host gives GUIDs) is replaced by a random one."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    if not (isinstance(message_id, str) and _MESSAGE_ID.fullmatch(message_id)):
        message_id = str(uuid.uuid4())
    return f"{day}/{message_id}.json"


def _encode(result: dict[str, Any]) -> str:
    # ASCII only: every control character and non-ASCII letter is a JSON escape, so the text is
    # valid in the queue's XML body, its length is its size, and a lone surrogate cannot break it.
    return json.dumps(result, ensure_ascii=True, separators=(",", ":"))


def _undeliverable(result: dict[str, Any], detail: str) -> dict[str, Any]:
    """The same outcome, without what made it too large to deliver."""
    kept = {key: value for key, value in result.items() if key not in _BULKY_FIELDS}
    error = result.get("error")
    if isinstance(error, dict):
        kept["error"] = {key: value for key, value in error.items() if key != "errors"}
        kept["error"]["detailsNotDelivered"] = detail
    else:
        kept["error"] = {"code": "ResultsNotDelivered", "message": detail}
    if len(_encode(kept)) > MAX_RESULT_MESSAGE_BYTES:
        essential = ("correlationId", "messageId", "status", "completedAt", "traceparent", "error")
        kept = {key: kept[key] for key in essential if key in kept}
    return kept


_BULKY_FIELDS = frozenset({"results", "resultsBlob"})
#: Storage queue message ids are GUIDs; anything else never names a blob.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


class QueuedRequestProcessor:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        service: Callable[[], OptOutService],
        publisher: ResultPublisher,
        max_dequeue_count: int,
        time_budget: float | Callable[[str], float],
        requests_queue: str = DEFAULT_REQUESTS_QUEUE,
        claim_check: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self._settings = settings
        self._service = service
        self._publisher = publisher
        self._requests_queue = requests_queue  # the audit trail's "caller" for queued requests
        self._max_dequeue_count = max_dequeue_count
        self._time_budget = time_budget
        #: (a `phoneNumbersBlob` reference, the most numbers allowed) -> the blob's numbers.
        self._claim_check = claim_check

    def process(self, message: QueuedMessage) -> str:
        """Carry out one message; returns the terminal state published, or raises `RetryLater`.

        Traced as a CONSUMER span, the child of the message's `traceparent` when it has one;
        the result message carries the span's own `traceparent`, so one trace runs from the
        enqueuer to whoever reads the result."""
        with telemetry.queue_message_span(self._requests_queue, message.id, message.dequeue_count,
                                          _traceparent_of(message.body)):
            try:
                outcome = self._process(message)
            except RetryLater as retry:
                telemetry.record_queue_outcome(self._requests_queue, "failed" if retry.final else "retried")
                raise
            telemetry.record_queue_outcome(self._requests_queue, outcome)
            return outcome

    def _process(self, message: QueuedMessage) -> str:
        payload: Any = None
        try:
            settings = self._settings()
            payload = decode_message(message.body, max_bytes=settings.max_body_bytes)
            command = parse_command(self._claimed(payload, settings), settings)
        except Problem as problem:
            self._publisher.publish(_rejected(message, payload, problem))
            _logger.warning("queue message %s rejected: %s", log_safe(message.id), problem.code)
            return "rejected"
        except SettingsError as error:
            return self._retry_or_fail(message, None, "GatewayMisconfigured", str(error))
        except AzureError as error:  # the claim check's blob could not be read now
            return self._retry_or_fail(message, None, "StorageUnavailable",
                                       f"the phoneNumbersBlob could not be read ({type(error).__name__})")

        try:
            audit = queue_context(self._requests_queue, command.correlation_id or message.id)
            budget = self._time_budget(command.sender) if callable(self._time_budget) else self._time_budget
            report = self._service().execute(command, time_budget=budget, audit=audit)
        except Problem as problem:
            if problem.status == 413:
                # Final: the same message cannot fit its budget on a redelivery either.
                self._publisher.publish(_rejected(message, payload, problem))
                _logger.warning("queue message %s rejected: %s", log_safe(message.id), problem.code)
                return "rejected"
            return self._retry_or_fail(message, command, problem.code, problem.detail)
        except SettingsError as error:
            return self._retry_or_fail(message, command, "GatewayMisconfigured", str(error))
        except Exception:  # a bug or an answer nobody foresaw: the message still gets a result
            _logger.exception("queue message %s failed unexpectedly", message.id)
            return self._retry_or_fail(message, command, "InternalError", "the gateway failed unexpectedly")
        transient_code = report.transient_failure_code
        if transient_code is not None:
            return self._retry_or_fail(
                message, command, transient_code,
                f"{report.summary['failed']} numbers could not be processed", report,
            )
        self._publisher.publish(_completed(message, command, report))
        return "completed"

    def _claimed(self, payload: Any, settings: Settings) -> Any:
        """The claim check: a message may name a blob of numbers (`phoneNumbersBlob`) instead
        of carrying them, so its size is not bound by the queue's 64 KiB (docs/jobs.md)."""
        if not isinstance(payload, dict) or "phoneNumbersBlob" not in payload:
            return payload
        reference = payload["phoneNumbersBlob"]
        if "phoneNumbers" in payload:
            raise validation_problem({"phoneNumbersBlob": ["send phoneNumbers or phoneNumbersBlob, not both"]})
        if not isinstance(reference, str) or not reference.strip():
            raise validation_problem({"phoneNumbersBlob": ["must be the name or URL of a blob in the uploads "
                                                           "container"]})
        if self._claim_check is None:
            raise validation_problem({"phoneNumbersBlob": ["this gateway takes no claim checks"]})
        numbers = self._claim_check(reference, settings.max_numbers)
        return {**{key: value for key, value in payload.items() if key != "phoneNumbersBlob"},
                "phoneNumbers": numbers}

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
        _logger.warning("queue message %s attempt %d of %d failed (%s)%s", log_safe(message.id), message.dequeue_count,
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
    """`correlation_id` is a validated one; without it the message id stands in (when it is a
    plain id, as the queue service's GUIDs are), else the result has no correlationId."""
    header: dict[str, Any] = {}
    fallback = message.id if is_valid_identifier(message.id) else None
    if correlation_id or fallback:
        header["correlationId"] = correlation_id or fallback
    header.update({
        "messageId": message.id,
        "status": status,
        "completedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    })
    traceparent = telemetry.current_traceparent()
    if traceparent is not None:
        header["traceparent"] = traceparent
    return header


def _traceparent_of(body: bytes) -> str | None:
    """The enqueuer's W3C `traceparent` field, read before the message is validated: a
    message rejected for any reason is still traced where it came from."""
    if len(body) > MAX_TRACED_MESSAGE_BYTES:
        return None
    try:
        payload = decode_message(body, max_bytes=MAX_TRACED_MESSAGE_BYTES)
    except Problem:
        return None
    return telemetry.valid_traceparent(payload.get("traceparent")) if isinstance(payload, dict) else None


def _completed(message: QueuedMessage, command: OptOutCommand, report: OperationReport) -> dict[str, Any]:
    result = _header(message, command.correlation_id, "completed")
    result.update(report.to_dict())
    return result


def _rejected(message: QueuedMessage, payload: Any, problem: Problem) -> dict[str, Any]:
    # A rejected message's fields are unvalidated: only a correlationId that passes the
    # documented rule is echoed, and an action only when it is one.
    correlation_id = payload.get("correlationId") if isinstance(payload, dict) else None
    if isinstance(correlation_id, str):
        correlation_id = correlation_id.strip()
    result = _header(message, correlation_id if is_valid_identifier(correlation_id) else None, "rejected")
    action = payload.get("action") if isinstance(payload, dict) else None
    if isinstance(action, str) and action.strip().lower() in _ACTIONS:
        result["action"] = action.strip().lower()
    error: dict[str, Any] = {"status": problem.status, "code": problem.code, "message": problem.detail}
    if problem.errors:
        error["errors"] = problem.errors
    result["error"] = error
    return result


_ACTIONS = frozenset(operation.value for operation in Operation)


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
