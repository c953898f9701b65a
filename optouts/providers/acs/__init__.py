"""The Azure Communication Services provider: a client for the SMS opt-out API.

The package root is light, as azure-core's transport package is: importing it, or its
`settings` and `signing` submodules, loads nothing heavy. The names below
resolve on first use, so `from optouts.providers.acs import OptOutsClient` loads azure-core
only where the client is built (optouts/runtime.py).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optouts.providers.acs.client import ACS_SCOPE, MAX_RECIPIENTS_PER_CALL, OptOutsClient
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
        InsecureEndpointError,
        OptOutsError,
    )
    from optouts.providers.acs.settings import DEFAULT_API_VERSION, AcsSettings, AuthMode

_LAZY = {
    "ACS_SCOPE": "client",
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
    "DEFAULT_API_VERSION": "settings",
    "AcsSettings": "settings",
    "AuthMode": "settings",
}

__all__ = [
    "ACS_SCOPE",
    "AccessKeyCredential",
    "AcsAuthenticationError",
    "AcsBadRequestError",
    "AcsSettings",
    "AcsThrottledError",
    "AcsTransientError",
    "AcsUnavailableError",
    "AuthMode",
    "CredentialUnavailableError",
    "DEFAULT_API_VERSION",
    "InsecureEndpointError",
    "InvalidConnectionStringError",
    "MAX_RECIPIENTS_PER_CALL",
    "OptOutsClient",
    "OptOutsError",
    "StaticAccessKey",
    "parse_connection_string",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
