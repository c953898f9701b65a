"""Storage clients from a Functions-style connection setting (`AzureWebJobsStorage`).

The same setting shapes the Functions host understands: a connection string,
`UseDevelopmentStorage=true` (Azurite), or identity-based settings
`<name>__accountName` / `<name>__queueServiceUri` (and `__credential`, `__clientId`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from optouts.config import SettingsError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def connection_string(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The connection string behind setting `name`, or None when it is identity-based."""
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip()
    if not value:
        return None
    if value.replace(" ", "").lower() == "usedevelopmentstorage=true":
        return AZURITE_CONNECTION_STRING
    return value


def service_url(name: str, service: str, environ: Mapping[str, str] | None = None) -> str:
    """`https://<account>.<service>.core.windows.net` from identity-based settings."""
    env = os.environ if environ is None else environ
    explicit = env.get(f"{name}__{service}ServiceUri", "").strip()
    if explicit:
        return explicit.rstrip("/")
    account = env.get(f"{name}__accountName", "").strip()
    if not account:
        raise SettingsError(name, f"set a connection string, or {name}__accountName for managed identity")
    return f"https://{account}.{service}.core.windows.net"


def identity_credential(name: str, environ: Mapping[str, str] | None = None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    env = os.environ if environ is None else environ
    client_id = env.get(f"{name}__clientId", "").strip() or None
    if env.get(f"{name}__credential", "").strip().lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential(managed_identity_client_id=client_id)


def transport_options(options: dict[str, Any]) -> dict[str, Any]:
    """`options` for a storage client, with a `requests` transport that does not read the
    environment: with it, every call looks for a ~/.netrc file and scans the proxy
    variables, a cost the queue path paid on each message. (The ACS client keeps them: its
    calls go out to the internet, where HTTPS_PROXY/NO_PROXY must apply.) Timeouts given in
    `options` move to the transport."""
    from azure.core.pipeline.transport import RequestsTransport

    if "transport" in options:
        return options
    timeout_names = ("connection_timeout", "read_timeout")
    timeouts = {name: value for name, value in options.items() if name in timeout_names}
    rest = {name: value for name, value in options.items() if name not in timeout_names}
    return {**rest, "transport": RequestsTransport(use_env_settings=False, **timeouts)}


def queue_client(queue_name: str, connection: str = "AzureWebJobsStorage", **options: Any) -> Any:
    from azure.storage.queue import QueueClient

    options = transport_options(options)
    conn_str = connection_string(connection)
    if conn_str is not None:
        return QueueClient.from_connection_string(conn_str, queue_name, **options)
    return QueueClient(service_url(connection, "queue"), queue_name, credential=identity_credential(connection),
                       **options)


def blob_container_client(container: str, connection: str = "AzureWebJobsStorage", **options: Any) -> Any:
    from azure.storage.blob import ContainerClient

    options = transport_options(options)
    conn_str = connection_string(connection)
    if conn_str is not None:
        return ContainerClient.from_connection_string(conn_str, container, **options)
    return ContainerClient(service_url(connection, "blob"), container, credential=identity_credential(connection),
                           **options)
