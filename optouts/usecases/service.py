"""The use-case: carry out one opt-out command and report every number's outcome.

HTTP and queue functions are thin adapters over `OptOutService.execute`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace

from optouts import telemetry
from optouts.audit.callers import AuditContext
from optouts.audit.trail import AuditTrail, NumberOutcome, OperationIntent
from optouts.domain.commands import OptOutCommand
from optouts.domain.logtext import log_safe
from optouts.domain.phone import (
    InvalidNumber,
    NormalizationResult,
    NormalizedNumber,
    mask,
    normalize,
)
from optouts.domain.problems import Problem
from optouts.domain.reports import NumberError, NumberResult, OperationReport
from optouts.providers.base import (
    ListingProvider,
    OptOutPage,
    Provider,
    ProviderAuthenticationError,
    ProviderCredentialsError,
    ProviderError,
    ProviderInvalidContinuationError,
    ProviderListingNotSupportedError,
    ProviderRejectedError,
    ProviderRequestTooLargeError,
    ProviderTransientError,
    RecipientOutcome,
    RecipientResult,
    provider_name,
)

_logger = logging.getLogger(__name__)

#: When the provider gave no Retry-After, callers are asked to come back after this long.
DEFAULT_RETRY_AFTER_SECONDS = 30
_MASKED_IN_LOGS = 10
#: Per-number codes when a provider gave none (RecipientResult.error_code); ACS always gives one.
REJECTED_CODE = "RejectedByUpstream"
THROTTLED_CODE = "UpstreamThrottled"
UNAVAILABLE_CODE = "UpstreamUnavailable"


class OptOutService:
    def __init__(self, provider: Provider, audit_trail: AuditTrail | None = None) -> None:
        self._provider = provider
        self._audit_trail = audit_trail

    @property
    def provider(self) -> Provider:
        return self._provider

    def execute(
        self, command: OptOutCommand, *, time_budget: float | None = None, audit: AuditContext | None = None
    ) -> OperationReport:
        """Normalize, send the valid numbers upstream, and report one result per input;
        with an `audit` context, journal the operation before the provider is called and its
        outcome after.

        Raises `Problem` (502/503) when the provider refused the gateway or failed every call
        (the answer's code is the error's own, `AcsThrottled`..., a stable contract), and 503
        `AuditUnavailable` when the audit trail could not record the intent (nothing was sent).
        """
        with telemetry.operation_span(command.action.value, mask(command.sender), len(command.phone_numbers)):
            return self._execute(command, time_budget, audit)

    def _execute(
        self, command: OptOutCommand, time_budget: float | None, audit: AuditContext | None
    ) -> OperationReport:
        normalized: list[NormalizationResult] = []
        trail = self._audit_trail
        audited = audit is not None and trail is not None and trail.audits(command.action.value)
        # A trail that does not write (OPTOUT_AUDIT_WRITES=false, no storage) still answers with its
        # receipt, but must not cost the operation a pass over every number before the first chunk.
        journalled = audited and trail is not None and trail.enabled
        intent: OperationIntent | None = None
        valid_numbers: Iterator[str] | list[str]
        if journalled:
            assert trail is not None and audit is not None  # nosec B101 - narrows types
            # Write-ahead: every number is normalized and journalled before any reaches the provider.
            valid_numbers = list(_normalize_streaming(command, normalized))
            intent = trail.begin(command.action.value, command.sender, valid_numbers, audit, command.reason,
                                 invalid_inputs=len(normalized) - len(valid_numbers),
                                 provider=provider_name(self._provider, command.sender))
        else:
            valid_numbers = _normalize_streaming(command, normalized)
        try:
            upstream = self._call_provider(command, valid_numbers, time_budget)
        except Problem as problem:
            if trail is not None:
                trail.fail(intent, problem.code)
            raise

        report = OperationReport(command.action, command.sender, _merge(command, normalized, upstream))
        self._log(report)
        telemetry.record_numbers(command.action.value, report.summary)
        if journalled:
            assert trail is not None  # nosec B101 - narrows types
            answered = time.monotonic()
            report = replace(report, audit=trail.finish(intent, _outcomes(report)))
            telemetry.record_audit_lag(time.monotonic() - answered)
        elif audited:
            assert trail is not None  # nosec B101 - narrows types
            report = replace(report, audit=trail.finish(None, {}))
        return report

    def _call_provider(self, command: OptOutCommand, numbers: Iterator[str] | list[str],
                       time_budget: float | None) -> list[RecipientResult]:
        try:
            return self._provider.run(command.action, command.sender, numbers, time_budget=time_budget)
        except ProviderAuthenticationError as error:
            _logger.error("%s rejected the gateway's credentials for %s: %s",
                          error.where or error.upstream, command.action.value, log_safe(error, 400))
            raise Problem(502, error.code, "Upstream authentication failed",
                          f"{error.upstream} rejected the gateway's credentials or does not "
                          "own the sender; an operator must check the configuration") from None
        except ProviderRejectedError as error:
            _logger.error("%s rejected a %s call as malformed: %s", error.where or error.upstream,
                          command.action.value, log_safe(error, 400))
            raise Problem(502, error.code, "Upstream rejected the request",
                          f"{error.upstream} rejected the gateway's call") from None
        except ProviderCredentialsError as error:
            raise credentials_unavailable(error) from None
        except ProviderRequestTooLargeError as error:
            _logger.warning("%s refused up front: %s", command.action.value, error)
            raise Problem(413, error.code, "Too many numbers for the provider's request rate", str(error)) from None
        except ProviderTransientError as error:
            _logger.warning("%s failed every %s call after retries (%s)", error.where or error.upstream,
                            command.action.value, error.code)
            raise Problem(503, error.code, "Upstream temporarily unavailable",
                          f"{error.upstream} is throttling or unavailable; retry later",
                          retry_after=error.retry_after or DEFAULT_RETRY_AFTER_SECONDS) from None

    def list_opt_outs(self, sender: str, *, page_size: int, next_token: str | None,
                      time_budget: float | None = None) -> OptOutPage:
        """One page of every number on the sender's opt-out list, where its provider can list
        (AWS); 501 where it cannot (ACS)."""
        provider = self._provider
        try:
            if not isinstance(provider, ListingProvider):
                raise ProviderListingNotSupportedError("the provider cannot list")
            return provider.list_opted_out(sender, next_token=next_token, page_size=page_size,
                                           time_budget=time_budget)
        except ProviderListingNotSupportedError as error:
            raise Problem(501, error.code, "Listing not supported for this sender",
                          "this sender's opt-out list is kept by Azure Communication Services, which has no API "
                          "that lists it; check numbers with POST /api/optouts/check instead") from None
        except ProviderInvalidContinuationError as error:
            raise Problem(400, error.code, "Invalid continuation token",
                          "continuationToken must be passed exactly as the previous page's nextLink gave it",
                          errors={"continuationToken": ["is not a token this list gave"]}) from None
        except ProviderAuthenticationError as error:
            _logger.error("%s rejected the gateway's credentials for a listing: %s", error.where or error.upstream,
                          log_safe(error, 400))
            raise Problem(502, error.code, "Upstream authentication failed",
                          f"{error.upstream} rejected the gateway's credentials; an operator must check the "
                          "configuration") from None
        except ProviderRejectedError as error:
            raise Problem(502, error.code, "Upstream rejected the request",
                          f"{error.upstream} rejected the gateway's call") from None
        except ProviderCredentialsError as error:
            raise credentials_unavailable(error) from None
        except ProviderTransientError as error:
            raise Problem(503, error.code, "Upstream temporarily unavailable",
                          f"{error.upstream} is throttling or unavailable; retry later",
                          retry_after=error.retry_after or DEFAULT_RETRY_AFTER_SECONDS) from None
        except ProviderError as error:
            raise Problem(502, error.code, "Upstream failed", f"{error.upstream} failed the listing") from None

    def _log(self, report: OperationReport) -> None:
        summary = report.summary
        _logger.info("opt-out %s for %s: %s", report.action.value, report.sender, summary)
        if summary["failed"]:
            failed = [mask(r.phone_number) for r in report.results if r.status == "failed" and r.phone_number]
            _logger.warning("opt-out %s failed for %d numbers, e.g. %s",
                            report.action.value, summary["failed"], failed[:_MASKED_IN_LOGS])


def _outcomes(report: OperationReport) -> dict[str, NumberOutcome]:
    """Each number's answer from the provider, by E.164 (a number given twice was sent once)."""
    outcomes: dict[str, NumberOutcome] = {}
    for result in report.results:
        if result.phone_number is not None and result.phone_number not in outcomes:
            outcomes[result.phone_number] = NumberOutcome(
                result.status, result.upstream_status, result.error.code if result.error else None, result.opted_out,
                result.details)
    return outcomes


