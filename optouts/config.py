"""Settings read from app settings (environment variables).

Reading settings never raises at import time: a missing or broken setting is
reported as a `SettingsError` naming the setting, when a function first needs it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_API_VERSION = "2026-01-23"
DEFAULT_REGION = "US"
DEFAULT_MAX_NUMBERS = 10_000
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_TIME_BUDGET_SECONDS = 60.0
DEFAULT_SECRET_CACHE_SECONDS = 300.0
DEFAULT_REQUESTS_QUEUE = "optout-requests"
DEFAULT_RESULTS_QUEUE = "optout-results"
DEFAULT_RESULTS_CONTAINER = "optout-results"
DEFAULT_QUEUE_TIME_BUDGET_SECONDS = 20.0
DEFAULT_AUDIT_TABLE = "optoutaudit"
DEFAULT_AUDIT_CONTAINER = "optout-operations"
DEFAULT_AUDIT_INDEX_QUEUE = "optout-audit-index"
DEFAULT_AUDIT_RECONCILE_SECONDS = 300.0
#: Storage queues hide a message for at most 7 days.
MAX_AUDIT_RECONCILE_SECONDS = 7 * 24 * 3600.0
#: The storage connection the Functions host, the queues and the audit trail share.
STORAGE_CONNECTION = "AzureWebJobsStorage"

KEY_VAULT_REFERENCE_PREFIX = "@Microsoft.KeyVault("


class SettingsError(Exception):
    """A setting is missing or malformed. The message names the setting, never its value."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"App setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


class AuthMode(str, enum.Enum):
    CONNECTION_STRING = "connection-string"
    KEY_VAULT = "key-vault"
    MANAGED_IDENTITY = "managed-identity"


