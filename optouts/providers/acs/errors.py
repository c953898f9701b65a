"""Typed errors of the opt-out client.

They derive from azure-core's exceptions, so callers that already handle Azure SDK errors
keep working, and from the provider-neutral errors of `optouts.providers.base`, which is all
the use cases know: each class carries its public error code (`AcsThrottled` and the rest are
contract). No message ever contains credentials: messages are built from status codes and
ACS's own error texts, never from request headers.
"""

from __future__ import annotations

from azure.core.exceptions import AzureError, ClientAuthenticationError

from optouts.providers.base import (
    ProviderAuthenticationError,
    ProviderCredentialsError,
    ProviderError,
    ProviderRejectedError,
    ProviderThrottledError,
    ProviderTransientError,
    ProviderUnavailableError,
)

UPSTREAM = "Azure Communication Services"


class OptOutsError(AzureError, ProviderError):
    """Base class of every error raised by the opt-out client."""

    upstream = UPSTREAM
    #: In log lines; a client names its resource in the errors where the host matters (transient ones).
    where: str | None = "ACS"


class AcsAuthenticationError(OptOutsError, ClientAuthenticationError, ProviderAuthenticationError):
    """ACS rejected the gateway's credentials (401/403) or the sender is not one it owns."""

    code = "AcsAuthenticationFailed"


class CredentialUnavailableError(OptOutsError, ProviderCredentialsError):
    """The gateway could not obtain its own credentials (Key Vault or the identity
    endpoint failed). Nothing was sent to ACS. The message never contains a secret."""

    code = "CredentialsUnavailable"


class AcsBadRequestError(OptOutsError, ProviderRejectedError):
    """ACS rejected a whole call as malformed (400). A bug or an API change: never retried."""

    code = "AcsRejectedRequest"


class AcsTransientError(OptOutsError, ProviderTransientError):
    """ACS stayed unavailable or throttled for every chunk until retries or the time budget ran out."""

    code = "AcsUnavailable"

    def __init__(self, message: str, *, status_code: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        #: Seconds ACS asked to wait (from Retry-After), when it said.
        self.retry_after = retry_after


class AcsThrottledError(AcsTransientError, ProviderThrottledError):
    """Every chunk was answered 429 until retries ran out."""

    code = "AcsThrottled"


class AcsUnavailableError(AcsTransientError, ProviderUnavailableError):
    """Every chunk failed with 5xx, a timeout or a connection error until retries ran out."""

    code = "AcsUnavailable"


class InsecureEndpointError(OptOutsError, ValueError):
    """The endpoint is plain http:// and neither loopback nor explicitly allowed: opt-out
    bodies are personal data and would travel in clear text."""
