"""The provider interface: what the service needs from ACS, AWS or any later provider.

Light on purpose (stdlib only): the service, commands and audit import it without
pulling in azure-core or boto3.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


class Operation(str, enum.Enum):
    ADD = "add"
    REMOVE = "remove"
    CHECK = "check"


class RecipientOutcome(str, enum.Enum):
    SUCCEEDED = "succeeded"
    #: The provider answered the recipient with a final refusal (for example a malformed number).
    REJECTED = "rejected"
    #: Still failing transiently (throttled, unavailable, no answer) when retries or the time budget ran out.
    FAILED = "failed"


# Not frozen: one is built per number (10,000 in a bulk call), and a frozen dataclass's
# __init__ costs three times as much. Nothing changes them after construction.
@dataclass(slots=True)
class RecipientResult:
    to: str
    outcome: RecipientOutcome
    #: The per-recipient status the provider reported, or the whole call's status when the call failed.
    #: None when no HTTP answer was received at all (connection error, time budget).
    status_code: int | None
    error_message: str | None = None
    #: Only for check: whether the number is on the opt-out list.
    is_opted_out: bool | None = None
    #: A stable machine code for a non-success (e.g. "RejectedByAcs", "AwsRemovalTooSoon"); None → the
    #: service derives one from outcome/status.
    error_code: str | None = None
    #: Provider-specific facts for checks and the audit trail, e.g. {"optedOutTimestamp": "...",
    #: "endUserOptedOut": True} from AWS; None for ACS.
    details: Mapping[str, object] | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome is RecipientOutcome.SUCCEEDED


class Provider(Protocol):
    #: "acs" or "aws": recorded in the audit trail and in metrics.
    name: str

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        """One result per distinct recipient, in first-seen input order."""
        ...

    def close(self) -> None: ...


class ProviderError(Exception):
    """Base of the provider-neutral errors. `code` is the public error code (a stable
    contract); `retry_after` is in seconds, when the provider said."""

    code: str = "ProviderError"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class ProviderAuthenticationError(ProviderError):
    """The provider refused the gateway's credentials or its right to the sender (→ 502)."""


class ProviderRejectedError(ProviderError):
    """The provider refused a whole call as malformed or aimed at a missing resource (→ 502)."""


class ProviderTransientError(ProviderError):
    """Base of the throttled and unavailable errors (→ 503 + Retry-After)."""


class ProviderThrottledError(ProviderTransientError):
    """Every call was throttled until retries ran out."""


class ProviderUnavailableError(ProviderTransientError):
    """Every call failed with 5xx, a timeout or a connection error until retries ran out."""


class ProviderCredentialsError(ProviderError):
    """The gateway could not obtain its own credentials for the provider (→ 503)."""

    code = "CredentialsUnavailable"
