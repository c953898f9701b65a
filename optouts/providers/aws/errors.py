"""Errors of the AWS provider, on top of the provider-neutral ones (`optouts.providers.base`)."""

from __future__ import annotations

from optouts.providers.base import ProviderCredentialsError, ProviderError

AUTHENTICATION_FAILED = "AwsAuthenticationFailed"
REJECTED_REQUEST = "AwsRejectedRequest"
THROTTLED = "AwsThrottled"
UNAVAILABLE = "AwsUnavailable"
RATE_BUDGET_EXCEEDED = "AwsRateBudgetExceeded"


class RateBudgetExceededError(ProviderError):
    """The request cannot finish within its time budget at the configured request rate,
    so nothing was sent. A client error (HTTP 413): the same request through the queue,
    or split into smaller ones, can succeed."""

    code = RATE_BUDGET_EXCEEDED
    status = 413

    def __init__(self, message: str, *, estimated_seconds: float, budget_seconds: float) -> None:
        super().__init__(message)
        self.estimated_seconds = estimated_seconds
        self.budget_seconds = budget_seconds


class AwsCredentialsUnavailableError(ProviderCredentialsError):
    """No AWS credentials could be obtained (Entra ID token, STS, Key Vault). Nothing was
    sent to AWS. The message names the source, never a secret."""
