"""Pipeline policies that measure calls to ACS: the duration and outcome of every attempt,
the retries of every call, and one warning naming the endpoint host and the error class
when calls get no answer at all (rate-limited, so an outage does not flood the log)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from optouts import telemetry

_logger = logging.getLogger("optouts.providers.acs")

ATTEMPTS_KEY = "optouts.attempts"
#: At most one "no answer" warning per host and error class in this many seconds.
UNREACHABLE_WARNING_INTERVAL = 10.0


def _operation(request: PipelineRequest[Any]) -> str:
    path = urlsplit(request.http_request.url).path
    return path.rsplit(":", 1)[-1] if ":" in path else "unknown"


class UpstreamCallPolicy(HTTPPolicy):  # type: ignore[type-arg]
    """Before the retry policy: sees a call once, however many attempts it took."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._last_warning: dict[tuple[str, str], tuple[float, int]] = {}

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        request.context[ATTEMPTS_KEY] = 0
        operation = _operation(request)
        try:
            return self.next.send(request)
        except AzureError as error:
            self._warn_unreachable(request, operation, error)
            raise
        finally:
            telemetry.record_upstream_retries(operation, request.context.get(ATTEMPTS_KEY, 1) - 1)

    def _warn_unreachable(self, request: PipelineRequest[Any], operation: str, error: AzureError) -> None:
        host = urlsplit(request.http_request.url).hostname or "unknown host"
        key = (host, type(error).__name__)
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last_warning.get(key, (float("-inf"), 0))
            if now - last < UNREACHABLE_WARNING_INTERVAL:
                self._last_warning[key] = (last, suppressed + 1)
                return
            self._last_warning[key] = (now, 0)
        _logger.warning("ACS at %s gave no answer to a %s call after %d attempts (%s)%s", host, operation,
                        request.context.get(ATTEMPTS_KEY, 1), type(error).__name__,
                        f"; {suppressed} more such calls since the last warning" if suppressed else "")


class UpstreamAttemptPolicy(HTTPPolicy):  # type: ignore[type-arg]
    """After the retry policy: one duration sample per attempt, with its status or error."""

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        request.context[ATTEMPTS_KEY] = request.context.get(ATTEMPTS_KEY, 0) + 1
        started = time.perf_counter()
        try:
            response = self.next.send(request)
        except Exception as error:
            telemetry.record_upstream_attempt(_operation(request), time.perf_counter() - started,
                                              status_code=None, error_type=type(error).__name__)
            raise
        status = response.http_response.status_code
        telemetry.record_upstream_attempt(_operation(request), time.perf_counter() - started, status_code=status,
                                          error_type=str(status) if status >= 400 else None)
        return response
