"""The provider interface: what the use cases ask of an opt-out list provider.

Agreed in PROVIDER_INTERFACE.md (issues 22 and 23) and kept light: standard library and the
domain's `Operation` only, no Azure or AWS SDK, in the manner of httpx's `_transports/base.py`.

A provider answers one `RecipientResult` per distinct recipient, in first-seen input order,
and raises one of the errors below when the operation failed as a whole. Each error carries
the public error code (a stable contract) and the seconds to wait before retrying, if known.
Codes by provider (docs: README "Error codes"):

=============================  ==========================  ==========================  =======
error                          ACS                         AWS (issue 23)              answer
=============================  ==========================  ==========================  =======
ProviderAuthenticationError    AcsAuthenticationFailed     AwsAuthenticationFailed     502
ProviderRejectedError          AcsRejectedRequest          AwsRejectedRequest          502
ProviderThrottledError         AcsThrottled                AwsThrottled                503
ProviderUnavailableError       AcsUnavailable              AwsUnavailable              503
ProviderCredentialsError       CredentialsUnavailable      CredentialsUnavailable      503
=============================  ==========================  ==========================  =======
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from optouts.domain.operations import Operation

__all__ = [
    "Operation",
    "Provider",
    "ProviderAuthenticationError",
    "ProviderCredentialsError",
    "ProviderError",
    "ProviderRejectedError",
    "ProviderThrottledError",
    "ProviderTransientError",
    "ProviderUnavailableError",
    "ListingProvider",
    "OptOutPage",
    "OptedOutEntry",
    "ProviderInvalidContinuationError",
    "ProviderListingNotSupportedError",
    "ProviderRequestTooLargeError",
    "RecipientOutcome",
    "RecipientResult",
    "provider_name",
]


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
    #: The per-recipient status the provider reported, or the whole call's status when the call
    #: failed. None when no answer was received at all (connection error, time budget).
    status_code: int | None
    error_message: str | None = None
    #: Only for check: whether the number is on the opt-out list.
    is_opted_out: bool | None = None
    #: A stable machine code for a non-success (e.g. "RejectedByAcs", "AwsRemovalTooSoon"); None:
    #: the service derives a neutral one from outcome and status.
    error_code: str | None = None
    #: Provider-specific facts for checks and the audit trail, e.g. {"optedOutTimestamp": "...",
    #: "endUserOptedOut": True} from AWS; None for ACS.
    details: Mapping[str, object] | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome is RecipientOutcome.SUCCEEDED


@runtime_checkable
class Provider(Protocol):
    #: "acs" or "aws": recorded in the audit trail and in metrics.
    name: str

    def run(
        self, operation: Operation, sender: str, recipients: Iterable[str], *, time_budget: float | None = None
    ) -> list[RecipientResult]:
        """One result per distinct recipient, in first-seen input order. `recipients` may be a
        generator doing real work (normalization): a provider may consume it while sending."""
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
    """Base of the errors a provider raises when an operation failed as a whole.

    `code` is the public error code answered to callers; a provider's own subclasses set it
    (class attribute), or a caller passes `code=` for one instance (the fake provider does).
    """

    #: The public error code; providers override it. Never shown for the neutral classes
    #: themselves unless a provider raises them without a code.
    code = "UpstreamFailed"
    #: Who failed, as the answer's detail names it ("Azure Communication Services").
    upstream = "the opt-out provider"
    #: Who failed and where, for log lines only (e.g. "ACS at x.communication.azure.com"); None: `upstream`.
    where: str | None = None

    def __init__(self, *args: object, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(*args)
        if code is not None:
            self.code = code
        #: Seconds the provider asked to wait, when it said.
        self.retry_after = retry_after


class ProviderAuthenticationError(ProviderError):
    """The provider refused the gateway's credentials, or the sender is not the gateway's. → 502"""

    code = "UpstreamAuthenticationFailed"


class ProviderRejectedError(ProviderError):
    """The provider refused a whole call as malformed: a bug or an API change, never retried. → 502"""

    code = "UpstreamRejectedRequest"


class ProviderTransientError(ProviderError):
    """The provider stayed throttled or unavailable until retries or the time budget ran out. → 503"""

    code = "UpstreamUnavailable"


class ProviderThrottledError(ProviderTransientError):
    """Every call was throttled until retries ran out. → 503 with Retry-After"""

    code = "UpstreamThrottled"


class ProviderUnavailableError(ProviderTransientError):
    """Every call failed (5xx, timeout, connection) until retries ran out. → 503 with Retry-After"""

    code = "UpstreamUnavailable"


class ProviderCredentialsError(ProviderError):
    """The gateway could not obtain its own credentials (Key Vault, identity endpoint); nothing
    was sent. The message never contains a secret. → 503"""

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
