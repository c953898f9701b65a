"""An HTTPS Event Grid custom topic stand-in (input schema CloudEvents 1.0), as
azure-eventgrid's `EventGridPublisherClient` publishes to it:

    POST {topic endpoint}?api-version=...
    Authorization: Bearer <Entra token for https://eventgrid.azure.net>
    Content-Type: application/cloudevents-batch+json; charset=utf-8
    [ {"specversion": "1.0", "id": ..., "source": ..., "type": ..., ...}, ... ]

Each batch is checked the way the service checks it (required attributes, at most 1 MB per
request, lowercase alphanumeric extension names) and answered 200 with an empty body, or 400
with Event Grid's error shape. Accepted events are kept, in order, for the test to read.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._server import JsonHandler, LocalServer

EVENT_GRID_RESOURCE = "https://eventgrid.azure.net"
TOPIC_PATH = "/api/events"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
#: Event Grid refuses a request over 1 MB.
MAX_REQUEST_BYTES = 1_048_576
_REQUIRED = ("specversion", "id", "source", "type")
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")


@dataclass
class EventGridStats:
    #: Accepted requests: one per batch the publisher sent.
    batches: int = 0
    #: Requests answered 401 (no token, or one not accepted).
    unauthorized: int = 0
    #: Requests answered 400, with the reason.
    rejected: list[str] = field(default_factory=list)
    #: Requests answered with `fail_with_status`.
    failed: int = 0


class EventGridTopicStandIn:
    """`with EventGridTopicStandIn(accepted_tokens={...}) as topic:` then publish to
    `topic.endpoint`, trusting `topic.ca_bundle` (REQUESTS_CA_BUNDLE).

    `events` holds every accepted CloudEvent (parsed JSON) in arrival order. `fail_with_status`
    makes every request fail with that status; `stop()` refuses connections."""

    def __init__(self, *, accepted_tokens: set[str] | frozenset[str] = frozenset()) -> None:
        self.accepted_tokens: set[str] = set(accepted_tokens)
        self.fail_with_status: int | None = None
        self.stats = EventGridStats()
        self.events: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self._lock = threading.Lock()
        self._server: LocalServer | None = None

    def __enter__(self) -> EventGridTopicStandIn:
        self._server = LocalServer(_TopicHandler, owner=self, tls=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def endpoint(self) -> str:
        return self._running().base_url + TOPIC_PATH

    @property
    def ca_bundle(self) -> str:
        certificate = self._running().certificate
        assert certificate is not None
        return certificate.ca_bundle

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def stop(self) -> None:
        self._running().stop()

    def _running(self) -> LocalServer:
        if self._server is None:
            raise RuntimeError("use EventGridTopicStandIn as a context manager")
        return self._server


def batch_problem(content_type: str, body: bytes) -> tuple[str | None, list[dict[str, Any]]]:
    """(why the service would refuse this request, or None; the events)."""
    if content_type.split(";")[0].strip().lower() != BATCH_CONTENT_TYPE:
        return f"Content-Type must be {BATCH_CONTENT_TYPE}", []
    if len(body) > MAX_REQUEST_BYTES:
        return "the request exceeds 1 MB", []
    try:
        events = json.loads(body)
    except ValueError:
        return "the body is not JSON", []
    if not isinstance(events, list) or not events:
        return "the body must be a non-empty JSON array of CloudEvents", []
    for position, event in enumerate(events):
        if not isinstance(event, dict):
            return f"event {position} is not an object", []
        missing = [name for name in _REQUIRED if not isinstance(event.get(name), str) or not event[name]]
        if missing:
            return f"event {position} lacks {', '.join(missing)}", []
        if event["specversion"] != "1.0":
            return f"event {position}: specversion must be 1.0", []
        bad = [name for name in event if name not in ("data", "data_base64") and not _ATTRIBUTE_NAME.fullmatch(name)]
        if bad:
            return f"event {position}: attribute names must be lowercase letters and digits", []
        if "time" in event and not isinstance(event["time"], str):
            return f"event {position}: time must be an RFC 3339 timestamp", []
    return None, events


class _TopicHandler(JsonHandler):
    server_version = "EventGridTopicStandIn"

    def do_POST(self) -> None:
        topic: EventGridTopicStandIn = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_REQUEST_BYTES + 1))
        if topic.fail_with_status is not None:
            with topic._lock:
                topic.stats.failed += 1
            self.send_json(topic.fail_with_status, _error("ServiceUnavailable", "The topic is unavailable."))
            return
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        with topic._lock:
            authorized = scheme.lower() == "bearer" and token.strip() in topic.accepted_tokens
            if not authorized:
                topic.stats.unauthorized += 1
        if not authorized:
            self.send_json(401, _error("Unauthorized", "The request authorization is not valid."))
            return
        url = urlsplit(self.path)
        if url.path != TOPIC_PATH or not parse_qs(url.query).get("api-version"):
            self.send_json(404, _error("NotFound", "POST /api/events?api-version=... only."))
            return
        content_type = self.headers.get("Content-Type") or ""
        problem, events = batch_problem(content_type, body)
        with topic._lock:
            if problem is not None:
                topic.stats.rejected.append(problem)
            else:
                topic.stats.batches += 1
                topic.events.extend(events)
                topic.content_types.append(content_type)
        if problem is not None:
            self.send_json(400, _error("BadRequest", problem))
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True


def _error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}}
