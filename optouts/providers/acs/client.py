"""The ACS SMS opt-out client: add, remove and check any number of recipients.

Built like the official Azure SDK clients: an azure-core `PipelineClient` whose
policies do retries, authentication and logging. On top of the three REST calls it
splits recipients into chunks of at most 100, sends chunks concurrently with a
bounded concurrency, sends each distinct recipient once, re-tries only the
recipients ACS answered with a transient per-recipient error, and answers one
result per input recipient in input order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.rest import HttpRequest

from optouts.providers.acs.credentials import (
    AccessKeyCredential,
    StaticAccessKey,
    parse_connection_string,
)
from optouts.providers.acs.errors import (
    AcsAuthenticationError,
    AcsBadRequestError,
    AcsThrottledError,
    AcsUnavailableError,
    CredentialUnavailableError,
    OptOutsError,
)
from optouts.domain.operations import Operation
from optouts.providers.base import RecipientOutcome, RecipientResult
from optouts.providers.acs.policies import DEADLINE_OPTION, DeadlineRetryPolicy, HmacSigningPolicy
from optouts.providers.acs.transport import KeepAliveTransport

DEFAULT_API_VERSION = "2026-01-23"
ACS_SCOPE = "https://communication.azure.com//.default"
MAX_RECIPIENTS_PER_CALL = 100
TRANSIENT_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
SDK_MONIKER = "sms-optout-gateway/0.1.0"

_logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _ChunkAnswer:
    """What one chunk's call produced: per-recipient results, or a whole-call failure."""

    results: dict[str, RecipientResult]
    transient_failure: bool = False
    retry_after: float | None = None
    status_code: int | None = None


