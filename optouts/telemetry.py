"""The gateway's telemetry, in one place: OpenTelemetry spans and metrics, the per-request
log line, and the log levels of the Azure SDK.

Instruments and the tracer come from OpenTelemetry's global providers. Until a provider is
installed the API hands out proxies that record nothing, so code records unconditionally;
`optouts.runtime.start` decides once per process whether an SDK is installed (Azure Monitor
when APPLICATIONINSIGHTS_CONNECTION_STRING is set, the console with OPTOUT_TELEMETRY_CONSOLE,
else none). Attributes never hold a phone number: numbers are counted, not named.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

INSTRUMENTATION_NAME = "optouts"
SERVICE_NAME = "sms-optout-gateway"
PROVIDER_ACS = "acs"

#: `OPTOUT_AZURE_SDK_LOG_LEVEL` overrides it: azure-core logs every HTTP call at INFO
#: (a 1,000-number operation was 20 lines per number), which helps nobody in production.
DEFAULT_AZURE_SDK_LOG_LEVEL = logging.WARNING
_AZURE_SDK_LOGGERS = ("azure", "azure.core", "azure.identity", "azure.monitor", "msal")

_logger = logging.getLogger("optouts.http")
_meter = metrics.get_meter(INSTRUMENTATION_NAME)
_tracer = trace.get_tracer(INSTRUMENTATION_NAME)
_propagator = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")

NUMBERS_PROCESSED = _meter.create_counter(
    "optouts.numbers.processed", unit="{number}",
    description="Phone numbers carried out, by action, provider and status (succeeded, invalid, failed)")
UPSTREAM_DURATION = _meter.create_histogram(
    "optouts.upstream.duration", unit="s",
    description="Duration of one attempt of one call to the opt-out provider")
UPSTREAM_RETRIES = _meter.create_counter(
    "optouts.upstream.retries", unit="{retry}",
    description="Attempts of a provider call beyond its first")
AUDIT_LAG = _meter.create_histogram(
    "optouts.audit.lag", unit="s",
    description="From the provider's answer to the audit record being durable")
QUEUE_MESSAGES = _meter.create_counter(
    "optouts.queue.messages", unit="{message}",
    description="Queue deliveries by outcome: completed, rejected, retried (redelivered) or failed (poison)")
HTTP_DURATION = _meter.create_histogram(
    "http.server.request.duration", unit="s", description="Duration of HTTP requests to the gateway")


# -- configuration -------------------------------------------------------------------------

def quiet_azure_sdk(environ: Mapping[str, str]) -> int:
    """Azure SDK loggers at WARNING unless OPTOUT_AZURE_SDK_LOG_LEVEL says otherwise."""
    raw = environ.get("OPTOUT_AZURE_SDK_LOG_LEVEL", "").strip().upper()
    level = logging.getLevelName(raw) if raw else DEFAULT_AZURE_SDK_LOG_LEVEL
    if not isinstance(level, int):
        level = DEFAULT_AZURE_SDK_LOG_LEVEL
    for name in _AZURE_SDK_LOGGERS:
        logging.getLogger(name).setLevel(level)
    return level


def exporter_choice(environ: Mapping[str, str]) -> str:
    """`azure-monitor`, `console` or `none`."""
    if environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip():
        return "azure-monitor"
    if environ.get("OPTOUT_TELEMETRY_CONSOLE", "").strip().lower() in {"1", "true", "yes"}:
        return "console"
    return "none"


def monitor_client_id(environ: Mapping[str, str]) -> tuple[bool, str | None]:
    """Whether Application Insights takes Entra ID tokens, and from which user-assigned identity.

    Infra sets APPLICATIONINSIGHTS_AUTHENTICATION_STRING to `ClientId=<id>;Authorization=AAD`,
    the format the Functions host reads; the app's own exporter follows the same setting."""
    parts = dict(
        part.split("=", 1) for part in environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").split(";")
        if "=" in part
    )
    normalized = {key.strip().lower(): value.strip() for key, value in parts.items()}
    if normalized.get("authorization", "").upper() != "AAD":
        return False, None
    return True, normalized.get("clientid") or None


# -- traces ---------------------------------------------------------------------------------

def valid_traceparent(value: Any) -> str | None:
    """A W3C traceparent as sent by a caller, or None: hostile text is never propagated."""
    if isinstance(value, str) and len(value) == 55 and _TRACEPARENT.fullmatch(value.lower()):
        return value.lower()
    return None


def parent_context(traceparent: Any) -> Context | None:
    checked = valid_traceparent(traceparent)
    return _propagator.extract({"traceparent": checked}) if checked else None