@dataclass(frozen=True)
class Settings:
    auth_mode: AuthMode
    acs_connection_string: str | None
    acs_endpoint: str | None
    key_vault_url: str | None
    connection_string_secret_name: str | None
    secret_cache_seconds: float
    api_version: str
    allow_insecure_bearer: bool
    default_sender: str | None
    allowed_senders: frozenset[str]
    default_region: str
    max_numbers: int
    max_concurrency: int
    max_body_bytes: int
    time_budget_seconds: float
    audit_table: str
    audit_checks: bool
    audit_writes: bool
    audit_container: str
    audit_index_queue: str
    audit_reconcile_seconds: float
    #: Whether AzureWebJobsStorage is set at all: without it the audit trail is disabled.
    audit_storage_configured: bool
    #: WEBSITE_AUTH_ENABLED, set by App Service when its authentication runs in front of the
    #: app: only then are the X-MS-CLIENT-PRINCIPAL-* headers the platform's, not the caller's.
    app_service_auth: bool

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        connection_string = _text(env, "ACS_CONNECTION_STRING")
        endpoint = _text(env, "ACS_ENDPOINT")
        key_vault_url = _text(env, "KEY_VAULT_URL")
        secret_name = _text(env, "ACS_CONNECTION_STRING_SECRET_NAME")

        if connection_string is not None:
            if connection_string.startswith(KEY_VAULT_REFERENCE_PREFIX):
                raise SettingsError(
                    "ACS_CONNECTION_STRING",
                    "is an unresolved Key Vault reference; check that the app's identity "
                    "can read the secret and that the reference points to an existing secret",
                )
            auth_mode = AuthMode.CONNECTION_STRING
        elif key_vault_url is not None or secret_name is not None:
            if key_vault_url is None:
                raise SettingsError("KEY_VAULT_URL", "is required with ACS_CONNECTION_STRING_SECRET_NAME")
            if secret_name is None:
                raise SettingsError("ACS_CONNECTION_STRING_SECRET_NAME", "is required with KEY_VAULT_URL")
            auth_mode = AuthMode.KEY_VAULT
        elif endpoint is not None:
            auth_mode = AuthMode.MANAGED_IDENTITY
        else:
            raise SettingsError(
                "ACS_CONNECTION_STRING",
                "no way to reach ACS is configured: set ACS_CONNECTION_STRING, "
                "or KEY_VAULT_URL with ACS_CONNECTION_STRING_SECRET_NAME, or ACS_ENDPOINT "
                "for managed identity",
            )

        default_sender = _text(env, "OPTOUT_DEFAULT_SENDER")
        audit = AuditStorageSettings.from_environ(env)
        allowed = _csv(env, "OPTOUT_ALLOWED_SENDERS")
        if not allowed and default_sender is not None:
            allowed = frozenset({default_sender})

        return cls(
            auth_mode=auth_mode,
            acs_connection_string=connection_string,
            acs_endpoint=endpoint,
            key_vault_url=key_vault_url,
            connection_string_secret_name=secret_name,
            secret_cache_seconds=_number(env, "ACS_SECRET_CACHE_SECONDS", DEFAULT_SECRET_CACHE_SECONDS, minimum=0),
            api_version=_text(env, "ACS_API_VERSION") or DEFAULT_API_VERSION,
            allow_insecure_bearer=_flag(env, "ACS_ALLOW_INSECURE_BEARER"),
            default_sender=default_sender,
            allowed_senders=allowed,
            default_region=(_text(env, "OPTOUT_DEFAULT_REGION") or DEFAULT_REGION).upper(),
            max_numbers=int(_number(env, "OPTOUT_MAX_NUMBERS", DEFAULT_MAX_NUMBERS, minimum=1)),
            max_concurrency=int(_number(env, "OPTOUT_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY, minimum=1)),
            max_body_bytes=int(_number(env, "OPTOUT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024)),
            time_budget_seconds=_number(env, "OPTOUT_TIME_BUDGET_SECONDS", DEFAULT_TIME_BUDGET_SECONDS, minimum=1),
            audit_table=audit.table,
            audit_checks=_flag(env, "OPTOUT_AUDIT_CHECKS"),
            audit_writes=_flag(env, "OPTOUT_AUDIT_WRITES", default=True),
            audit_container=audit.container,
            audit_index_queue=audit.index_queue,
            audit_reconcile_seconds=audit.reconcile_seconds,
            audit_storage_configured=storage_configured(STORAGE_CONNECTION, env),
            app_service_auth=_flag(env, "WEBSITE_AUTH_ENABLED"),
        )

    @property
    def audit_disabled_reason(self) -> str | None:
        """Why changes are not audited, or None when they are (decided once, from settings)."""
        if not self.audit_writes:
            return "OPTOUT_AUDIT_WRITES is false"
        if not self.audit_storage_configured:
            return f"{STORAGE_CONNECTION} is not configured"
        return None

    def describe(self) -> dict[str, object]:
        """What /api/health may show: the configuration's shape, never a secret."""
        return {
            "authMode": self.auth_mode.value,
            "acsEndpoint": self.acs_endpoint if self.auth_mode is AuthMode.MANAGED_IDENTITY else None,
            "keyVaultUrl": self.key_vault_url,
            "apiVersion": self.api_version,
            "defaultSender": self.default_sender,
            "allowedSenders": sorted(self.allowed_senders),
            "defaultRegion": self.default_region,
            "maxNumbers": self.max_numbers,
            "maxConcurrency": self.max_concurrency,
            "audit": {
                "enabled": self.audit_disabled_reason is None,
                "disabledReason": self.audit_disabled_reason,
                "checks": self.audit_checks,
                "verifiedCallers": self.app_service_auth,
            },
        }


@dataclass(frozen=True)
class AuditStorageSettings:
    """Where the audit trail lives; all the indexer needs (it never reaches ACS)."""

    table: str
    container: str
    index_queue: str
    reconcile_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "AuditStorageSettings":
        env = os.environ if environ is None else environ
        return cls(
            table=_text(env, "OPTOUT_AUDIT_TABLE") or DEFAULT_AUDIT_TABLE,
            container=_text(env, "OPTOUT_AUDIT_CONTAINER") or DEFAULT_AUDIT_CONTAINER,
            index_queue=audit_index_queue_name(env),
            reconcile_seconds=_bounded_number(env, "OPTOUT_AUDIT_RECONCILE_SECONDS", DEFAULT_AUDIT_RECONCILE_SECONDS,
                                              minimum=1, maximum=MAX_AUDIT_RECONCILE_SECONDS),
        )


@dataclass(frozen=True)
class QueueSettings:
    """Where queued requests come from and results go. Independent of how ACS is
    reached, so a `failed` result can be published even when ACS settings are broken."""

    requests_queue: str
    results_queue: str
    results_container: str
    time_budget_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "QueueSettings":
        env = os.environ if environ is None else environ
        return cls(
            requests_queue=_text(env, "OPTOUT_REQUESTS_QUEUE") or DEFAULT_REQUESTS_QUEUE,
            results_queue=_text(env, "OPTOUT_RESULTS_QUEUE") or DEFAULT_RESULTS_QUEUE,
            results_container=_text(env, "OPTOUT_RESULTS_CONTAINER") or DEFAULT_RESULTS_CONTAINER,
            time_budget_seconds=_number(
                env, "OPTOUT_QUEUE_TIME_BUDGET_SECONDS", DEFAULT_QUEUE_TIME_BUDGET_SECONDS, minimum=1
            ),
        )


def audit_index_queue_name(environ: Mapping[str, str] | None = None) -> str:
    """The indexer's queue; read when the functions are indexed, so a module-level call."""
    env = os.environ if environ is None else environ
    return _text(env, "OPTOUT_AUDIT_INDEX_QUEUE") or DEFAULT_AUDIT_INDEX_QUEUE


def storage_configured(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a Functions-style storage connection `name` is set in any of its shapes."""
    env = os.environ if environ is None else environ
    if _text(env, name) is not None:
        return True
    prefix = f"{name}__"
    return any(key.startswith(prefix) and str(value).strip() for key, value in env.items())


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _csv(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _flag(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    value = (_text(env, name) or str(default)).lower()
    if value in {"1", "true", "yes"}:
        return True
    if value in {"0", "false", "no"}:
        return False
    raise SettingsError(name, "must be true or false")


def _bounded_number(env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float) -> float:
    value = _number(env, name, default, minimum=minimum)
    if value > maximum:
        raise SettingsError(name, f"must be at most {maximum:g}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, "must be a number") from None
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum:g}")
    return value
