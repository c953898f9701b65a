"""Pipeline policies: HMAC signing and a retry policy bounded by an operation deadline."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy, RetryPolicy
from azure.core.rest import HttpRequest, HttpResponse

from optouts.providers.acs import signing
from optouts.providers.acs.credentials import AccessKeyCredential

#: Options a caller passes per request; popped here so the transport never sees them.
DEADLINE_OPTION = "optouts_deadline"


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
