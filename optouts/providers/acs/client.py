"""The ACS SMS opt-out client: add, remove and check any number of recipients.

Built like the official Azure SDK clients: an azure-core `PipelineClient` whose
policies do retries, authentication and logging. It is the ACS `Provider`
(optouts.providers.base): the shared fan-out (optouts.providers.fanout) splits recipients
into chunks of at most 100 and sends them concurrently, each distinct recipient once,
re-tries the recipients ACS answered with a transient per-recipient error, and answers one
result per input recipient in input order; this module makes the one REST call per chunk.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import orjson
from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    HTTPPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.rest import HttpRequest, HttpResponse

from optouts.domain.operations import Operation
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
from optouts.providers.acs.observability import UpstreamAttemptPolicy, UpstreamCallPolicy
from optouts.providers.acs.policies import DEADLINE_OPTION, DeadlineRetryPolicy, HmacSigningPolicy
from optouts.providers.acs.settings import DEFAULT_API_VERSION
from optouts.providers.acs.transport import KeepAliveTransport
from optouts.providers.base import RecipientOutcome, RecipientResult
from optouts.providers.fanout import ChunkAnswer, FanOut

ACS_SCOPE = "https://communication.azure.com//.default"
MAX_RECIPIENTS_PER_CALL = 100
TRANSIENT_STATUS_CODES = frozenset({408, 429, 500, 502, 503, 504})
SDK_MONIKER = "sms-optout-gateway/0.1.0"
#: Per-number error codes in answers (contract): a final refusal, and the two transient failures.
REJECTED_CODE = "RejectedByAcs"
THROTTLED_CODE = "AcsThrottled"
UNAVAILABLE_CODE = "AcsUnavailable"
#: A per-recipient failure ACS gave no message for.
NO_DETAILS = "no details from ACS"

_logger = logging.getLogger(__name__)
_E = TypeVar("_E", bound=OptOutsError)


class OptOutsClient:
    """Client for `POST {endpoint}/sms/optouts:add|remove|check`.

    One instance is meant to live for the whole process: it owns a connection pool
    and a thread pool, and is safe to use from many threads at once.
    """

    #: The provider's name in the audit trail and metrics.
    name = "acs"

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
        self._time_budget = time_budget
        self._read_timeout = read_timeout
        self._is_bearer = not hasattr(credential, "get_key")
        self._enforce_https = not allow_insecure_bearer
        if self._is_bearer and self._enforce_https and not self._endpoint.lower().startswith("https://"):
            raise ValueError("bearer tokens are only sent over https unless allow_insecure_bearer=True (local use)")

        auth_policy: HTTPPolicy[HttpRequest, HttpResponse]
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
            UpstreamCallPolicy(),
            retry_policy,
            auth_policy,
            UpstreamAttemptPolicy(),
            HttpLoggingPolicy(**kwargs),
        ]
        transport = kwargs.pop("transport", None) or KeepAliveTransport(
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
            pool_size=4 * max_concurrency,
        )
        self._pipeline_client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            base_url=self._endpoint, policies=policies, transport=transport
        )
        self._fanout = FanOut(
            self._send_chunk,
            chunk_size=MAX_RECIPIENTS_PER_CALL,
            max_concurrency=max_concurrency,
            all_failed=self._all_failed,
            retry_rounds=recipient_retry_rounds,
            retry_backoff=recipient_retry_backoff,
            thread_name_prefix="optouts-acs",
        )

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs: Any) -> OptOutsClient:
        endpoint, access_key = parse_connection_string(connection_string)
        return cls(endpoint, StaticAccessKey(access_key), **kwargs)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def api_version(self) -> str:
        return self._api_version

    def add(
        self, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        return self._run(Operation.ADD, sender, recipients, time_budget)

    def remove(
        self, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        return self._run(Operation.REMOVE, sender, recipients, time_budget)

    def check(
        self, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        return self._run(Operation.CHECK, sender, recipients, time_budget)

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        return self._run(operation, sender, recipients, time_budget)

    def close(self) -> None:
        self._fanout.close()
        self._pipeline_client.close()

    def __enter__(self) -> OptOutsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one operation ---------------------------------------------------------------

    def _run(
        self, operation: Operation, sender: str, recipients: Iterable[str], time_budget: float | None
    ) -> list[RecipientResult]:
        deadline = time.monotonic() + (self._time_budget if time_budget is None else time_budget)
        return self._fanout.run(operation, sender, recipients, deadline=deadline)

    def _all_failed(self, failures: Sequence[ChunkAnswer]) -> AcsThrottledError | AcsUnavailableError:
        return self._located(_transient_error(failures))

    def _located(self, error: _E) -> _E:
        """`error`, naming this client's ACS resource for log lines (never for answers)."""
        error.where = f"ACS at {urlsplit(self._endpoint).hostname}"
        return error

    # -- one chunk -------------------------------------------------------------------

    def _send_chunk(self, operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
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
            return ChunkAnswer(results=_parse_recipients(operation, chunk, response.content))
        error_text = _error_text(response.text())
        if status in (401, 403):
            raise self._located(
                AcsAuthenticationError(f"ACS rejected the gateway's credentials ({status}): {error_text}")
            )
        retry_after = _retry_after_seconds(response.headers)
        if status in TRANSIENT_STATUS_CODES:
            return _whole_call_failure(chunk, status, retry_after, f"ACS answered {status}: {error_text}")
        raise self._located(AcsBadRequestError(f"ACS rejected the call ({status}): {error_text}"))


def _transient_error(failures: Sequence[ChunkAnswer]) -> AcsThrottledError | AcsUnavailableError:
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
) -> ChunkAnswer:
    return ChunkAnswer.whole_call_failure(chunk, status_code=status, retry_after=retry_after, message=message,
                                          error_code=_transient_code(status))


def _transient_code(status: int | None) -> str:
    return THROTTLED_CODE if status == 429 else UNAVAILABLE_CODE


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
                                              "ACS's answer did not mention this recipient",
                                              error_code=UNAVAILABLE_CODE)
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
        return RecipientResult(to, RecipientOutcome.FAILED, 502, "ACS's answer lacked isOptedOut",
                               error_code=UNAVAILABLE_CODE)
    message = item.get("errorMessage")
    if status in TRANSIENT_STATUS_CODES or status >= 500:
        outcome, code = RecipientOutcome.FAILED, _transient_code(status)
    else:
        outcome, code = RecipientOutcome.REJECTED, REJECTED_CODE
    text = message if isinstance(message, str) and message else NO_DETAILS
    return RecipientResult(to, outcome, status, text, error_code=code)


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
