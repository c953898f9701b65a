"""A client for the Azure Communication Services SMS opt-out API."""

from optouts.providers.acs.client import (
    ACS_SCOPE,
    DEFAULT_API_VERSION,
    MAX_RECIPIENTS_PER_CALL,
    OptOutsClient,
)
from optouts.providers.acs.credentials import (
    AccessKeyCredential,
    InvalidConnectionStringError,
    StaticAccessKey,
    parse_connection_string,
)
from optouts.providers.acs.errors import (
    AcsAuthenticationError,
    AcsBadRequestError,
    AcsThrottledError,
    AcsTransientError,
    AcsUnavailableError,
    CredentialUnavailableError,
    OptOutsError,
)
from optouts.domain.operations import Operation
from optouts.providers.base import RecipientOutcome, RecipientResult

__all__ = [
    "ACS_SCOPE",
    "DEFAULT_API_VERSION",
    "MAX_RECIPIENTS_PER_CALL",
    "AccessKeyCredential",
    "AcsAuthenticationError",
    "AcsBadRequestError",
    "AcsThrottledError",
    "AcsTransientError",
    "AcsUnavailableError",
    "CredentialUnavailableError",
    "InvalidConnectionStringError",
    "Operation",
    "OptOutsClient",
    "OptOutsError",
    "RecipientOutcome",
    "RecipientResult",
    "StaticAccessKey",
    "parse_connection_string",
]
