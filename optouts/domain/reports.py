"""What an operation answers: one result per input number, and the operation's report.

The same shape for HTTP answers, queue results and the audit trail (which reads reports, so
these models live below both the use cases and the audit trail).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from optouts.domain.operations import Operation


class AuditSummary(Protocol):
    """What the audit trail says about an operation's records (optouts/audit/)."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class NumberError:
    code: str
    message: str
    #: The number failed only because the provider was throttling or unavailable: worth retrying.
    transient: bool = False


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
    #: The provider's own facts about the number (AWS: optedOutTimestamp, endUserOptedOut...).
    details: Mapping[str, object] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input": self.input, "phoneNumber": self.phone_number, "status": self.status}
        if self.opted_out is not None:
            data["optedOut"] = self.opted_out
        if self.error is not None:
            data["error"] = {"code": self.error.code, "message": self.error.message}
        if self.details:
            data["details"] = dict(self.details)
        return data


@dataclass(frozen=True)
class OperationReport:
    action: Operation
    sender: str
    results: list[NumberResult]
    #: None when the operation is not audited (a check, unless OPTOUT_AUDIT_CHECKS=true).
    audit: AuditSummary | None = None

    @cached_property
    def summary(self) -> dict[str, int]:
        counts = {"total": len(self.results), "succeeded": 0, "invalid": 0, "failed": 0}
        for result in self.results:
            counts[result.status] += 1
        return counts

    @property
    def has_transient_failures(self) -> bool:
        """Whether some numbers failed only because the provider was throttling or unavailable."""
        return self.transient_failure_code is not None

    @property
    def transient_failure_code(self) -> str | None:
        """The code that sums up the transient failures, None without any: the provider's
        "unavailable" code (AcsUnavailable, AwsUnavailable), whether the numbers were
        throttled or unavailable; the numbers keep their own codes."""
        for result in self.results:
            error = result.error
            if error is not None and error.transient:
                return unavailable_code(error.code)
        return None

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


def unavailable_code(code: str) -> str:
    """The "unavailable" code of a transient code's family: providers name them in pairs,
    `<Provider>Throttled` and `<Provider>Unavailable` (README, "Providers and their error codes")."""
    return code.removesuffix("Throttled") + "Unavailable" if code.endswith("Throttled") else code