class OptOutsClient:
    """Client for `POST {endpoint}/sms/optouts:add|remove|check`.

    One instance is meant to live for the whole process: it owns a connection pool
    and a thread pool, and is safe to use from many threads at once.
    """

    def __init__(
        self,
        endpoint: str,
        credential: AccessKeyCredential | TokenCredential,
        *,
        api_version: str = DEFAULT_API_VERSION,
        max_concurrency: int = 8,
        time_budget: float = 60.0,
        recipient_retry_rounds: int = 2,
        recipient_retry_backoff: float = 0.2,
        allow_insecure_bearer: bool = False,
        retry_total: int = 4,
        retry_backoff_factor: float = 0.5,
        retry_backoff_max: float = 8.0,
        connection_timeout: float = 10.0,
        read_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if not endpoint.lower().startswith(("https://", "http://")):
            raise ValueError("endpoint must start with https:// or http://")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._endpoint = endpoint.rstrip("/")
        self._api_version = api_version
        self._urls = {
            operation: f"{self._endpoint}/sms/optouts:{operation.value}?{urlencode({'api-version': api_version})}"
            for operation in Operation
        }
        self._max_concurrency = max_concurrency
        self._time_budget = time_budget
        self._recipient_retry_rounds = recipient_retry_rounds
        self._recipient_retry_backoff = recipient_retry_backoff
        self._read_timeout = read_timeout
        self._is_bearer = not hasattr(credential, "get_key")
        self._enforce_https = not allow_insecure_bearer
        if self._is_bearer and self._enforce_https and not self._endpoint.lower().startswith("https://"):
            raise ValueError("bearer tokens are only sent over https unless allow_insecure_bearer=True (local use)")

        if self._is_bearer:
            auth_policy = BearerTokenCredentialPolicy(credential, ACS_SCOPE)  # type: ignore[arg-type]
        else:
            auth_policy = HmacSigningPolicy(credential)  # type: ignore[arg-type]
        retry_policy = DeadlineRetryPolicy(
            retry_total=retry_total,
            retry_connect=retry_total,
            retry_read=retry_total,
            retry_status=retry_total,
            retry_backoff_factor=retry_backoff_factor,
            retry_backoff_max=retry_backoff_max,
        )
        # Signing comes after retrying so that every attempt is signed afresh.
        policies = [
            RequestIdPolicy(**kwargs),
            HeadersPolicy(**kwargs),
            UserAgentPolicy(sdk_moniker=SDK_MONIKER, **kwargs),
            retry_policy,
            auth_policy,
            HttpLoggingPolicy(**kwargs),
        ]
        transport = kwargs.pop("transport", None) or KeepAliveTransport(
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
            pool_size=4 * max_concurrency,
        )
        self._pipeline_client: PipelineClient = PipelineClient(
            base_url=self._endpoint, policies=policies, transport=transport
        )
        # Shared by all operations; each operation separately caps its own in-flight chunks.
        self._executor = ThreadPoolExecutor(
            max_workers=4 * max_concurrency, thread_name_prefix="optouts-acs"
        )

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs: Any) -> "OptOutsClient":
        endpoint, access_key = parse_connection_string(connection_string)
        return cls(endpoint, StaticAccessKey(access_key), **kwargs)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def api_version(self) -> str:
        return self._api_version

    def add(self, sender: str, recipients: Iterable[str], *, time_budget: float | None = None) -> list[RecipientResult]:
        return self._run(Operation.ADD, sender, recipients, time_budget)

    def remove(self, sender: str, recipients: Iterable[str], *, time_budget: float | None = None) -> list[RecipientResult]:
        return self._run(Operation.REMOVE, sender, recipients, time_budget)

    def check(self, sender: str, recipients: Iterable[str], *, time_budget: float | None = None) -> list[RecipientResult]:
        return self._run(Operation.CHECK, sender, recipients, time_budget)

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        return self._run(operation, sender, recipients, time_budget)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pipeline_client.close()

    def __enter__(self) -> "OptOutsClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one operation ---------------------------------------------------------------

    def _run(
        self, operation: Operation, sender: str, recipients: Iterable[str], time_budget: float | None
    ) -> list[RecipientResult]:
        deadline = time.monotonic() + (self._time_budget if time_budget is None else time_budget)
        order: list[str] = []
        answers: dict[str, RecipientResult] = {}
        batch = _ChunkBatch(self, operation, sender, deadline, answers)

        chunk: list[str] = []
        full: list[str] | None = None
        seen: set[str] = set()
        # `recipients` may be a generator doing real work (number normalization):
        # consuming it while earlier chunks are in flight overlaps that work with I/O.
        for to in recipients:
            order.append(to)
            if to in seen:
                continue
            seen.add(to)
            if full is not None:
                batch.submit(full)
                full = None
            chunk.append(to)
            if len(chunk) == MAX_RECIPIENTS_PER_CALL:
                # Held back until another recipient shows up: the last chunk is sent
                # from this thread, which would otherwise sit idle waiting for it.
                full, chunk = chunk, []
        last = full or chunk
        if last:
            batch.submit(last, inline=True)
        batch.wait(raise_when_nothing_answered=True)

        self._retry_failed_recipients(batch, operation, sender, deadline, answers)
        return [answers[to] for to in order]

    def _retry_failed_recipients(
        self,
        first_pass: "_ChunkBatch",
        operation: Operation,
        sender: str,
        deadline: float,
        answers: dict[str, RecipientResult],
    ) -> None:
        """Bounded re-try of the recipients ACS answered with a per-recipient 429/5xx.

        Recipients of a call that failed as a whole are not re-tried here: the retry
        policy already spent its attempts on that call.
        """
        gave_up = set(first_pass.whole_call_failures)
        for round_number in range(self._recipient_retry_rounds):
            retryable = [
                to for to, result in answers.items()
                if result.outcome is RecipientOutcome.FAILED and to not in gave_up
            ]
            if not retryable:
                return
            pause = self._recipient_retry_backoff * (2**round_number)
            if time.monotonic() + pause >= deadline:
                return
            time.sleep(pause)
            batch = _ChunkBatch(self, operation, sender, deadline, answers)
            for start in range(0, len(retryable), MAX_RECIPIENTS_PER_CALL):
                batch.submit(retryable[start : start + MAX_RECIPIENTS_PER_CALL])
            batch.wait(raise_when_nothing_answered=False)
            gave_up |= batch.whole_call_failures

    # -- one chunk -------------------------------------------------------------------

    def _send_chunk(self, operation: Operation, sender: str, chunk: list[str], deadline: float) -> _ChunkAnswer:
        request = HttpRequest(
            "POST",
            self._urls[operation],
            # The request id is set here so that RequestIdPolicy keeps it: its own default, uuid1,
            # takes libuuid's clock lock (about 10 µs a call) and reveals the host's MAC address.
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     "x-ms-client-request-id": str(uuid.uuid4())},
            content=_request_body(sender, chunk),
        )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _whole_call_failure(chunk, None, None, "time budget exhausted before the call was sent")
        options: dict[str, Any] = {DEADLINE_OPTION: deadline, "read_timeout": min(self._read_timeout, remaining)}
        if self._is_bearer:
            options["enforce_https"] = self._enforce_https
        try:
            response = self._pipeline_client.send_request(request, **options)
        except OptOutsError:
            raise
        except ClientAuthenticationError as error:
            # Raised by a token credential (managed identity, Entra ID) before anything was sent.
            raise CredentialUnavailableError(f"could not get a token for ACS ({type(error).__name__})") from None
        except AzureError as error:
            # Connection errors and timeouts that outlived the retry policy.
            return _whole_call_failure(chunk, None, None, f"no answer from ACS ({type(error).__name__})")

        status = response.status_code
        if status == 200:
            return _ChunkAnswer(results=_parse_recipients(operation, chunk, response.content))
        error_text = _error_text(response.text())
        if status in (401, 403):
            raise AcsAuthenticationError(f"ACS rejected the gateway's credentials ({status}): {error_text}")
        retry_after = _retry_after_seconds(response.headers)
        if status in TRANSIENT_STATUS_CODES:
            return _whole_call_failure(chunk, status, retry_after, f"ACS answered {status}: {error_text}")
        raise AcsBadRequestError(f"ACS rejected the call ({status}): {error_text}")


