"""The composition root: one service per worker process, built lazily from app settings.

This is the one place where building is deferred, so that `import function_app` (indexing
the app, cold start) stays light: the blueprints import light modules and this one, and the
heavy side (a provider's client and its SDK, phonenumbers, the Storage SDKs) is imported by
the getters and factories below when the first request needs it. Building lazily also means
a broken setting is reported as an answer, not as a crash at import.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from optouts.config import QueueSettings, Settings, SettingsError
from optouts.providers.acs.settings import AcsSettings, AuthMode

if TYPE_CHECKING:
    from optouts.audit.trail import AuditTrail
    from optouts.providers.acs.client import OptOutsClient
    from optouts.providers.base import Provider
    from optouts.usecases.queued_requests import QueuedRequestProcessor
    from optouts.usecases.service import OptOutService

_lock = threading.Lock()
_settings: Settings | None = None
_acs_settings: AcsSettings | None = None
_service: OptOutService | None = None
_processor: QueuedRequestProcessor | None = None
_audit_trail: AuditTrail | None = None


def get_settings() -> Settings:
    """The gateway's settings. The providers' settings are read first, so that a broken ACS
    setting fails every request (503 GatewayMisconfigured) before any work is done."""
    global _settings
    if _settings is None:
        get_acs_settings()
        with _lock:
            if _settings is None:
                _settings = Settings.from_environ()
    return _settings


def get_acs_settings() -> AcsSettings:
    global _acs_settings
    if _acs_settings is None:
        with _lock:
            if _acs_settings is None:
                _acs_settings = AcsSettings.from_environ()
    return _acs_settings


def describe_configuration() -> dict[str, object]:
    """What /api/health shows: the providers' settings, then the gateway's; never a secret."""
    settings = get_settings()
    return {**get_acs_settings().describe(), **settings.describe()}


def get_service() -> OptOutService:
    global _service
    if _service is None:
        settings = get_settings()
        acs = get_acs_settings()
        # Before taking the lock, which get_audit_trail takes itself.
        audit_trail = get_audit_trail() if settings.audit_writes else None
        with _lock:
            if _service is None:
                from optouts.providers.base import ProviderCredentialsError
                from optouts.usecases.service import OptOutService, credentials_unavailable

                try:
                    provider = build_provider(settings, acs)
                except ProviderCredentialsError as error:
                    # Not cached: the next request tries again.
                    raise credentials_unavailable(error) from None
                _service = OptOutService(provider, audit_trail)
    return _service


def get_audit_trail() -> AuditTrail:
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


def get_queue_processor(max_dequeue_count: int) -> QueuedRequestProcessor:
    """The queue processor; storage clients are built once, provider settings read per message
    so that a fixed setting is picked up without losing messages."""
    global _processor
    if _processor is None:
        with _lock:
            if _processor is None:
                from optouts.azure.storage import blob_container_client, queue_client
                from optouts.usecases.queued_requests import QueuedRequestProcessor, ResultPublisher

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


def build_provider(settings: Settings, acs: AcsSettings) -> Provider:
    """The provider the use cases talk to: a router over every configured provider, each
    sender to its own (today every sender is ACS's; issue 23 adds AWS senders)."""
    from optouts.providers.router import ProviderRouter

    return ProviderRouter(default=build_acs_client(settings, acs))


def build_acs_client(settings: Settings, acs: AcsSettings) -> OptOutsClient:
    from optouts.providers.acs.client import OptOutsClient
    from optouts.providers.acs.credentials import InvalidConnectionStringError

    options: dict[str, Any] = {
        "api_version": acs.api_version,
        "max_concurrency": settings.max_concurrency,
        "time_budget": settings.time_budget_seconds,
    }
    if acs.auth_mode is AuthMode.CONNECTION_STRING:
        assert acs.connection_string is not None
        try:
            return OptOutsClient.from_connection_string(acs.connection_string, **options)
        except InvalidConnectionStringError as error:
            raise SettingsError("ACS_CONNECTION_STRING", str(error)) from None
    if acs.auth_mode is AuthMode.MANAGED_IDENTITY:
        from optouts.azure.identity import gateway_credential

        assert acs.endpoint is not None
        if not acs.endpoint.lower().startswith(("https://", "http://")):
            raise SettingsError("ACS_ENDPOINT", "must start with https://")
        return OptOutsClient(
            acs.endpoint,
            gateway_credential(),
            allow_insecure_bearer=acs.allow_insecure_bearer,
            **options,
        )
    from optouts.providers.acs.keyvault import build_key_vault_client

    return build_key_vault_client(acs, **options)


def reset() -> None:
    """Forget the cached settings and service (tests, and after a configuration change)."""
    global _settings, _acs_settings, _service, _processor, _audit_trail
    with _lock:
        service, _service, _settings, _acs_settings, _processor = _service, None, None, None, None
        audit_trail, _audit_trail = _audit_trail, None
    if service is not None:
        service.provider.close()
    if audit_trail is not None:
        audit_trail.close()
