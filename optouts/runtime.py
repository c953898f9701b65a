"""The composition root: one service per worker process, built lazily from app settings.

This is the one place where building is deferred, so that `import function_app` (indexing
the app, cold start) stays light: the blueprints import light modules and this one, and the
heavy side (a provider's client and its SDK, phonenumbers, the Storage SDKs) is imported by
the getters and factories below when the first request needs it. Building lazily also means
a broken setting is reported as an answer, not as a crash at import. `start`, called when the
app is indexed, logs every settings problem at once and sets up telemetry (optouts.telemetry);
it never raises.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from optouts.config import (
    STORAGE_CONNECTION,
    AuditStorageSettings,
    EventSettings,
    JobSettings,
    QueueSettings,
    Settings,
    SettingsError,
    all_problems,
)
from optouts.domain.problems import Problem, validation_problem
from optouts.providers.acs.settings import AcsSettings, AuthMode
from optouts.providers.aws.settings import AwsCredentialMode, AwsSettings

if TYPE_CHECKING:
    from optouts.audit.callers import AuditContext
    from optouts.audit.index import AuditIndexer
    from optouts.audit.sinks import EventPublisher
    from optouts.audit.trail import AuditStorage, AuditTrail, HistoryPage
    from optouts.providers.acs.client import OptOutsClient
    from optouts.providers.base import Provider
    from optouts.readiness import ReadinessProbe
    from optouts.usecases.end_user_keywords import EndUserKeywords
    from optouts.usecases.jobs import JobService
    from optouts.usecases.queued_requests import QueuedRequestProcessor
    from optouts.usecases.service import OptOutService

_logger = logging.getLogger("optouts.startup")
_http_logger = logging.getLogger("optouts.http")
_lock = threading.Lock()
_settings: Settings | None = None
_acs_settings: AcsSettings | None = None
_aws_settings: AwsSettings | None = None
_service: OptOutService | None = None
_processor: QueuedRequestProcessor | None = None
_audit_trail: AuditTrail | None = None
_audit_indexer: AuditIndexer | None = None
_event_publisher: EventPublisher | None = None
_readiness: ReadinessProbe | None = None
_jobs: JobService | None = None
_keywords: EndUserKeywords | None = None
_telemetry: str | None = None


def start(environ: Mapping[str, str] | None = None) -> list[SettingsError]:
    """At indexing: quiet the Azure SDK loggers, install the telemetry exporter (once per
    process), and log one error per settings problem. Returns the problems; never raises,
    so a broken setting leaves the app indexed and answering 503 with the reason."""
    env = os.environ if environ is None else environ
    global _telemetry
    with _lock:
        if _telemetry is None:
            _telemetry = _configure_telemetry(env)
    problems = settings_problems(env)
    for problem in problems:
        _logger.error("startup: %s", problem)
    return problems


def _configure_telemetry(env: Mapping[str, str]) -> str:
    from optouts import telemetry

    telemetry.quiet_azure_sdk(env)
    choice = telemetry.exporter_choice(env)
    try:
        if choice == "azure-monitor":
            _configure_azure_monitor(env)
        elif choice == "console":
            _configure_console()
    except Exception as error:  # telemetry must never keep the app from starting
        _logger.error("startup: telemetry (%s) could not be configured: %s", choice, type(error).__name__)
        return "failed"
    return choice


def _configure_azure_monitor(env: Mapping[str, str]) -> None:
    # Imported here only: the distro takes most of a second to import, paid only where it is used.
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    from optouts import telemetry

    entra, client_id = telemetry.monitor_client_id(env)
    # The Functions host already ships the worker's log lines to Application Insights; the
    # distro reads only this variable for it (its disable_logging argument is overridden).
    os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
    configure_azure_monitor(
        connection_string=env["APPLICATIONINSIGHTS_CONNECTION_STRING"].strip(),
        # Infra disables local (instrumentation key) auth: the app's managed identity signs in.
        credential=ManagedIdentityCredential(client_id=client_id) if entra else None,
        resource=Resource.create({"service.name": telemetry.SERVICE_NAME}),
        instrumentation_options={
            # Storage and Key Vault calls are traced through azure-core; the plain HTTP
            # instrumentations would trace the same calls a second time.
            "requests": {"enabled": False}, "urllib": {"enabled": False}, "urllib3": {"enabled": False},
            "httpx": {"enabled": False}, "django": {"enabled": False}, "fastapi": {"enabled": False},
            "flask": {"enabled": False}, "psycopg2": {"enabled": False},
        },
    )


def _configure_console() -> None:
    """OPTOUT_TELEMETRY_CONSOLE=true, for local runs: spans as they end, metrics every minute."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from optouts import telemetry

    resource = Resource.create({"service.name": telemetry.SERVICE_NAME})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def settings_problems(environ: Mapping[str, str] | None = None) -> list[SettingsError]:
    """What is wrong with the app settings: each provider's, then the gateway's (startup logs
    them, readiness reports them); one message per problem, never a value."""
    env = os.environ if environ is None else environ
    return (AcsSettings.problems(env) if uses_acs(env) else []) + AwsSettings.problems(env) + all_problems(env)




