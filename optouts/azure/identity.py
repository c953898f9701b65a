"""The gateway's own Azure identity, shared by managed-identity mode (tokens for ACS)
and Key Vault mode (tokens for the vault).

`DefaultAzureCredential` picks the managed identity on Azure (honouring
AZURE_CLIENT_ID for a user-assigned one, and AZURE_TOKEN_CREDENTIALS to pin the
chain). Its default HTTP retry policy backs off for minutes when the identity
endpoint answers 5xx; a function invocation cannot wait that long, so retries are
bounded here and a failure surfaces quickly as a 503 the caller can retry.
"""

from __future__ import annotations

from typing import Any

from azure.identity import DefaultAzureCredential

#: Pipeline options for requests a caller waits on: to the identity endpoint, and to
#: Key Vault (`optouts.providers.acs.keyvault`). Failing in seconds beats holding the invocation.
BOUNDED_PIPELINE_OPTIONS: dict[str, Any] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.25,
    "retry_backoff_max": 2.0,
    "connection_timeout": 5.0,
    "read_timeout": 10.0,
}


def gateway_credential() -> DefaultAzureCredential:
    return DefaultAzureCredential(**BOUNDED_PIPELINE_OPTIONS)
