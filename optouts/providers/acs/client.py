"""The ACS SMS opt-out client: add, remove and check any number of recipients.

Built like the official Azure SDK clients: an azure-core `Pipeline` whose
policies do retries, authentication and logging. It is the ACS `Provider`
(optouts.providers.base): the shared fan-out (optouts.providers.fanout) splits recipients
into chunks of at most 100 and sends them concurrently, each distinct recipient once,
re-tries the recipients ACS answered with a transient per-recipient error, and answers one
result per input recipient in input order; this module makes the one REST call per chunk.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import orjson
import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    HTTPPolicy,
    RequestIdPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from optouts.domain.logtext import log_safe
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
    InsecureEndpointError,
    OptOutsError,
)
from optouts.providers.acs.observability import UpstreamAttemptPolicy, UpstreamCallPolicy
from optouts.providers.acs.policies import (
    ANSWER_BODY,
    DEADLINE_OPTION,
    RETRY_AFTER_HEADERS,
    BoundedAnswerPolicy,
    DeadlineRetryPolicy,
    HmacSigningPolicy,
    RetryAfterPolicy,
    parse_retry_after,
)
from optouts.providers.acs.settings import DEFAULT_API_VERSION
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
#: An answer for 100 recipients is about 10 KB; anything larger than this is not one, and is not read.
MAX_ANSWER_BYTES = 1_048_576
#: Longest upstream text (an error message) carried into a result, an error or a log line.
MAX_UPSTREAM_TEXT = 300

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
        allow_insecure_http: bool = False,
        retry_total: int = 4,
        retry_backoff_factor: float = 0.5,
        retry_backoff_max: float = 8.0,
        connection_timeout: float = 10.0,
        read_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if not endpoint.lower().startswith(("https://", "http://")):
            raise ValueError("endpoint must start with https:// or http://")
        if not (endpoint.lower().startswith("https://") or allow_insecure_http or _is_loopback(endpoint)):
            raise InsecureEndpointError(
                "the ACS endpoint is plain http:// and not loopback: opt-out bodies are personal data, "
                "so they only travel over https:// (set ACS_ALLOW_INSECURE_HTTP=true to allow it)"
            )
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
        policies: list[HTTPPolicy[Any, Any] | SansIOHTTPPolicy[Any, Any]] = [
            RequestIdPolicy(**kwargs),
            HeadersPolicy(**kwargs),
            UserAgentPolicy(sdk_moniker=SDK_MONIKER, **kwargs),
            UpstreamCallPolicy(),
            retry_policy,
            RetryAfterPolicy(),
            auth_policy,
            UpstreamAttemptPolicy(),
            HttpLoggingPolicy(**kwargs),
            BoundedAnswerPolicy(MAX_ANSWER_BYTES),
        ]
        # Every pool thread, plus the callers' own threads sending an operation's last chunk inline.
        pool_size = 4 * max_concurrency
        transport = kwargs.pop("transport", None) or _requests_transport(pool_size, connection_timeout, read_timeout)
        self._pipeline: Pipeline[HttpRequest, HttpResponse] = Pipeline(transport=transport, policies=policies)
        self._fanout = FanOut(
            self._send_chunk,
            chunk_size=MAX_RECIPIENTS_PER_CALL,
            max_concurrency=max_concurrency,
            all_failed=self._all_failed,
            retry_rounds=recipient_retry_rounds,
            retry_backoff=recipient_retry_backoff,
            pool_size=pool_size,
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
        self._pipeline.__exit__()

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
        """`error`, naming this client's ACS resource for log lines (never for answers): which
        resource failed transiently is what an operator looks for."""
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
            pipeline_response = self._pipeline.run(request, **options)
        except OptOutsError:
            raise
        except ClientAuthenticationError as error:
            # Raised by a token credential (managed identity, Entra ID) before anything was sent.
            raise CredentialUnavailableError(f"could not get a token for ACS ({type(error).__name__})") from None
        except AzureError as error:
            # Connection errors and timeouts that outlived the retry policy.
            return _whole_call_failure(chunk, None, None, f"no answer from ACS ({type(error).__name__})")

        response = pipeline_response.http_response
        status = response.status_code
        content: bytes | None = pipeline_response.context.get(ANSWER_BODY)
        if status == 200:
            return ChunkAnswer(results=_parse_recipients(operation, chunk, content))
        error_text = _error_text(content)
        if status in (401, 403):
            raise AcsAuthenticationError(f"ACS rejected the gateway's credentials ({status}): {error_text}")
        retry_after = _retry_after_seconds(response.headers)
        if status in TRANSIENT_STATUS_CODES:
            return _whole_call_failure(chunk, status, retry_after, f"ACS answered {status}: {error_text}")
        raise AcsBadRequestError(f"ACS rejected the call ({status}): {error_text}")


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


def _parse_recipients(operation: Operation, chunk: list[str], content: bytes | None) -> dict[str, RecipientResult]:
    """One result per recipient of `chunk`, whatever ACS answered.

    Entries that are not objects, name a recipient that was not asked, repeat one, or carry
    wrong types are ignored or answered 502; a recipient the answer does not mention is a
    transient 502 (asked again in a later round)."""
    items: object = None
    if content is not None:  # None: over MAX_ANSWER_BYTES, not read
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:  # also what orjson raises past its nesting limit
            body = None
        items = body.get("value") if isinstance(body, dict) else None
    results: dict[str, RecipientResult] = {}
    asked = set(chunk)
    reports_opt_out = operation is Operation.CHECK
    for item in items if isinstance(items, list) else ():
        to = item.get("to") if isinstance(item, dict) else None
        if isinstance(to, str) and to in asked and to not in results:
            results[to] = _recipient_result(to, item, reports_opt_out)
    if len(results) < len(asked):
        for to in chunk:
            if to not in results:
                results[to] = RecipientResult(to, RecipientOutcome.FAILED, 502,
                                              "ACS's answer did not mention this recipient",
                                              error_code=UNAVAILABLE_CODE)
    return results


def _recipient_result(to: str, item: dict[str, Any], reports_opt_out: bool) -> RecipientResult:
    status = item.get("httpStatusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return RecipientResult(to, RecipientOutcome.FAILED, 502, "ACS's answer had no valid httpStatusCode",
                               error_code=UNAVAILABLE_CODE)
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
    text = _upstream_text(message) if isinstance(message, str) and message else NO_DETAILS
    return RecipientResult(to, outcome, status, text, error_code=code)


def _error_text(content: bytes | None) -> str:
    """ACS's own error message, from either of its two error shapes: bounded in size (a huge
    body is not parsed), nesting (orjson stops at 1024 levels, without recursion errors) and
    characters (one log-safe line)."""
    if content is None:
        return f"an error answer over {MAX_ANSWER_BYTES} bytes (not read)"
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return _upstream_text(content.decode("utf-8", "replace"))
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return _upstream_text(f"{_scalar(error.get('code'))}: {_scalar(error.get('message'))}")
        if "title" in body:
            return _upstream_text(f"{_scalar(body.get('title'))} {_field_errors(body.get('errors'))}")
    return _upstream_text(content.decode("utf-8", "replace"))


def _scalar(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else type(value).__name__


def _field_errors(errors: object) -> str:
    """`{"From": ["..."]}` as `From: ...`, reading only the first few fields and messages."""
    if not isinstance(errors, dict):
        return ""
    parts = []
    for name, messages in list(errors.items())[:5]:
        texts = [m for m in messages[:3] if isinstance(m, str)] if isinstance(messages, list) else []
        parts.append(f"{_scalar(name)}: {'; '.join(texts)}")
    return ", ".join(parts)


def _upstream_text(text: str) -> str:
    return log_safe(text, MAX_UPSTREAM_TEXT)


def _retry_after_seconds(headers: Any) -> float | None:
    for name, unit in RETRY_AFTER_HEADERS:
        seconds = parse_retry_after(headers.get(name), unit)
        if seconds is not None:
            return seconds
    return None


def _is_loopback(endpoint: str) -> bool:
    host = (urlsplit(endpoint).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _requests_transport(pool_size: int, connection_timeout: float, read_timeout: float) -> RequestsTransport:
    """azure-core's standard transport on a requests session whose urllib3 pool holds as
    many kept-alive connections per host as the client can have calls in flight.

    Proxies (HTTPS_PROXY, NO_PROXY), CA bundles (REQUESTS_CA_BUNDLE) and TLS come from
    requests and urllib3. Their own retries are off: the pipeline's retry policy decides."""
    session = requests.Session()
    session.trust_env = True
    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=pool_size,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(
        session=session, session_owner=True, connection_timeout=connection_timeout, read_timeout=read_timeout
    )