#: Any of these configures a way to reach ACS (optouts/providers/acs/settings.py).
_ACS_SETTINGS = ("ACS_CONNECTION_STRING", "ACS_ENDPOINT", "KEY_VAULT_URL", "ACS_CONNECTION_STRING_SECRET_NAME")


def uses_acs(environ: Mapping[str, str] | None = None) -> bool:
    """False only in an AWS-only deployment: AWS senders and no ACS setting at all. (With
    neither, ACS's settings report what is missing, as before AWS.)"""
    env = os.environ if environ is None else environ
    return not env.get("OPTOUT_AWS_SENDERS", "").strip() or any(env.get(name, "").strip() for name in _ACS_SETTINGS)


def get_settings() -> Settings:
    """The gateway's settings. The providers' settings are read first, so that a broken ACS
    or AWS setting fails every request (503 GatewayMisconfigured) before any work is done.
    AWS senders are allowed senders."""
    global _settings
    if _settings is None:
        aws = get_aws_settings()
        if uses_acs():
            get_acs_settings()
        with _lock:
            if _settings is None:
                settings = Settings.from_environ()
                if aws.configured:
                    settings = replace(settings, allowed_senders=settings.allowed_senders | frozenset(aws.senders))
                _settings = settings
    return _settings


def get_acs_settings() -> AcsSettings:
    global _acs_settings
    if _acs_settings is None:
        with _lock:
            if _acs_settings is None:
                _acs_settings = AcsSettings.from_environ()
    return _acs_settings


def get_aws_settings() -> AwsSettings:
    global _aws_settings
    if _aws_settings is None:
        with _lock:
            if _aws_settings is None:
                _aws_settings = AwsSettings.from_environ()
    return _aws_settings


def describe_configuration() -> dict[str, object]:
    """What /api/health shows: the providers' settings, then the gateway's; never a secret."""
    settings = get_settings()
    aws = get_aws_settings()
    acs = get_acs_settings().describe() if uses_acs() else {"authMode": None}
    events = EventSettings.from_environ().describe(settings.audit_disabled_reason)
    return {**acs, **settings.describe(), "events": events, **({"aws": aws.describe()} if aws.configured else {})}


def get_service() -> OptOutService:
    global _service
    if _service is None:
        settings = get_settings()
        acs = get_acs_settings() if uses_acs() else None
        aws = get_aws_settings()
        # Before taking the lock, which get_audit_trail takes itself.
        audit_trail = get_audit_trail()
        with _lock:
            if _service is None:
                from optouts.providers.base import ProviderCredentialsError
                from optouts.usecases.service import OptOutService, credentials_unavailable

                try:
                    provider = build_provider(settings, acs, aws)
                except ProviderCredentialsError as error:
                    # Not cached: the next request tries again.
                    raise credentials_unavailable(error) from None
                _service = OptOutService(provider, audit_trail)
    return _service


def get_audit_trail() -> AuditTrail:
    """The audit trail. Whether it is enabled is decided once, from the settings: with
    OPTOUT_AUDIT_WRITES=false it only reads; with no AzureWebJobsStorage it is disabled."""
    global _audit_trail
    if _audit_trail is None:
        settings = get_settings()
        with _lock:
            if _audit_trail is None:
                from optouts.audit.trail import AuditTrail

                storage = _audit_storage(settings) if settings.audit_storage_configured else None
                _audit_trail = AuditTrail(storage, include_checks=settings.audit_checks,
                                          reconcile_delay=settings.audit_reconcile_seconds,
                                          disabled_reason=settings.audit_disabled_reason)
    return _audit_trail


def get_audit_indexer() -> AuditIndexer:
    global _audit_indexer
    if _audit_indexer is None:
        # Its own settings only: a broken ACS setting must not stop indexing.
        settings = AuditStorageSettings.from_environ()
        with _lock:
            if _audit_indexer is None:
                from optouts.audit.index import AuditIndexer
                from optouts.audit.trail import storage_for

                storage = storage_for(container=settings.container, table=settings.table, queue=settings.index_queue)
                # The publisher is built when an operation first has events: a broken events
                # setting holds back the events (retried), never the history.
                _audit_indexer = AuditIndexer(storage, reconcile_delay=settings.reconcile_seconds,
                                              events=get_event_publisher)
    return _audit_indexer


