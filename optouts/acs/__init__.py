"""A client for the Azure Communication Services SMS opt-out API.

The package root is light, as azure-core's transport package is: importing it, or its
`models` submodule, loads nothing heavy. The names below resolve on first use, so
`from optouts.acs import OptOutsClient` loads azure-core only where the client is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .models import Operation, RecipientOutcome, RecipientResult

if TYPE_CHECKING:
    from .client import ACS_SCOPE, DEFAULT_API_VERSION, MAX_RECIPIENTS_PER_CALL, OptOutsClient
    from .credentials import AccessKeyCredential, InvalidConnectionStringError, StaticAccessKey, parse_connection_string
    from .errors import (
        AcsAuthenticationError,
        AcsBadRequestError,
        AcsThrottledError,
        AcsTransientError,
        AcsUnavailableError,
        CredentialUnavailableError,
        InsecureEndpointError,
        OptOutsError,
    )

_LAZY = {
    "ACS_SCOPE": "client",
    "DEFAULT_API_VERSION": "client",
    "MAX_RECIPIENTS_PER_CALL": "client",
    "OptOutsClient": "client",
    "AccessKeyCredential": "credentials",
    "InvalidConnectionStringError": "credentials",
    "StaticAccessKey": "credentials",
    "parse_connection_string": "credentials",
    "AcsAuthenticationError": "errors",
    "AcsBadRequestError": "errors",
    "AcsThrottledError": "errors",
    "AcsTransientError": "errors",
    "AcsUnavailableError": "errors",
    "CredentialUnavailableError": "errors",
    "InsecureEndpointError": "errors",
    "OptOutsError": "errors",
}

__all__ = sorted([*_LAZY, "Operation", "RecipientOutcome", "RecipientResult"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
