"""Pipeline policies: HMAC signing, Retry-After hygiene, and a retry policy bounded by an
operation deadline."""

from __future__ import annotations

import math
import time
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy, RetryPolicy
from azure.core.rest import HttpRequest, HttpResponse

from optouts.providers.acs import signing
from optouts.providers.acs.credentials import AccessKeyCredential

#: Options a caller passes per request; popped here so the transport never sees them.
DEADLINE_OPTION = "optouts_deadline"

#: The longest wait an upstream may ask for; anything longer (or infinite) is clamped to it.
MAX_RETRY_AFTER_SECONDS = 60.0
#: Longer header values are not a delay anyone meant; they are dropped unread.
_MAX_RETRY_AFTER_TEXT = 64
#: (header, seconds per unit) in the order azure-core's RetryPolicy reads them.
RETRY_AFTER_HEADERS = (("retry-after", 1.0), ("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001))


def parse_retry_after(value: str | None, unit: float = 1.0) -> float | None:
    """Seconds to wait from a Retry-After style header, within [0, MAX_RETRY_AFTER_SECONDS],
    or None when the value is neither a number nor an HTTP date.

    Hostile values cannot escape the bounds: `1e400` (infinity) and huge numbers clamp
    to the maximum, negative numbers and past dates to 0, NaN and garbage to None."""
    if not value:
        return None
    text = value.strip()
    if not text or len(text) > _MAX_RETRY_AFTER_TEXT:
        return None
    try:
        seconds = float(text) * unit
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class RetryAfterPolicy(HTTPPolicy[HttpRequest, HttpResponse]):
    """Rewrites the answer's Retry-After headers to bounded plain numbers before the retry
    policy (which parses them itself, and would sleep forever or raise on `1e400`, or
    raise on a malformed date) sees them. A value that is not a delay is removed."""

    def send(self, request: PipelineRequest[HttpRequest]) -> PipelineResponse[HttpRequest, HttpResponse]:
        response = self.next.send(request)
        headers = response.http_response.headers
        for name, unit in RETRY_AFTER_HEADERS:
            raw = headers.get(name)
            if raw is None:
                continue
            seconds = parse_retry_after(raw, unit)
            if seconds is None:
                del headers[name]
            else:
                headers[name] = f"{seconds / unit:.3f}"
        return response


#: Where BoundedAnswerPolicy leaves each answer's body in the pipeline context.
ANSWER_BODY = "optouts_answer_body"


class BoundedAnswerPolicy(HTTPPolicy[HttpRequest, HttpResponse]):
    """Reads each answer's body itself, at most `limit` bytes, then closes the answer.

    An upstream cannot make the client hold more than `limit` bytes of one answer in memory
    (a declared Content-Length over it is not read at all), and no connection is left
    half-read when the retry or signing policy discards an attempt. The body, or None when it
    was over the limit, is left in the pipeline context under ANSWER_BODY; the answer's
    status and headers stay readable. Innermost, so that every attempt goes through it."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def send(self, request: PipelineRequest[HttpRequest]) -> PipelineResponse[HttpRequest, HttpResponse]:
        request.context.options["stream"] = True
        response = self.next.send(request)
        http_response = response.http_response
        body: bytearray | None = None
        try:
            declared = http_response.headers.get("Content-Length", "")
            if not (declared.isdigit() and int(declared) > self._limit):
                read = bytearray()
                for piece in http_response.iter_bytes():
                    read += piece
                    if len(read) > self._limit:
                        break
                else:
                    body = read
        finally:
            http_response.close()
        request.context[ANSWER_BODY] = None if body is None else bytes(body)
        return response


class HmacSigningPolicy(HTTPPolicy[HttpRequest, HttpResponse]):
    """Signs each attempt (so every retry gets a fresh x-ms-date) and, after a 401,
    asks the credential for a newer key and tries exactly once more."""

    def __init__(self, credential: AccessKeyCredential) -> None:
        super().__init__()
        self._credential = credential

    def send(self, request: PipelineRequest[HttpRequest]) -> PipelineResponse[HttpRequest, HttpResponse]:
        key = self._sign(request)
        response = self.next.send(request)
        if response.http_response.status_code == 401 and self._credential.refresh_after_rejection(key):
            self._sign(request)
            response = self.next.send(request)
        return response

    def _sign(self, request: PipelineRequest[HttpRequest]) -> bytes:
        http_request = request.http_request
        url = urlsplit(http_request.url)
        path_and_query = url.path + (f"?{url.query}" if url.query else "")
        body = http_request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        body_hash = signing.content_sha256(body)
        date = formatdate(usegmt=True)
        key = self._credential.get_key()
        text = signing.string_to_sign(http_request.method, path_and_query, date, url.netloc, body_hash)
        http_request.headers["x-ms-date"] = date
        http_request.headers["x-ms-content-sha256"] = body_hash
        http_request.headers["Authorization"] = signing.authorization_header(signing.signature(key, text))
        return key


class DeadlineRetryPolicy(RetryPolicy[HttpRequest, HttpResponse]):
    """azure-core's retry policy, with three changes that suit idempotent opt-out calls:

    - POST is retried like any other method (add/remove/check are idempotent);
    - no wait, Retry-After included, may run past the operation's deadline: when the
      next wait would, the last answer is returned instead of sleeping for nothing;
    - the per-attempt timeout shrinks with the time left.

    Retry-After values reach it already bounded by `RetryAfterPolicy`.
    """

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        deadline = options.pop(DEADLINE_OPTION, None)
        settings = super().configure_retries(options)
        settings["methods"] = frozenset(settings["methods"]) | {"POST"}
        settings["deadline"] = deadline
        if deadline is not None:
            settings["timeout"] = max(0.001, deadline - time.monotonic())
        return settings

    def increment(self, settings: dict[str, Any], response: Any = None, error: Exception | None = None) -> bool:
        if not super().increment(settings, response=response, error=error):
            return False
        deadline: float | None = settings.get("deadline")
        if deadline is None:
            return True
        wait: float | None = None
        if isinstance(response, PipelineResponse):
            wait = self.get_retry_after(response)
        if wait is None:
            wait = self.get_backoff_time(settings)
        return time.monotonic() + wait < deadline