def get_end_user_keywords() -> EndUserKeywords:
    """The SMSReceived handler. Its own settings only (the audit trail's), like the indexer: a
    broken ACS setting must not keep an end user's STOP from being recorded."""
    global _keywords
    if _keywords is None:
        settings = AuditStorageSettings.from_environ()
        with _lock:
            if _keywords is None:
                from optouts.audit.trail import AuditTrail, storage_for
                from optouts.usecases.end_user_keywords import EndUserKeywords

                storage = storage_for(container=settings.container, table=settings.table, queue=settings.index_queue)
                _keywords = EndUserKeywords(AuditTrail(storage, disabled_reason=settings.writes_disabled_reason))
    return _keywords


def handle_sms_event(event_id: object, event_type: object, data: object, event_time: object,
                     schema: str) -> str:
    """Record an end user's keyword from one SMSReceived event (either schema); what was done.
    Raises when the event must be delivered again (a malformed event, or a record that could not
    be written)."""
    from optouts.usecases.end_user_keywords import InboundEvent

    event = InboundEvent(event_id if isinstance(event_id, str) else "",
                         event_type if isinstance(event_type, str) else "", data,
                         event_time if isinstance(event_time, datetime) else None, schema)
    return get_end_user_keywords().handle(event).outcome


def get_event_publisher() -> EventPublisher:
    """Change events' sinks (OPTOUT_EVENTS_SINKS): the events queue in the app's storage account,
    and/or an Event Grid custom topic reached with the gateway's managed identity."""
    global _event_publisher
    if _event_publisher is None:
        settings = EventSettings.from_environ()
        with _lock:
            if _event_publisher is None:
                _event_publisher = build_event_publisher(settings)
    return _event_publisher


def build_event_publisher(settings: EventSettings) -> EventPublisher:
    from optouts.audit.sinks import EventGridSink, EventPublisher, EventSink, QueueSink
    from optouts.audit.trail import bounded_queue_client

    sinks: list[EventSink] = []
    if "queue" in settings.sinks:
        sinks.append(QueueSink(lambda: bounded_queue_client(settings.queue)))
    if "eventgrid" in settings.sinks and settings.topic_endpoint is not None:
        endpoint = settings.topic_endpoint
        sinks.append(EventGridSink(lambda: event_grid_client(endpoint)))
    return EventPublisher(sinks)


def event_grid_client(endpoint: str) -> Any:
    """A publisher for the custom topic, signed in as the gateway (managed identity), with the
    bounded retries of every call an invocation waits on."""
    from azure.eventgrid import EventGridPublisherClient

    from optouts.azure.identity import BOUNDED_PIPELINE_OPTIONS, gateway_credential

    return EventGridPublisherClient(endpoint, gateway_credential(), **BOUNDED_PIPELINE_OPTIONS)


def _audit_storage(settings: Settings) -> AuditStorage:
    from optouts.audit.trail import storage_for

    return storage_for(container=settings.audit_container, table=settings.audit_table,
                       queue=settings.audit_index_queue)


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
                    time_budget=lambda sender: queue_time_budget(queue_settings.time_budget_seconds, sender),
                    claim_check=lambda reference, most: get_job_service().claimed_numbers(reference, most),
                )
    return _processor


def get_job_service() -> JobService:
    """Jobs (docs/jobs.md): their storage is built once; the opt-out service on first use."""
    global _jobs
    if _jobs is None:
        job_settings = JobSettings.from_environ()
        settings = get_settings()
        with _lock:
            if _jobs is None:
                from optouts.audit.trail import table_client
                from optouts.azure.storage import blob_container_client, queue_client
                from optouts.usecases.jobs import JobService, JobStorage

                storage = JobStorage(
                    table_factory=lambda: table_client(job_settings.table, connection=STORAGE_CONNECTION),
                    container_factory=lambda: blob_container_client(job_settings.container),
                    uploads_factory=lambda: blob_container_client(job_settings.uploads_container),
                    queue_factory=lambda: queue_client(job_settings.queue),
                )
                _jobs = JobService(
                    settings=job_settings, storage=storage, service=get_service,
                    item_size=lambda sender, action: job_item_size(job_settings.item_size, sender, action),
                    time_budget=lambda sender: queue_time_budget(settings.time_budget_seconds, sender),
                )
    return _jobs


