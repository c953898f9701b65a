"""HTTP answers: JSON bodies and problem details, and the one place that turns
failures into them so no caller ever sees a stack trace."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func
import orjson

from optouts import telemetry
from optouts.config import SettingsError
from optouts.domain.problems import Problem, new_trace_id, validation_problem

_logger = logging.getLogger("optouts.http")

JSON_TYPES = ("application/json", "text/json")


def json_response(body: Any, *, status: int = 200, trace_id: str,
                  headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        _json_bytes(body),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers={"x-trace-id": trace_id, **(headers or {})},
    )


def _json_bytes(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:
        # Callers' text is echoed back (inputs, field names); a lone surrogate in it cannot be
        # UTF-8, so that answer is ASCII with `\\u` escapes, which carry any text.
        return json.dumps(body, separators=(",", ":")).encode("ascii")


def problem_response(problem: Problem, *, trace_id: str, extensions: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> func.HttpResponse:
    """`extensions`: more members of the problem document (RFC 9457 section 3.2)."""
    headers = {**(headers or {}), "x-trace-id": trace_id}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(problem.retry_after)))
    body = problem.to_dict(trace_id)
    if extensions:
        body.update(extensions)
    return func.HttpResponse(
        _json_bytes(body),
        status_code=problem.status,
        mimetype="application/problem+json",
        charset="utf-8",
        headers=headers,
    )


def misconfiguration_problem(error: SettingsError) -> Problem:
    return Problem(503, "GatewayMisconfigured", "Gateway misconfigured",
                   f"{error}. An operator must fix the app setting; the request was not processed.",
                   retry_after=60)


def guarded(
    handler: Callable[[func.HttpRequest, str], func.HttpResponse],
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Run `handler(request, trace_id)`, turning every failure into problem details."""

    def run(req: func.HttpRequest) -> func.HttpResponse:
        traceparent = req.headers.get("traceparent")
        with telemetry.http_request(req.method, req.url, req.route_params, traceparent) as exchange:
            # The span's ids when a tracer is installed, so answers and traces share one id.
            trace_id = (exchange.span and telemetry.trace_id_of(exchange.span)) or new_trace_id(traceparent)
            response = _answer(handler, req, trace_id)
            exchange.status = response.status_code
            return response

    return run


def _answer(handler: Callable[[func.HttpRequest, str], func.HttpResponse], req: func.HttpRequest,
            trace_id: str) -> func.HttpResponse:
    try:
        return handler(req, trace_id)
    except Problem as problem:
        return problem_response(problem, trace_id=trace_id)
    except SettingsError as error:
        _logger.error("configuration error: %s", error)
        return problem_response(misconfiguration_problem(error), trace_id=trace_id)
    except Exception:  # a bug: log it, answer without details
        _logger.exception("unhandled error (traceId %s)", trace_id)
        internal = Problem(500, "InternalError", "Internal error",
                           "the gateway failed unexpectedly; the traceId identifies the failure in its logs")
        return problem_response(internal, trace_id=trace_id)


def require_query(req: func.HttpRequest, allowed: frozenset[str] = frozenset()) -> None:
    """Refuse query parameters a route does not take, as unknown body fields are refused: a
    mistyped `sender` must not silently fall back to the default sender. `code` is the host's
    function key and always allowed."""
    unknown = sorted(name for name in req.params if name not in allowed and name != "code")
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise validation_problem({name[:64]: [f"unknown query parameter; expected {expected}"]
                                  for name in unknown[:5]})


def require_json(req: func.HttpRequest) -> None:
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type and not (content_type in JSON_TYPES or content_type.endswith("+json")):
        raise Problem(415, "UnsupportedMediaType", "Unsupported media type",
                      "send the body as JSON with Content-Type: application/json")
