"""The use-case: carry out one opt-out command and report every number's outcome.

HTTP and queue functions are thin adapters over `OptOutService.execute`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from optouts.providers.acs import (
    AcsAuthenticationError,
    AcsBadRequestError,
    AcsThrottledError,
    AcsTransientError,
    CredentialUnavailableError,
    OptOutsClient,
)
from optouts.domain.operations import Operation
from optouts.providers.base import RecipientOutcome, RecipientResult
from optouts.audit.trail import AuditContext, AuditOutcome, AuditTrail, records_for
from optouts.domain.commands import OptOutCommand
from optouts.domain.phone import (
    InvalidNumber,
    NormalizationResult,
    NormalizedNumber,
    mask,
    normalize,
)
from optouts.domain.problems import Problem

_logger = logging.getLogger(__name__)

#: When ACS gave no Retry-After, callers are asked to come back after this long.
DEFAULT_RETRY_AFTER_SECONDS = 30
_MASKED_IN_LOGS = 10
TRANSIENT_ERROR_CODES = frozenset({"AcsThrottled", "AcsUnavailable"})


@dataclass(frozen=True, slots=True)
class NumberError:
    code: str
    message: str


# Not frozen: one is built per number (10,000 in a bulk call), and a frozen dataclass's
# __init__ costs three times as much. Nothing changes them after construction.
@dataclass(slots=True)
class NumberResult:
    input: str
    phone_number: str | None
    status: str  # succeeded | invalid | failed
    opted_out: bool | None = None
    error: NumberError | None = None
    upstream_status: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input": self.input, "phoneNumber": self.phone_number, "status": self.status}
        if self.opted_out is not None:
            data["optedOut"] = self.opted_out
        if self.error is not None:
            data["error"] = {"code": self.error.code, "message": self.error.message}
        return data


@dataclass(frozen=True)
class OperationReport:
    action: Operation
    sender: str
    results: list[NumberResult]
    #: None when the operation is not audited (a check, unless OPTOUT_AUDIT_CHECKS=true).
    audit: AuditOutcome | None = None

    @cached_property
    def summary(self) -> dict[str, int]:
        counts = {"total": len(self.results), "succeeded": 0, "invalid": 0, "failed": 0}
        for result in self.results:
            counts[result.status] += 1
        return counts

    @property
    def has_transient_failures(self) -> bool:
        """Whether some numbers failed only because ACS was throttling or unavailable."""
        return any(r.error is not None and r.error.code in TRANSIENT_ERROR_CODES for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action.value,
            "sender": self.sender,
            "results": [r.to_dict() for r in self.results],
            "summary": self.summary,
        }
        if self.audit is not None:
            data["audit"] = self.audit.to_dict()
        return data


class OptOutService:
    def __init__(self, client: OptOutsClient, audit_trail: AuditTrail | None = None) -> None:
        self._client = client
        self._audit_trail = audit_trail

    @property
    def client(self) -> OptOutsClient:
        return self._client

    def execute(
        self, command: OptOutCommand, *, time_budget: float | None = None, audit: AuditContext | None = None
    ) -> OperationReport:
        """Normalize, send the valid numbers upstream, and report one result per input;
        with an `audit` context, append what ACS was asked to the audit trail.

        Raises `Problem` (502/503) when ACS refused the gateway or failed every call.
        """
        normalized: list[NormalizationResult] = []
        valid_numbers = _normalize_streaming(command, normalized)
        try:
            upstream = self._client.run(command.action, command.sender, valid_numbers, time_budget=time_budget)
        except AcsAuthenticationError as error:
            _logger.error("ACS rejected the gateway's credentials for %s: %s", command.action.value, error)
            raise Problem(502, "AcsAuthenticationFailed", "Upstream authentication failed",
                          "Azure Communication Services rejected the gateway's credentials or does not "
                          "own the sender; an operator must check the configuration") from None
        except AcsBadRequestError as error:
            _logger.error("ACS rejected a %s call as malformed: %s", command.action.value, error)
            raise Problem(502, "AcsRejectedRequest", "Upstream rejected the request",
                          "Azure Communication Services rejected the gateway's call") from None
        except CredentialUnavailableError as error:
            raise credentials_unavailable(error) from None
        except AcsTransientError as error:
            code = "AcsThrottled" if isinstance(error, AcsThrottledError) else "AcsUnavailable"
            _logger.warning("ACS failed every %s call after retries (%s)", command.action.value, code)
            raise Problem(503, code, "Upstream temporarily unavailable",
                          "Azure Communication Services is throttling or unavailable; retry later",
                          retry_after=error.retry_after or DEFAULT_RETRY_AFTER_SECONDS) from None

        report = OperationReport(command.action, command.sender, _merge(command, normalized, upstream))
        self._log(report)
        trail = self._audit_trail
        if audit is not None and trail is not None and trail.audits(command.action.value):
            report = replace(report, audit=trail.record(records_for(command, report, audit)))
        return report

    def _log(self, report: OperationReport) -> None:
        summary = report.summary
        _logger.info("opt-out %s for %s: %s", report.action.value, report.sender, summary)
        if summary["failed"]:
            failed = [mask(r.phone_number) for r in report.results if r.status == "failed" and r.phone_number]
            _logger.warning("opt-out %s failed for %d numbers, e.g. %s",
                            report.action.value, summary["failed"], failed[:_MASKED_IN_LOGS])


def credentials_unavailable(error: CredentialUnavailableError) -> Problem:
    """The answer when Key Vault or the identity endpoint failed, whether while building
    the client or in the middle of an operation."""
    _logger.error("the gateway could not get its credentials: %s", error)
    return Problem(503, "CredentialsUnavailable", "Gateway credentials unavailable",
                   "the gateway could not obtain its credentials for Azure Communication Services; retry later",
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
    for raw, outcome in zip(command.phone_numbers, normalized):
        if isinstance(outcome, InvalidNumber):
            results.append(NumberResult(raw, None, "invalid", error=NumberError(outcome.code, outcome.message)))
            continue
        answer = next(answers)
        if answer.outcome is RecipientOutcome.SUCCEEDED:
            # The client reports is_opted_out for checks only.
            results.append(NumberResult(raw, answer.to, "succeeded", answer.is_opted_out, None, answer.status_code))
        else:
            results.append(_from_unsuccessful_upstream(raw, answer))
    return results


def _from_unsuccessful_upstream(raw: str, answer: RecipientResult) -> NumberResult:
    message = answer.error_message or "no details from ACS"
    if answer.outcome is RecipientOutcome.REJECTED:
        status = "invalid" if answer.status_code == 400 else "failed"
        return NumberResult(raw, answer.to, status, error=NumberError("RejectedByAcs", message),
                            upstream_status=answer.status_code)
    code = "AcsThrottled" if answer.status_code == 429 else "AcsUnavailable"
    return NumberResult(raw, answer.to, "failed", error=NumberError(code, message), upstream_status=answer.status_code)
