"""The provider interface: what the service needs from ACS, AWS or any later provider.

Light on purpose (stdlib only): the service, commands and audit import it without
pulling in azure-core or boto3.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


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


@dataclass(frozen=True, slots=True)
class OptedOutEntry:
    """One number on a provider's opt-out list, with the provider's facts about it."""

    phone_number: str
    details: Mapping[str, object] | None = None


@dataclass(frozen=True)
class OptOutPage:
    numbers: list[OptedOutEntry]
    #: The provider's continuation token for the next page; None on the last page.
    next_token: str | None


@runtime_checkable
class ListingProvider(Protocol):
    """A provider that can list every number on a sender's opt-out list (AWS can; ACS cannot)."""

    def list_opted_out(self, sender: str, *, next_token: str | None = None, page_size: int = 100,
                       time_budget: float | None = None) -> OptOutPage:
        """One page, at most `page_size` numbers; `next_token` from the previous page."""
        ...


def provider_name(provider: Provider, sender: str) -> str:
    """The name of the provider that serves `sender` ("acs", "aws"): a router answers for the
    provider behind it, for the audit trail."""
    resolve = getattr(provider, "provider_for", None)
    return str(resolve(sender).name) if callable(resolve) else provider.name


class ProviderError(Exception):
    """Base of the provider-neutral errors. `code` is the public error code (a stable
    contract); `retry_after` is in seconds, when the provider said."""

    code: str = "ProviderError"
    #: Who failed, as the answer's detail names it ("Azure Communication Services").
    upstream: str = "the opt-out provider"

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


class ProviderRequestTooLargeError(ProviderError):
    """The operation cannot finish within its time budget at the provider's request rate;
    nothing was sent. A client error: the queue (longer budget) or smaller requests can do it. → 413"""

    code = "UpstreamRateBudgetExceeded"


class ProviderListingNotSupportedError(ProviderError):
    """The sender's provider cannot list its opt-out list (ACS has no such call). → 501"""

    code = "ListingNotSupported"


class ProviderInvalidContinuationError(ProviderError):
    """The caller's continuation token was refused by the provider. → 400"""

    code = "InvalidContinuationToken"
