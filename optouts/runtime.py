"""One service per worker process, built lazily from app settings.

Building is deferred to the first call so that `import function_app` stays light
(cold start) and a broken setting is reported as an answer, not a crash at import.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from optouts.providers.acs.settings import AuthMode
from optouts.config import QueueSettings, Settings, SettingsError

if TYPE_CHECKING:
    from optouts.providers.acs import OptOutsClient
    from optouts.audit.trail import AuditTrail
    from optouts.usecases.queued_requests import QueuedRequestProcessor
    from optouts.usecases.service import OptOutService

_lock = threading.Lock()
_settings: Settings | None = None
_service: "OptOutService | None" = None
_processor: "QueuedRequestProcessor | None" = None
_audit_trail: "AuditTrail | None" = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = Settings.from_environ()
    return _settings


def get_service() -> "OptOutService":
    global _service
    if _service is None:
        settings = get_settings()
        # Before taking the lock, which get_audit_trail takes itself.
        audit_trail = get_audit_trail() if settings.audit_writes else None
        with _lock:
            if _service is None:
                from optouts.providers.acs import CredentialUnavailableError
                from optouts.usecases.service import OptOutService, credentials_unavailable

                try:
                    client = build_client(settings)
                except CredentialUnavailableError as error:
                    # Not cached: the next request tries again.
                    raise credentials_unavailable(error) from None
                _service = OptOutService(client, audit_trail)
    return _service


def get_audit_trail() -> "AuditTrail":
    """The audit trail; its table client is built on first write, so a storage setting
    that is missing shows up as failed audit records, not as a failed operation."""
    global _audit_trail
    if _audit_trail is None:
        settings = get_settings()
        with _lock:
            if _audit_trail is None:
                from optouts.audit.trail import AuditTrail, table_client

                _audit_trail = AuditTrail(lambda: table_client(settings.audit_table),
                                          include_checks=settings.audit_checks)
    return _audit_trail


def get_queue_processor(max_dequeue_count: int) -> "QueuedRequestProcessor":
    """The queue processor; storage clients are built once, ACS settings read per message
    so that a fixed setting is picked up without losing messages."""
    global _processor
    if _processor is None:
        with _lock:
            if _processor is None:
                from optouts.usecases.queued_requests import QueuedRequestProcessor, ResultPublisher
                from optouts.azure.storage import blob_container_client, queue_client

                queue_settings = QueueSettings.from_environ()
                publisher = ResultPublisher(
                    queue_client(queue_settings.results_queue),
                    blob_container_client(queue_settings.results_container),
                )
                _processor = QueuedRequestProcessor(
                    settings=get_settings,
                    service=get_service,
                    publisher=publisher,
                    requests_queue=queue_settings.requests_queue,
                    max_dequeue_count=max_dequeue_count,
                    time_budget=queue_settings.time_budget_seconds,
                )
    return _processor


def build_client(settings: Settings) -> "OptOutsClient":
    from optouts.providers.acs import InvalidConnectionStringError, OptOutsClient

    options = {
        "api_version": settings.api_version,
        "max_concurrency": settings.max_concurrency,
        "time_budget": settings.time_budget_seconds,
    }
    if settings.auth_mode is AuthMode.CONNECTION_STRING:
        assert settings.acs_connection_string is not None
        try:
            return OptOutsClient.from_connection_string(settings.acs_connection_string, **options)
        except InvalidConnectionStringError as error:
            raise SettingsError("ACS_CONNECTION_STRING", str(error)) from None
    if settings.auth_mode is AuthMode.MANAGED_IDENTITY:
        from optouts.azure.identity import gateway_credential

        assert settings.acs_endpoint is not None
        if not settings.acs_endpoint.lower().startswith(("https://", "http://")):
            raise SettingsError("ACS_ENDPOINT", "must start with https://")
        return OptOutsClient(
            settings.acs_endpoint,
            gateway_credential(),
            allow_insecure_bearer=settings.allow_insecure_bearer,
            **options,
        )
    from optouts.providers.acs.keyvault import build_key_vault_client

    return build_key_vault_client(settings, **options)


def reset() -> None:
    """Forget the cached settings and service (tests, and after a configuration change)."""
    global _settings, _service, _processor, _audit_trail
    with _lock:
        service, _service, _settings, _processor = _service, None, None, None
        audit_trail, _audit_trail = _audit_trail, None
    if service is not None:
        service.client.close()
    if audit_trail is not None:
        audit_trail.close()
