"""AWS End User Messaging SMS (`pinpoint-sms-voice-v2`) as an opt-out provider, through boto3.

Semantics, mapped onto the provider interface:

- add → PutOptedOutNumber, one call per number.
- remove → DeleteOptedOutNumber, one call per number. A number that is not on the list
  (ResourceNotFoundException for the opted-out-number) is `succeeded`: the desired state
  holds. The 30-day rule ("each destination phone number can only be deleted once every
  30 days") is `failed` with code AwsRemovalTooSoon.
- check → DescribeOptedOutNumbers with up to 5 numbers per call. A number absent from the
  answer, or named by a ResourceNotFoundException for an opted-out-number, is not opted
  out (the call is repeated for the rest of its group).
- A ValidationException for a number → rejected with status 400 (the service's `invalid`).
  AccessDenied and the authentication errors → `ProviderAuthenticationError`; a missing
  opt-out list → `ProviderRejectedError`; both stop the operation (502 with a code).
- ThrottlingException is retried by botocore (adaptive mode); a number still throttled
  is `failed` with AwsThrottled, and when every number failed transiently the whole call
  raises `ProviderThrottledError`/`ProviderUnavailableError` (503 + Retry-After).

Each action is paced below its quota by a client-side rate limiter (`ratelimit.py`). An
operation whose calls cannot all start within its time budget at that pace is refused
before anything is sent (`RateBudgetExceededError`, 413: use the queue).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
from azure.core.credentials import TokenCredential
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from optouts.domain.logtext import log_safe
from optouts.providers.aws.credentials import botocore_session
from optouts.providers.aws.errors import (
    THROTTLED,
    UNAVAILABLE,
    UPSTREAM,
    AwsAuthenticationError,
    AwsCredentialsUnavailableError,
    AwsRejectedError,
    AwsThrottledError,
    AwsUnavailableError,
    RateBudgetExceededError,
)
from optouts.providers.aws.ratelimit import RateLimits
from optouts.providers.aws.settings import DELETE, DESCRIBE, DESCRIBE_PHONE_NUMBERS, PUT, AwsSettings
from optouts.providers.base import (
    Operation,
    OptedOutEntry,
    OptOutPage,
    ProviderError,
    ProviderInvalidContinuationError,
    RecipientOutcome,
    RecipientResult,
)

_logger = logging.getLogger(__name__)

SERVICE_NAME = "pinpoint-sms-voice-v2"
USER_AGENT = "sms-optout-gateway/0.1.0"
MAX_NUMBERS_PER_CHECK = 5
MAX_PAGE_SIZE = 100
DEFAULT_TIME_BUDGET_SECONDS = 60.0
REMOVAL_TOO_SOON = "AwsRemovalTooSoon"
INVALID_NUMBER = "AwsInvalidNumber"
QUOTA_EXCEEDED = "AwsQuotaExceeded"
REQUEST_FAILED = "AwsRequestFailed"
TRANSIENT_CODES = frozenset({THROTTLED, UNAVAILABLE})
_MESSAGE_LIMIT = 300

#: Errors of AWS's authentication and authorization layer: the gateway's credentials or
#: its IAM policy are wrong, for every number alike.
_AUTH_ERRORS = frozenset({
    "AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidSignatureException",
    "SignatureDoesNotMatch", "IncompleteSignatureException", "MissingAuthenticationTokenException",
    "InvalidClientTokenId", "ExpiredTokenException", "ExpiredToken", "NotAuthorized",
})
_ACTIONS = {Operation.ADD: PUT, Operation.REMOVE: DELETE, Operation.CHECK: DESCRIBE}


class InvalidNextTokenError(ProviderInvalidContinuationError):
    """AWS refused the caller's continuation token (a client error, 400)."""

    upstream = UPSTREAM