def credentials_unavailable(error: ProviderCredentialsError) -> Problem:
    """The answer when Key Vault or the identity endpoint failed, whether while building
    the client or in the middle of an operation."""
    _logger.error("the gateway could not get its credentials: %s", error)
    return Problem(503, error.code, "Gateway credentials unavailable",
                   f"the gateway could not obtain its credentials for {error.upstream}; retry later",
                   retry_after=DEFAULT_RETRY_AFTER_SECONDS)


def _normalize_streaming(command: OptOutCommand, into: list[NormalizationResult]) -> Iterator[str]:
    """Yield E.164 numbers as they are normalized, so the client can send early chunks
    while later numbers are still being parsed."""
    region = command.region
    for raw in command.phone_numbers:
        result = normalize(raw, region)
        into.append(result)
        if isinstance(result, NormalizedNumber):
            yield result.e164


def _merge(
    command: OptOutCommand, normalized: list[NormalizationResult], upstream: list[RecipientResult]
) -> list[NumberResult]:
    answers = iter(upstream)
    results: list[NumberResult] = []
    for raw, outcome in zip(command.phone_numbers, normalized, strict=True):
        if isinstance(outcome, InvalidNumber):
            results.append(NumberResult(raw, None, "invalid", error=NumberError(outcome.code, outcome.message)))
            continue
        answer = next(answers)
        if answer.outcome is RecipientOutcome.SUCCEEDED:
            # The client reports is_opted_out for checks only.
            results.append(NumberResult(raw, answer.to, "succeeded", answer.is_opted_out, None, answer.status_code,
                                        answer.details))
        else:
            results.append(_from_unsuccessful_upstream(raw, answer))
    return results


def _from_unsuccessful_upstream(raw: str, answer: RecipientResult) -> NumberResult:
    message = answer.error_message or "no details from the provider"
    if answer.outcome is RecipientOutcome.REJECTED:
        status = "invalid" if answer.status_code == 400 else "failed"
        return NumberResult(raw, answer.to, status, error=NumberError(answer.error_code or REJECTED_CODE, message),
                            upstream_status=answer.status_code, details=answer.details)
    code = answer.error_code or (THROTTLED_CODE if answer.status_code == 429 else UNAVAILABLE_CODE)
    return NumberResult(raw, answer.to, "failed", error=NumberError(code, message, transient=True),
                        upstream_status=answer.status_code, details=answer.details)
