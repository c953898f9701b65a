"""The host's Event Grid webhook, as the Functions host's Event Grid extension serves it:
`/runtime/webhooks/eventgrid?functionName=NAME`, keyed with a system key (or the master key).

- `OPTIONS` with `WebHook-Request-Origin`: the CloudEvents 1.0 abuse-protection handshake, answered
  200 with `WebHook-Allowed-Origin` (the origin echoed) and `WebHook-Allowed-Rate: *`;
- `POST` with `aeg-event-type: SubscriptionValidation`: the Event Grid handshake, answered 200 with
  `{"validationResponse": <the event's data.validationCode>}`;
- `POST` with `aeg-event-type: Notification`: one event (an object) or a batch (an array), in the
  Event Grid or the CloudEvents schema. The function is called once per event, in order; 202 when
  every call returned, 500 at the first that raised (Event Grid then delivers the batch again);
- `aeg-event-type: Unsubscribe`: 202; anything else: 400.

Stricter than the host in one way, on purpose: every event of a batch is checked and decoded (by
azure-functions' own converter, as the worker decodes it) before any function runs, and a batch
with a malformed event is refused whole with a 400 naming the event and field, so that a test sees
a clear answer and no half-processed batch. Event Grid dead-letters a 400 at once (when the
subscription has a dead-letter destination), so the events are kept, not lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from .app_loader import EventGridFunction
from .invoker import Invoker

_logger = logging.getLogger("devtools.localhost")

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"
#: The system key Azure creates for the extension (the Event Grid subscription's `code`).
SYSTEM_KEY_NAME = "eventgrid_extension"
#: Event Grid delivers at most 1 MB per request (and 5,000 events).
MAX_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 5000
_EVENT_GRID_FIELDS = ("id", "eventType", "subject", "eventTime", "dataVersion")
_CLOUD_EVENT_FIELDS = ("id", "source", "type")

Answer = tuple[int, dict[str, str], bytes]


class EventGridWebhook:
    def __init__(self, functions: list[EventGridFunction], invoker: Invoker, timeout: float | None) -> None:
        self._functions = {function.name.lower(): function for function in functions}
        self._invoker = invoker
        self._timeout = timeout

    def __bool__(self) -> bool:
        return bool(self._functions)

    def find(self, name: str | None) -> EventGridFunction | None:
        return self._functions.get((name or "").lower())

    def handle(self, function: EventGridFunction, method: str, headers: Mapping[str, str], body: bytes) -> Answer:
        if method == "OPTIONS":
            origin = headers.get("WebHook-Request-Origin", "").strip()
            if not origin or len(origin) > 256 or not origin.isprintable():
                return _problem(400, "the CloudEvents validation request has no WebHook-Request-Origin header")
            return 200, {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"}, b""
        if method != "POST":
            return 405, {"Allow": "POST, OPTIONS"}, b""
        kind = headers.get("aeg-event-type", "").strip().lower()
        if kind == "unsubscribe":
            return 202, {}, b""
        if kind not in ("subscriptionvalidation", "notification"):
            return _problem(400, "aeg-event-type must be Notification, SubscriptionValidation or Unsubscribe")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "the body is not JSON")
        if kind == "subscriptionvalidation":
            return _validation(payload)
        if isinstance(payload, dict):
            payload = [payload]
        if not isinstance(payload, list) or not payload:
            return _problem(400, "the body must be an event (a JSON object) or a non-empty array of events")
        if len(payload) > MAX_EVENTS:
            return _problem(400, f"a batch holds at most {MAX_EVENTS} events")
        decoded = []
        for index, event in enumerate(payload):
            problem = _envelope_problem(event)
            if problem is None:
                try:
                    decoded.append(EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"),
                                                                    trigger_metadata={}))
                except (ValueError, TypeError, OverflowError):
                    problem = "its time is not an ISO 8601 timestamp"
            if problem is not None:
                return _problem(400, f"event {index} is malformed: {problem}; no event of this batch was processed")
        for event in decoded:
            try:
                self._invoker.call(function.user_function, {function.argument: event}, self._timeout)
            except Exception as error:
                # The function logged why; the host's own line names the function and the error's type only
                # (the exception text may quote the event).
                _logger.error("function %s failed (%s); Event Grid will deliver the batch again",
                              function.name, type(error).__name__)
                return 500, {}, b""
        return 202, {}, b""


def _validation(payload: Any) -> Answer:
    event = payload[0] if isinstance(payload, list) and payload else payload
    data = event.get("data") if isinstance(event, dict) else None
    if isinstance(data, str):  # the CloudEvents validation event double-encodes its data
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    code = data.get("validationCode") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code or len(code) > 256:
        return _problem(400, "the validation event has no data.validationCode")
    return 200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps({"validationResponse": code}).encode()


def _envelope_problem(event: Any) -> str | None:
    """What is missing from an event's envelope, by field name; None when it is whole."""
    if not isinstance(event, dict):
        return "it is not a JSON object"
    if "specversion" in event:
        if event["specversion"] != "1.0":
            return "specversion is not 1.0"
        required: tuple[str, ...] = _CLOUD_EVENT_FIELDS
    else:
        required = _EVENT_GRID_FIELDS
        if "data" not in event:
            return "data is missing"
    for name in required:
        value = event.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"{name} is missing or not a string"
    return None


def _problem(status: int, detail: str) -> Answer:
    body = {"type": "about:blank", "title": "Bad Event Grid request", "status": status, "detail": detail}
    return status, {"Content-Type": "application/problem+json; charset=utf-8"}, json.dumps(body).encode()