class AwsProvider:
    """Thread-safe; one instance per process (it owns the boto3 client, the rate limiters
    and a small thread pool)."""

    name = "aws"

    def __init__(
        self,
        settings: AwsSettings,
        client: Any,
        *,
        limits: RateLimits | None = None,
        default_time_budget: float = DEFAULT_TIME_BUDGET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._client = client
        self._limits = limits or RateLimits(settings.rates)
        self._default_time_budget = default_time_budget
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="optouts-aws")
        self._lists: dict[str, tuple[str, float]] = {}
        self._lists_lock = threading.Lock()
        #: Learned from the first answer that shows it: whether AWS answers a checked number that
        #: is not on the list with an error (one more call per such number) rather than leaving it out.
        self._absent_costs_a_call = False

    @classmethod
    def from_settings(
        cls,
        settings: AwsSettings,
        *,
        token_credential: TokenCredential | None = None,
        read_secret: Callable[[str], str] | None = None,
        **options: Any,
    ) -> AwsProvider:
        # botocore's DEBUG records carry request bodies (phone numbers) and signed headers
        # (session tokens): never let them through, whatever the host's log level.
        for noisy in ("botocore", "boto3"):
            if logging.getLogger(noisy).getEffectiveLevel() < logging.INFO:
                logging.getLogger(noisy).setLevel(logging.INFO)
        session = boto3.session.Session(
            botocore_session=botocore_session(settings, token_credential=token_credential, read_secret=read_secret))
        config = Config(
            retries={"mode": "adaptive", "total_max_attempts": settings.max_attempts},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=max(10, 2 * settings.max_concurrency),
            user_agent_extra=USER_AGENT,
        )
        client = session.client(SERVICE_NAME, region_name=settings.region, endpoint_url=settings.endpoint_url,
                                config=config)
        return cls(settings, client, **options)

    @property
    def settings(self) -> AwsSettings:
        return self._settings

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # -- the provider interface ----------------------------------------------------------------

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        budget = self._default_time_budget if time_budget is None else time_budget
        deadline = self._clock() + budget
        order = list(dict.fromkeys(recipients))
        if not order:
            return []
        self._refuse_if_too_slow(operation, sender, len(order), budget)
        list_name = self.opt_out_list(sender, deadline=deadline)
        if operation is Operation.CHECK:
            groups = [order[i:i + MAX_NUMBERS_PER_CHECK] for i in range(0, len(order), MAX_NUMBERS_PER_CHECK)]
            answers = self._fan_out(groups, lambda group: self._check_group(list_name, group, deadline))
        else:
            action = _ACTIONS[operation]
            answers = self._fan_out([[n] for n in order],
                                    lambda one: [self._write(action, list_name, one[0], deadline)])
        by_number = {result.to: result for result in answers}
        results = [by_number[number] for number in order]
        _raise_if_all_transient(results)
        return results

    def estimate_seconds(self, operation: Operation, count: int) -> float:
        """The least time `count` distinct numbers take at the configured rate."""
        if operation is Operation.CHECK and not self._absent_costs_a_call:
            calls = math.ceil(count / MAX_NUMBERS_PER_CHECK)
        else:
            # One call per number (and, for checks where AWS names each absent number in an error,
            # up to one per number: the worst case, as most checked numbers are usually not on the list).
            calls = count
        return self._limits[_ACTIONS[operation]].estimate(calls)

    # -- listing (which ACS cannot do) -------------------------------------------------------------

    def list_opted_out(
        self,
        sender: str,
        *,
        next_token: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        end_user_opted_out: bool | None = None,
        time_budget: float | None = None,
    ) -> OptOutPage:
        """One page of the sender's opt-out list (DescribeOptedOutNumbers paging)."""
        deadline = self._clock() + (self._default_time_budget if time_budget is None else time_budget)
        list_name = self.opt_out_list(sender, deadline=deadline)
        params: dict[str, Any] = {"OptOutListName": list_name, "MaxResults": max(1, min(page_size, MAX_PAGE_SIZE))}
        if next_token:
            params["NextToken"] = next_token
        if end_user_opted_out is not None:
            params["Filters"] = [{"Name": "end-user-opted-out", "Values": [str(end_user_opted_out).lower()]}]
        limiter = self._limits[DESCRIBE]
        if not limiter.acquire(deadline):
            # Busy with other calls of the same action: worth retrying shortly.
            raise AwsThrottledError(f"no {DESCRIBE} call could start within the time budget at the configured "
                                    "rate", retry_after=max(1.0, limiter.estimate(1)))
        try:
            answer = self._client.describe_opted_out_numbers(**params)
        except ClientError as error:
            code, _, message = _error_parts(error)
            if code == "ValidationException" and error.response.get("Reason") == "INVALID_NEXT_TOKEN":
                raise InvalidNextTokenError("AWS refused the continuation token") from None
            self._raise_fatal(error, DESCRIBE, list_name)
            if code == "ThrottlingException":
                raise AwsThrottledError("AWS throttled the listing after retries") from None
            raise AwsUnavailableError(f"AWS failed the listing ({code})") from None
        except BotoCoreError as error:
            self._raise_credentials(error)
            raise AwsUnavailableError(f"AWS could not be reached ({type(error).__name__})") from None
        entries = [OptedOutEntry(item["OptedOutNumber"], _details(item, list_name))
                   for item in answer.get("OptedOutNumbers") or []]
        return OptOutPage(entries, answer.get("NextToken") or None)

    # -- opt-out list of a sender ----------------------------------------------------------------

    def opt_out_list(self, sender: str, *, deadline: float | None = None) -> str:
        """The sender's opt-out list: configured, or looked up from the number (cached)."""
        if sender not in self._settings.senders:
            raise AwsRejectedError(f"sender {log_safe(sender, 40)} is not configured for AWS")
        configured = self._settings.senders[sender]
        if configured is not None:
            return configured
        with self._lists_lock:
            cached = self._lists.get(sender)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
            found = self._look_up_list(sender, deadline)
            self._lists[sender] = (found, self._clock() + self._settings.list_cache_seconds)
            return found

    def _look_up_list(self, sender: str, deadline: float | None) -> str:
        params: dict[str, Any] = {"MaxResults": MAX_PAGE_SIZE}
        if not sender.startswith("+"):
            params["PhoneNumberIds"] = [sender]
            params.pop("MaxResults")
        while True:
            limiter = self._limits[DESCRIBE_PHONE_NUMBERS]
            if not limiter.acquire(deadline):
                raise RateBudgetExceededError(
                    f"the opt-out list of the sender could not be looked up within the time budget at the "
                    f"configured rate for {DESCRIBE_PHONE_NUMBERS}", estimated_seconds=limiter.estimate(1),
                    budget_seconds=max(0.0, (deadline or 0.0) - self._clock()))
            try:
                answer = self._client.describe_phone_numbers(**params)
            except ClientError as error:
                code, _, _ = _error_parts(error)
                if code == "ResourceNotFoundException":
                    break
                self._raise_fatal(error, DESCRIBE_PHONE_NUMBERS, None)
                if code == "ThrottlingException":
                    raise AwsThrottledError("AWS throttled the phone number look-up") from None
                raise AwsUnavailableError(f"AWS failed the phone number look-up ({code})") from None
            except BotoCoreError as error:
                self._raise_credentials(error)
                raise AwsUnavailableError(f"AWS could not be reached ({type(error).__name__})") from None
            for phone in answer.get("PhoneNumbers") or []:
                if sender in (phone.get("PhoneNumber"), phone.get("PhoneNumberId"), phone.get("PhoneNumberArn")):
                    list_name = phone.get("OptOutListName")
                    if isinstance(list_name, str) and list_name:
                        return list_name
            token = answer.get("NextToken")
            if not token or "PhoneNumberIds" in params:
                break
            params["NextToken"] = token
        raise AwsRejectedError(
            f"sender {log_safe(sender, 40)} is not an origination number of the AWS account in "
            f"{self._settings.region}; configure its opt-out list as sender=optOutListName")

    # -- operations ------------------------------------------------------------------------------

    def _refuse_if_too_slow(self, operation: Operation, sender: str, count: int, budget: float) -> None:
        estimate = self.estimate_seconds(operation, count)
        with self._lists_lock:
            known = self._settings.senders.get(sender) is not None or sender in self._lists
        if not known:
            estimate += self._limits[DESCRIBE_PHONE_NUMBERS].estimate(1)
        if estimate > budget:
            action = _ACTIONS[operation]
            raise RateBudgetExceededError(
                f"{count} numbers take at least {estimate:.0f} s at the configured "
                f"{self._limits.rate(action):g} requests per second for {action}, more than this request's "
                f"{budget:.0f} s budget; send the request through the queue, which has a longer budget, "
                "or split it",
                estimated_seconds=estimate, budget_seconds=budget)

    def _fan_out(self, groups: list[list[str]], work: Callable[[list[str]], list[RecipientResult]]
                 ) -> list[RecipientResult]:
        stop = threading.Event()

        def guarded(group: list[str]) -> list[RecipientResult]:
            if stop.is_set():
                return []
            try:
                return work(group)
            except ProviderError:
                # About the gateway's access or the list, not a number: the other numbers need not try.
                stop.set()
                raise

        futures = [self._executor.submit(guarded, group) for group in groups]
        results: list[RecipientResult] = []
        fatal: ProviderError | None = None
        for future in futures:
            try:
                results.extend(future.result())
            except ProviderError as error:
                fatal = fatal or error
        if fatal is not None:
            raise fatal
        return results

    def _write(self, action: str, list_name: str, number: str, deadline: float) -> RecipientResult:
        if not self._limits[action].acquire(deadline):
            return _not_sent(number)
        call = self._client.put_opted_out_number if action == PUT else self._client.delete_opted_out_number
        try:
            answer = call(OptOutListName=list_name, OptedOutNumber=number)
        except ClientError as error:
            return self._write_error(action, list_name, number, error)
        except BotoCoreError as error:
            return self._transport_error(number, error)
        details = _details(answer, list_name)
        if action == DELETE and "optedOutTimestamp" in details:
            # DeleteOptedOutNumber's OptedOutTimestamp is "the time that the number was removed at".
            details["removedTimestamp"] = details.pop("optedOutTimestamp")
        return RecipientResult(number, RecipientOutcome.SUCCEEDED, 200, details=details)

    def _write_error(self, action: str, list_name: str, number: str, error: ClientError) -> RecipientResult:
        code, status, message = _error_parts(error)
        if code == "ResourceNotFoundException" and _names_number(error, number):
            if action == DELETE:
                # Not on the list: the desired state holds.
                return RecipientResult(number, RecipientOutcome.SUCCEEDED, 200,
                                       details={"optOutList": list_name, "wasOptedOut": False})
        self._raise_fatal(error, action, list_name)
        reason = error.response.get("Reason")
        if action == DELETE and (reason == "PHONE_NUMBER_CANNOT_BE_OPTED_IN" or code == "ConflictException"):
            # Final, not transient (retrying before the 30 days are over cannot help), and not the
            # number's fault: reported as a conflict with the number's state.
            return RecipientResult(number, RecipientOutcome.REJECTED, 409, _removal_too_soon(message), None,
                                   REMOVAL_TOO_SOON, {"optOutList": list_name})
        return _per_number_error(number, code, status, message)

    def _check_group(self, list_name: str, group: list[str], deadline: float) -> list[RecipientResult]:
        results: list[RecipientResult] = []
        work = [group]
        while work:
            pending = work.pop(0)
            if not self._limits[DESCRIBE].acquire(deadline):
                results.extend(_not_sent(number) for queued in [pending, *work] for number in queued)
                return results
            try:
                answer = self._client.describe_opted_out_numbers(OptOutListName=list_name, OptedOutNumbers=pending)
            except ClientError as error:
                code, status, message = _error_parts(error)
                if code == "ResourceNotFoundException" and error.response.get("ResourceType") != "opt-out-list":
                    self._absent_costs_a_call = True
                    absent = error.response.get("ResourceId")
                    if absent in pending:
                        results.append(_not_opted_out(absent, list_name))
                        rest = [number for number in pending if number != absent]
                        if rest:
                            work.insert(0, rest)
                        continue
                    if len(pending) == 1:
                        results.append(_not_opted_out(pending[0], list_name))
                        continue
                    work[:0] = [[number] for number in pending]
                    continue
                self._raise_fatal(error, DESCRIBE, list_name)
                if code == "ValidationException" and len(pending) > 1:
                    # Which number was refused? Ask for each alone.
                    work[:0] = [[number] for number in pending]
                    continue
                results.extend(_per_number_error(number, code, status, message) for number in pending)
                continue
            except BotoCoreError as error:
                results.extend(self._transport_error(number, error) for number in pending)
                continue
            found = {item["OptedOutNumber"]: item for item in answer.get("OptedOutNumbers") or []}
            for number in pending:
                item = found.get(number)
                if item is None:
                    results.append(_not_opted_out(number, list_name))
                else:
                    results.append(RecipientResult(number, RecipientOutcome.SUCCEEDED, 200, is_opted_out=True,
                                                   details=_details(item, list_name)))
        return results

    # -- errors ----------------------------------------------------------------------------------

    def _raise_fatal(self, error: ClientError, action: str, list_name: str | None) -> None:
        """Raise when the error is about the gateway's access or the list, not a number."""
        code, _, _ = _error_parts(error)
        if code in _AUTH_ERRORS:
            _logger.error("AWS refused the gateway's credentials or IAM policy for %s (%s)", action, code)
            raise AwsAuthenticationError(
                f"AWS refused the gateway's credentials or its IAM policy does not allow sms-voice:{action} "
                f"({code}); an operator must check the role and its policy")
        if code == "ResourceNotFoundException" and error.response.get("ResourceType") == "opt-out-list":
            _logger.error("AWS has no opt-out list %s in %s", log_safe(list_name, 80), self._settings.region)
            raise AwsRejectedError(
                f"AWS has no opt-out list {list_name} in {self._settings.region}; check OPTOUT_AWS_SENDERS")
        if code == "ValidationException":
            fields = {str(f.get("Name")) for f in error.response.get("Fields") or [] if isinstance(f, dict)}
            if any(name.startswith("OptOutListName") for name in fields):
                raise AwsRejectedError(f"AWS refused the opt-out list name {list_name}")

    def _raise_credentials(self, error: BotoCoreError) -> None:
        if isinstance(error, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
            raise AwsCredentialsUnavailableError(f"no AWS credentials ({type(error).__name__})")

    def _transport_error(self, number: str, error: BotoCoreError) -> RecipientResult:
        self._raise_credentials(error)
        return RecipientResult(number, RecipientOutcome.FAILED, 503,
                               f"AWS could not be reached ({type(error).__name__})", None, UNAVAILABLE)


def _per_number_error(number: str, code: str, status: int | None, message: str) -> RecipientResult:
    """Status codes say what kind of failure it was, as the service reads them: 400 with
    REJECTED is the number's fault (`invalid`); FAILED is transient (429 throttled, 503
    unavailable); other REJECTED statuses are final failures (`failed`, not retried)."""
    if code == "ValidationException":
        return RecipientResult(number, RecipientOutcome.REJECTED, 400, message or "AWS refused the number",
                               None, INVALID_NUMBER)
    if code == "ThrottlingException":
        return RecipientResult(number, RecipientOutcome.FAILED, 429,
                               "AWS is still throttling after retries", None, THROTTLED)
    if code in ("InternalServerException", "InternalFailure", "ServiceUnavailable") or (status or 0) >= 500:
        return RecipientResult(number, RecipientOutcome.FAILED, 503,
                               "AWS failed the call after retries", None, UNAVAILABLE)
    if code == "ServiceQuotaExceededException":
        return RecipientResult(number, RecipientOutcome.REJECTED, 403, message or "a service quota is exceeded",
                               None, QUOTA_EXCEEDED)
    return RecipientResult(number, RecipientOutcome.REJECTED, 502, f"{code}: {message}"[:_MESSAGE_LIMIT],
                           None, REQUEST_FAILED)


def _removal_too_soon(message: str) -> str:
    return ("AWS allows a number to be removed from an opt-out list only once every 30 days; it was removed less "
            f"than 30 days ago ({message})")[:_MESSAGE_LIMIT]


def _not_sent(number: str) -> RecipientResult:
    return RecipientResult(number, RecipientOutcome.FAILED, 429,
                           "not sent: the time budget ran out at the configured request rate", None, THROTTLED)


def _not_opted_out(number: str, list_name: str) -> RecipientResult:
    return RecipientResult(number, RecipientOutcome.SUCCEEDED, 200, is_opted_out=False,
                           details={"optOutList": list_name})


def _details(item: Mapping[str, Any], list_name: str) -> dict[str, object]:
    details: dict[str, object] = {"optOutList": list_name}
    if item.get("OptedOutTimestamp") is not None:
        details["optedOutTimestamp"] = _timestamp(item["OptedOutTimestamp"])
    if item.get("EndUserOptedOut") is not None:
        details["endUserOptedOut"] = bool(item["EndUserOptedOut"])
    return details


def _timestamp(value: Any) -> str | None:
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return None


def _names_number(error: ClientError, number: str) -> bool:
    resource_type = error.response.get("ResourceType")
    return resource_type == "opted-out-number" or (resource_type is None and error.response.get("ResourceId") == number)


def _error_parts(error: ClientError) -> tuple[str, int | None, str]:
    details = error.response.get("Error", {})
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = str(details.get("Message") or "")
    message = "".join(ch if ch.isprintable() else " " for ch in message)[:_MESSAGE_LIMIT]
    return str(details.get("Code") or "Unknown"), status, message


def _raise_if_all_transient(results: list[RecipientResult]) -> None:
    if not results or any(r.error_code not in TRANSIENT_CODES or r.outcome is not RecipientOutcome.FAILED
                          for r in results):
        return
    if any(r.error_code == THROTTLED for r in results):
        raise AwsThrottledError("AWS throttled every call until retries or the time budget ran out")
    raise AwsUnavailableError("AWS failed every call until retries ran out")


__all__ = ["AwsProvider", "InvalidNextTokenError"]
