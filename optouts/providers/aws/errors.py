"""Errors of the AWS provider: the provider-neutral ones (`optouts.providers.base`) with AWS's
public codes, and the refusal of a request too slow for its time budget."""

from __future__ import annotations

from optouts.providers.base import (
    ProviderAuthenticationError,
    ProviderCredentialsError,
    ProviderRejectedError,
    ProviderRequestTooLargeError,
    ProviderThrottledError,
    ProviderUnavailableError,
)

#: Who failed, as answers' details name it.
UPSTREAM = "AWS End User Messaging SMS"
AUTHENTICATION_FAILED = "AwsAuthenticationFailed"
REJECTED_REQUEST = "AwsRejectedRequest"
THROTTLED = "AwsThrottled"
UNAVAILABLE = "AwsUnavailable"
RATE_BUDGET_EXCEEDED = "AwsRateBudgetExceeded"


class AwsAuthenticationError(ProviderAuthenticationError):
    """AWS refused the gateway's credentials, or its IAM policy does not allow the action (→ 502)."""

    code = AUTHENTICATION_FAILED
    upstream = UPSTREAM


class AwsRejectedError(ProviderRejectedError):
    """AWS has no such opt-out list, or refused its name; or the sender is not an AWS sender (→ 502)."""

    code = REJECTED_REQUEST
    upstream = UPSTREAM


class AwsThrottledError(ProviderThrottledError):
    """AWS throttled every call until retries or the time budget ran out (→ 503)."""

    code = THROTTLED
    upstream = UPSTREAM


class AwsUnavailableError(ProviderUnavailableError):
    """AWS failed every call (5xx, timeouts, connection errors) until retries ran out (→ 503)."""

    code = UNAVAILABLE
    upstream = UPSTREAM


class AwsCredentialsUnavailableError(ProviderCredentialsError):
    """No AWS credentials could be obtained (Entra ID token, STS, Key Vault). Nothing was
    sent to AWS. The message names the source, never a secret."""

    upstream = UPSTREAM


class RateBudgetExceededError(ProviderRequestTooLargeError):
    """The request cannot finish within its time budget at the configured request rate,
    so nothing was sent. A client error (HTTP 413): the same request through the queue,
    or split into smaller ones, can succeed."""

    code = RATE_BUDGET_EXCEEDED
    upstream = UPSTREAM
    status = 413

    def __init__(self, message: str, *, estimated_seconds: float, budget_seconds: float) -> None:
        super().__init__(message)
        self.estimated_seconds = estimated_seconds
        self.budget_seconds = budget_seconds