#: The AWS API each action calls, for its rate.
_AWS_APIS = {"add": "PutOptedOutNumber", "remove": "DeleteOptedOutNumber", "check": "DescribeOptedOutNumbers"}
#: Of an AWS work item's time budget, the share its numbers may take at the configured rate.
AWS_BUDGET_SHARE = 0.8


def job_item_size(default: int, sender: str, action: str) -> int:
    """Numbers per work item: `default` (1,000 = ten ACS calls of 100); for an AWS sender, what
    its per-instance rate gets through within the queue time budget, so no item is refused."""
    aws = get_aws_settings()
    if not aws.is_aws_sender(sender):
        return default
    rate = aws.rates.get(_AWS_APIS.get(action, ""), 1.0)
    return max(1, min(default, int(rate * aws.queue_time_budget_seconds * AWS_BUDGET_SHARE)))


def process_job_message(body: bytes, dequeue_count: int, max_dequeue_count: int) -> str | None:
    """One message of the jobs queue: None when done, else why it should be delivered again."""
    from optouts.usecases.jobs import RetryLater

    try:
        get_job_service().process(body, dequeue_count, max_dequeue_count)
    except RetryLater as retry:
        return str(retry)
    return None


def get_readiness() -> ReadinessProbe:
    global _readiness
    if _readiness is None:
        with _lock:
            if _readiness is None:
                from optouts.readiness import ReadinessProbe, storage_check

                _readiness = ReadinessProbe(
                    environ=lambda: os.environ,
                    problems=settings_problems,
                    settings=get_settings,
                    service=get_service,
                    storage_check=storage_check(QueueSettings.from_environ),
                )
    return _readiness


def process_queue_message(message_id: str, body: bytes, dequeue_count: int, max_dequeue_count: int) -> str | None:
    """Carry out one queued request (see `QueuedRequestProcessor.process`): None once its
    terminal state is published, else why the host should deliver it again."""
    from optouts.usecases.queued_requests import QueuedMessage, RetryLater

    message = QueuedMessage(id=message_id, body=body, dequeue_count=dequeue_count)
    try:
        get_queue_processor(max_dequeue_count).process(message)
    except RetryLater as retry:
        return str(retry)
    return None


def http_audit_context(headers: Mapping[str, str], trace_id: str) -> AuditContext:
    """Who is asking, for the audit trail, from an HTTP request's headers: a verified caller only
    when App Service authentication is on (WEBSITE_AUTH_ENABLED), else what they claim."""
    from optouts.audit.callers import http_context

    return http_context(headers, trace_id, verified_headers=get_settings().app_service_auth)


def read_operation(operation_id: str) -> dict[str, Any]:
    """An operation's audit record; a Problem for an id that is not one, an operation never
    accepted, or a journal that cannot be read."""
    from azure.core.exceptions import AzureError

    from optouts.audit.trail import OPERATION_ID_PATTERN, audit_unavailable_problem, describe_error

    if not OPERATION_ID_PATTERN.fullmatch(operation_id):
        raise validation_problem({"operationId": ["must be an operation id as an answer's audit object gives it"]})
    try:
        record = get_audit_trail().operation(operation_id)
    except (AzureError, ValueError, KeyError, TypeError) as error:
        _http_logger.error("audit operation record unavailable: %s", describe_error(error))
        raise audit_unavailable_problem("the audit trail could not be read; retry later") from None
    if record is None:
        raise Problem(404, "OperationNotFound", "Operation not found", "no operation with this id was accepted")
    return record


def read_history(sender: str, raw_number: str, region: str, top: int,
                 continuation_token: str | None) -> tuple[str, HistoryPage]:
    """(the number in E.164, one page of its audit records); a Problem for a number that is
    not one, a token this API did not issue, or an audit table that cannot be read."""
    from azure.core.exceptions import AzureError

    from optouts.audit.trail import InvalidContinuationToken, describe_error
    from optouts.domain.phone import InvalidNumber, normalize

    number = normalize(raw_number, region)
    if isinstance(number, InvalidNumber):
        raise validation_problem({"phoneNumber": [number.message]}, code=number.code)
    try:
        page = get_audit_trail().history(sender, number.e164, top=top, continuation_token=continuation_token)
    except InvalidContinuationToken as error:
        raise validation_problem({"continuationToken": [str(error)]}) from None
    except AzureError as error:
        _http_logger.error("audit history unavailable: %s", describe_error(error))
        raise Problem(503, "AuditUnavailable", "Audit trail unavailable",
                      "the audit trail could not be read; retry later", retry_after=30) from None
    return number.e164, page