class _ChunkBatch:
    """The chunks of one operation in flight, at most `max_concurrency` at a time."""

    def __init__(
        self,
        client: OptOutsClient,
        operation: Operation,
        sender: str,
        deadline: float,
        answers: dict[str, RecipientResult],
    ) -> None:
        self._client = client
        self._operation = operation
        self._sender = sender
        self._deadline = deadline
        self._answers = answers
        # Made with the first pooled chunk: an operation of one chunk never needs them.
        self._slots: threading.BoundedSemaphore | None = None
        self._futures: list[Future[_ChunkAnswer]] = []
        self._sent_inline: list[_ChunkAnswer | Exception] = []
        # Set from a pool thread; read without a lock because a stale read costs at most
        # one more chunk, which fails the same way.
        self._stopped = False
        self.whole_call_failures: set[str] = set()

    def submit(self, chunk: list[str], *, inline: bool = False) -> None:
        """Send `chunk` on the shared pool, or `inline` in the caller's thread (for the
        operation's last chunk, where a thread hand-off would only add latency)."""
        if self._slots is None and not inline:
            self._slots = threading.BoundedSemaphore(self._client._max_concurrency)
        if self._slots is not None:
            self._slots.acquire()
        if self._stopped:
            self._release_slot()
            return
        if not inline:
            future = self._client._executor.submit(
                self._client._send_chunk, self._operation, self._sender, chunk, self._deadline
            )
            future.add_done_callback(self._pooled_chunk_done)
            self._futures.append(future)
            return
        try:
            self._sent_inline.append(self._client._send_chunk(self._operation, self._sender, chunk, self._deadline))
        except Exception as error:  # reported by wait(), like a pooled chunk's
            self._sent_inline.append(error)
        finally:
            self._release_slot()

    def _pooled_chunk_done(self, future: Future[_ChunkAnswer]) -> None:
        if future.exception() is not None:
            # An authentication or bad-request failure will hit every chunk alike.
            self._stopped = True
        self._release_slot()

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def wait(self, *, raise_when_nothing_answered: bool) -> None:
        """Collect every chunk's answer; raise if the operation as a whole failed."""
        first_error: BaseException | None = None
        transient: list[_ChunkAnswer] = []
        any_answered = False
        outcomes = [future.exception() or future.result() for future in self._futures] + self._sent_inline
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                first_error = first_error or outcome
                continue
            self._answers.update(outcome.results)
            if outcome.transient_failure:
                transient.append(outcome)
                self.whole_call_failures.update(outcome.results)
            else:
                any_answered = True
        if first_error is not None:
            raise first_error
        if raise_when_nothing_answered and transient and not any_answered:
            raise _transient_error(transient)


