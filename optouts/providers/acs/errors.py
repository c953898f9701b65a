"""Typed errors of the opt-out client.

They derive from azure-core's exceptions so callers that already handle Azure SDK
errors keep working. No message ever contains credentials: messages are built from
status codes and ACS's own error texts, never from request headers.
"""

from __future__ import annotations

from azure.core.exceptions import AzureError, ClientAuthenticationError


class OptOutsError(AzureError):
    """Base class of every error raised by the opt-out client."""


class AcsAuthenticationError(OptOutsError, ClientAuthenticationError):
    """ACS rejected the gateway's credentials (401/403) or the sender is not one it owns."""


class CredentialUnavailableError(OptOutsError):
    """The gateway could not obtain its own credentials (Key Vault or the identity
    endpoint failed). Nothing was sent to ACS. The message never contains a secret."""


class AcsBadRequestError(OptOutsError):
    """ACS rejected a whole call as malformed (400). A bug or an API change: never retried."""


class AcsTransientError(OptOutsError):
    """ACS stayed unavailable or throttled for every chunk until retries or the time budget ran out."""

    def __init__(self, message: str, *, status_code: int | None, retry_after: float | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        #: Seconds ACS asked to wait (from Retry-After), when it said.
        self.retry_after = retry_after


class AcsThrottledError(AcsTransientError):
    """Every chunk was answered 429 until retries ran out."""


class AcsUnavailableError(AcsTransientError):
    """Every chunk failed with 5xx, a timeout or a connection error until retries ran out."""