def current_traceparent() -> str | None:
    """The traceparent of the current span, to carry on (a result message, a log line)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def trace_id_of(span: Span) -> str | None:
    """The gateway's `traceId` (answers, audit records) from the span, when one is recorded
    (without a tracer the API's span only echoes the caller's context)."""
    context = span.get_span_context()
    if not span.is_recording() or not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


@contextmanager
def operation_span(action: str, sender: str, count: int) -> Iterator[Span]:
    with _tracer.start_as_current_span(
        f"optouts.{action}", kind=SpanKind.INTERNAL,
        attributes={"optouts.action": action, "optouts.provider": PROVIDER_ACS, "optouts.sender": sender,
                    "optouts.numbers.requested": count},
    ) as span:
        yield span


@contextmanager
def queue_message_span(queue: str, message_id: str, dequeue_count: int, traceparent: Any) -> Iterator[Span]:
    """A CONSUMER span for one delivery, child of the enqueuer's `traceparent` when it sent one."""
    with _tracer.start_as_current_span(
        f"process {queue}", context=parent_context(traceparent), kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "azure_storage_queue", "messaging.operation.type": "process",
                    "messaging.destination.name": queue, "messaging.message.id": message_id[:64],
                    "optouts.delivery": dequeue_count},
    ) as span:
        yield span


# -- metrics -----------------------------------------------------------------------------

def record_numbers(action: str, summary: Mapping[str, int], provider: str = PROVIDER_ACS) -> None:
    for status in ("succeeded", "invalid", "failed"):
        if summary.get(status):
            NUMBERS_PROCESSED.add(summary[status], {"optouts.action": action, "optouts.provider": provider,
                                                    "optouts.status": status})
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({f"optouts.numbers.{status}": summary.get(status, 0)
                             for status in ("succeeded", "invalid", "failed")})


def record_queue_outcome(queue: str, outcome: str) -> None:
    QUEUE_MESSAGES.add(1, {"messaging.destination.name": queue, "optouts.outcome": outcome})
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("optouts.outcome", outcome)
        if outcome in ("retried", "failed"):
            span.set_status(Status(StatusCode.ERROR, outcome))


def record_audit_lag(seconds: float, stage: str = "recorded") -> None:
    """How far the audit trail is behind the changes it records (issue 16's trail calls this
    with its own stages; `recorded` is the synchronous write before the answer)."""
    AUDIT_LAG.record(max(0.0, seconds), {"optouts.audit.stage": stage})


def record_upstream_attempt(operation: str, seconds: float, *, status_code: int | None,
                            error_type: str | None, provider: str = PROVIDER_ACS) -> None:
    attributes: dict[str, Any] = {"optouts.provider": provider, "optouts.operation": operation}
    if status_code is not None:
        attributes["http.response.status_code"] = status_code
    if error_type is not None:
        attributes["error.type"] = error_type
    UPSTREAM_DURATION.record(seconds, attributes)


def record_upstream_retries(operation: str, retries: int, provider: str = PROVIDER_ACS) -> None:
    if retries > 0:
        UPSTREAM_RETRIES.add(retries, {"optouts.provider": provider, "optouts.operation": operation})


# -- HTTP requests -------------------------------------------------------------------------

@contextmanager
def http_request(
    method: str, url: str, route_params: Mapping[str, str], traceparent: str | None
) -> Iterator[HttpExchange]:
    """A SERVER span and, at its end, one log line and one duration sample for the request."""
    route = route_template(url, route_params)
    exchange = HttpExchange(method.upper()[:10], route)
    started = time.perf_counter()
    with _tracer.start_as_current_span(
        f"{exchange.method} {route}", context=parent_context(traceparent), kind=SpanKind.SERVER,
        attributes={"http.request.method": exchange.method, "http.route": route},
        record_exception=False, set_status_on_exception=False,
    ) as span:
        exchange.span = span
        try:
            yield exchange
        finally:
            elapsed = time.perf_counter() - started
            span.set_attribute("http.response.status_code", exchange.status)
            if exchange.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            HTTP_DURATION.record(elapsed, {"http.request.method": exchange.method, "http.route": route,
                                           "http.response.status_code": exchange.status})
            _logger.info("%s %s %d %.1f ms", exchange.method, route, exchange.status, elapsed * 1000)


class HttpExchange:
    __slots__ = ("method", "route", "status", "span")

    def __init__(self, method: str, route: str) -> None:
        self.method = method
        self.route = route
        self.status = 500
        self.span: Span | None = None


def route_template(url: str, route_params: Mapping[str, str]) -> str:
    """The request path with route values put back as `{name}`: what the log line and the
    span show, so that no phone number and no query string (`?code=` is a key) appears."""
    path = urlsplit(url).path or "/"
    by_value = {value: name for name, value in route_params.items() if value}
    segments = []
    for segment in path.split("/"):
        name = by_value.get(unquote(segment))
        segments.append("{" + name + "}" if name else segment)
    return "/".join(segments)[:200]