def _transient_error(failures: list[_ChunkAnswer]) -> AcsThrottledError | AcsUnavailableError:
    retry_afters = [f.retry_after for f in failures if f.retry_after is not None]
    retry_after = max(retry_afters) if retry_afters else None
    if all(f.status_code == 429 for f in failures):
        return AcsThrottledError(
            "ACS throttled every call until retries ran out", status_code=429, retry_after=retry_after
        )
    statuses = {f.status_code for f in failures if f.status_code is not None}
    status = max(statuses) if statuses else None
    return AcsUnavailableError(
        "ACS was unavailable for every call until retries ran out", status_code=status, retry_after=retry_after
    )


def _whole_call_failure(
    chunk: list[str], status: int | None, retry_after: float | None, message: str
) -> _ChunkAnswer:
    results = {
        to: RecipientResult(to=to, outcome=RecipientOutcome.FAILED, status_code=status, error_message=message)
        for to in chunk
    }
    return _ChunkAnswer(results=results, transient_failure=True, retry_after=retry_after, status_code=status)


def _request_body(sender: str, chunk: list[str]) -> bytes:
    payload = {"from": sender, "recipients": [{"to": to} for to in chunk]}
    try:
        return orjson.dumps(payload)
    except TypeError:  # a lone surrogate, which only the json module's escapes can carry
        return json.dumps(payload, separators=(",", ":")).encode("ascii")


def _parse_recipients(operation: Operation, chunk: list[str], content: bytes) -> dict[str, RecipientResult]:
    try:
        items = orjson.loads(content)["value"]
    except (ValueError, KeyError, TypeError):
        items = []
    results: dict[str, RecipientResult] = {}
    asked = set(chunk)
    reports_opt_out = operation is Operation.CHECK
    for item in items if isinstance(items, list) else ():
        to = item.get("to") if isinstance(item, dict) else None
        if isinstance(to, str) and to in asked:
            results[to] = _recipient_result(to, item, reports_opt_out)
    if len(results) < len(asked):
        for to in chunk:
            if to not in results:
                # Treated as transient: a later round (or redelivery) asks again.
                results[to] = RecipientResult(to, RecipientOutcome.FAILED, 502,
                                              "ACS's answer did not mention this recipient")
    return results


def _recipient_result(to: str, item: dict[str, Any], reports_opt_out: bool) -> RecipientResult:
    status = item.get("httpStatusCode")
    if not isinstance(status, int):
        status = 502
    if 200 <= status < 300:
        if not reports_opt_out:
            return RecipientResult(to, RecipientOutcome.SUCCEEDED, status)
        opted_out = item.get("isOptedOut")
        if isinstance(opted_out, bool):
            return RecipientResult(to, RecipientOutcome.SUCCEEDED, status, is_opted_out=opted_out)
        return RecipientResult(to, RecipientOutcome.FAILED, 502, "ACS's answer lacked isOptedOut")
    message = item.get("errorMessage")
    outcome = RecipientOutcome.FAILED if status in TRANSIENT_STATUS_CODES or status >= 500 else RecipientOutcome.REJECTED
    return RecipientResult(to, outcome, status, message if isinstance(message, str) else None)


def _error_text(text: str) -> str:
    """ACS's own error message, from either of its two error shapes, kept short."""
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('code', '')}: {error.get('message', '')}"[:300]
        if "title" in body:
            return f"{body.get('title')} {json.dumps(body.get('errors', {}))}"[:300]
    return text[:200]


def _retry_after_seconds(headers: Any) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None