def queue_time_budget(default: float, sender: str) -> float:
    """AWS senders take one call per number at a quota: their queued requests get a longer budget."""
    aws = get_aws_settings()
    return aws.queue_time_budget_seconds if aws.is_aws_sender(sender) else default


def build_provider(settings: Settings, acs: AcsSettings | None, aws: AwsSettings | None = None) -> Provider:
    """The provider the use cases talk to: a router over every configured provider, each
    sender to its own: AWS senders (OPTOUT_AWS_SENDERS) to AWS, every other sender to ACS."""
    from optouts.providers.router import NoProvider, ProviderRouter

    default: Provider = build_acs_client(settings, acs) if acs is not None else NoProvider()
    if aws is None or not aws.configured:
        return ProviderRouter(default=default)
    try:
        provider = build_aws_provider(settings, aws)
    except BaseException:
        default.close()
        raise
    return ProviderRouter(default=default, by_sender=dict.fromkeys(aws.senders, provider))


def build_aws_provider(settings: Settings, aws: AwsSettings) -> Provider:
    from optouts.azure.identity import gateway_credential
    from optouts.providers.aws.provider import AwsProvider

    options: dict[str, Any] = {"default_time_budget": settings.time_budget_seconds}
    if aws.credential_mode is AwsCredentialMode.WEB_IDENTITY:
        return AwsProvider.from_settings(aws, token_credential=gateway_credential(), **options)
    if aws.credential_mode is AwsCredentialMode.KEY_VAULT:
        from optouts.providers.acs.keyvault import secret_client

        if aws.key_vault_url is None:
            raise SettingsError("KEY_VAULT_URL", "is required with OPTOUT_AWS_ACCESS_KEY_SECRET_NAME")
        secrets = secret_client(aws.key_vault_url, gateway_credential())
        return AwsProvider.from_settings(aws, read_secret=lambda name: secrets.get_secret(name).value or "",
                                         **options)
    return AwsProvider.from_settings(aws, **options)


def build_acs_client(settings: Settings, acs: AcsSettings) -> OptOutsClient:
    from optouts.providers.acs.client import OptOutsClient
    from optouts.providers.acs.credentials import InvalidConnectionStringError
    from optouts.providers.acs.errors import InsecureEndpointError

    options: dict[str, Any] = {
        "api_version": acs.api_version,
        "max_concurrency": settings.max_concurrency,
        "time_budget": settings.time_budget_seconds,
        "allow_insecure_http": acs.allow_insecure_http,
    }
    if acs.auth_mode is AuthMode.CONNECTION_STRING:
        assert acs.connection_string is not None
        try:
            return OptOutsClient.from_connection_string(acs.connection_string, **options)
        except (InvalidConnectionStringError, InsecureEndpointError) as error:
            raise SettingsError("ACS_CONNECTION_STRING", str(error)) from None
    if acs.auth_mode is AuthMode.MANAGED_IDENTITY:
        from optouts.azure.identity import gateway_credential

        assert acs.endpoint is not None
        if not acs.endpoint.lower().startswith(("https://", "http://")):
            raise SettingsError("ACS_ENDPOINT", "must start with https://")
        try:
            return OptOutsClient(
                acs.endpoint,
                gateway_credential(),
                allow_insecure_bearer=acs.allow_insecure_bearer,
                **options,
            )
        except InsecureEndpointError as error:
            raise SettingsError("ACS_ENDPOINT", str(error)) from None
    from optouts.providers.acs.keyvault import build_key_vault_client

    try:
        return build_key_vault_client(acs, **options)
    except InsecureEndpointError as error:
        raise SettingsError("ACS_CONNECTION_STRING_SECRET_NAME", f"the secret's {error}") from None


def reset() -> None:
    """Forget the cached settings and service (tests, and after a configuration change)."""
    global _settings, _acs_settings, _aws_settings, _service, _processor, _audit_trail, _audit_indexer, _readiness
    global _jobs, _keywords, _event_publisher
    with _lock:
        service, _service, _settings, _acs_settings, _processor = _service, None, None, None, None
        _aws_settings = None
        _readiness = None
        audit_trail, _audit_trail = _audit_trail, None
        indexer, _audit_indexer = _audit_indexer, None
        jobs, _jobs = _jobs, None
        keywords, _keywords = _keywords, None
        publisher, _event_publisher = _event_publisher, None
    if jobs is not None:
        jobs.close()
    if service is not None:
        service.provider.close()
    if audit_trail is not None:
        audit_trail.close()
    if indexer is not None:
        indexer.close()
    if keywords is not None:
        keywords.close()
    if publisher is not None:
        publisher.close()
