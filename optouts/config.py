"""The gateway's settings, read from app settings (environment variables).

Each provider reads its own (ACS: optouts/providers/acs/settings.py); the ones here hold
whichever provider serves a sender.

Reading settings never raises at import time: a missing or broken setting is
reported as a `SettingsError` naming the setting, when a function first needs it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self, TypeVar

DEFAULT_REGION = "US"
DEFAULT_MAX_NUMBERS = 10_000
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_BODY_BYTES = 1_048_576
DEFAULT_TIME_BUDGET_SECONDS = 60.0
DEFAULT_REQUESTS_QUEUE = "optout-requests"
DEFAULT_RESULTS_QUEUE = "optout-results"
DEFAULT_RESULTS_CONTAINER = "optout-results"
DEFAULT_QUEUE_TIME_BUDGET_SECONDS = 20.0
DEFAULT_AUDIT_TABLE = "optoutaudit"
DEFAULT_AUDIT_CONTAINER = "optout-operations"
DEFAULT_AUDIT_INDEX_QUEUE = "optout-audit-index"
DEFAULT_AUDIT_RECONCILE_SECONDS = 300.0
DEFAULT_EVENTS_QUEUE = "optout-events"
#: Where change events go (docs/change-events.md): a Storage queue, an Event Grid custom topic, or both.
EVENT_SINKS = ("queue", "eventgrid")
DEFAULT_EVENT_SINKS = ("queue",)
#: Storage queues hide a message for at most 7 days.
MAX_AUDIT_RECONCILE_SECONDS = 7 * 24 * 3600.0
DEFAULT_JOBS_QUEUE = "optout-jobs"
DEFAULT_JOBS_TABLE = "optoutjobs"
DEFAULT_JOBS_CONTAINER = "optout-jobs"
DEFAULT_UPLOADS_CONTAINER = "optout-uploads"
DEFAULT_JOB_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_JOB_MAX_ROWS = 1_000_000
DEFAULT_JOB_MAX_BLOB_BYTES = 256 * 1024 * 1024
DEFAULT_JOB_ITEM_SIZE = 1_000
DEFAULT_JOB_REPORT_SAS_MINUTES = 15
MAX_JOB_REPORT_SAS_MINUTES = 60
DEFAULT_JOB_MAX_STREAMED_REPORT_BYTES = 64 * 1024 * 1024
#: The storage connection the Functions host, the queues and the audit trail share.
STORAGE_CONNECTION = "AzureWebJobsStorage"

_T = TypeVar("_T")


class SettingsError(Exception):
    """A setting is missing or malformed. The message names the setting, never its value."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"App setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


class EnvironSettings:
    """Settings read from app settings. `_read` collects every problem instead of stopping at the
    first, so startup and readiness can list them all while a request sees the first."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The settings, or a `SettingsError` for the first problem (`problems` lists them all)."""
        reader = _Reader(os.environ if environ is None else environ)
        settings = cls._read(reader)
        if reader.problems:
            raise reader.problems[0]
        return settings

    @classmethod
    def problems(cls, environ: Mapping[str, str] | None = None) -> list[SettingsError]:
        """Every problem of these settings, one per setting (startup, readiness)."""
        reader = _Reader(os.environ if environ is None else environ)
        cls._read(reader)
        return reader.problems

    @classmethod
    def _read(cls, env: _Reader) -> Self:
        raise NotImplementedError


@dataclass(frozen=True)
class Settings(EnvironSettings):
    """The gateway's own settings: senders, limits, the audit trail. How each provider is
    reached is its own settings' business (optouts/providers/acs/settings.py)."""

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
    def _read(cls, env: _Reader) -> Settings:
        default_sender = _text(env, "OPTOUT_DEFAULT_SENDER")
        if default_sender is not None and (problem := sender_problem(default_sender)):
            env.problem("OPTOUT_DEFAULT_SENDER", problem)
        listed = _csv(env, "OPTOUT_ALLOWED_SENDERS")
        allowed = frozenset(listed)
        bad = [position for position, sender in enumerate(listed, start=1) if sender_problem(sender)]
        if bad:
            # Positions, not values: whatever was pasted there stays out of the log.
            env.problem("OPTOUT_ALLOWED_SENDERS",
                        f"entry {', '.join(map(str, bad[:10]))} of {len(listed)}: "
                        f"{sender_problem(listed[bad[0] - 1])}")
        if not allowed and default_sender is not None:
            allowed = frozenset({default_sender})
        elif default_sender is not None and not bad and not sender_problem(default_sender) and (
            comparable_sender(default_sender) not in {comparable_sender(s) for s in allowed}
        ):
            env.problem("OPTOUT_DEFAULT_SENDER",
                        "is not in OPTOUT_ALLOWED_SENDERS, so every request without a sender would be refused")

        audit = AuditStorageSettings._read(env)
        region = (_text(env, "OPTOUT_DEFAULT_REGION") or DEFAULT_REGION).upper()
        if len(region) != 2 or not region.isascii() or not region.isalpha():
            env.problem("OPTOUT_DEFAULT_REGION", "must be a two-letter ISO 3166 region code such as US or GB")

        return cls(
            default_sender=default_sender,
            allowed_senders=allowed,
            default_region=region,
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
            audit_storage_configured=storage_configured(STORAGE_CONNECTION, env.mapping),
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
class AuditStorageSettings(EnvironSettings):
    """Where the audit trail lives; all the indexer needs (it never reaches ACS)."""

    table: str
    container: str
    index_queue: str
    reconcile_seconds: float
    #: Why changes are not journalled (OPTOUT_AUDIT_WRITES=false, no storage), or None.
    writes_disabled_reason: str | None = None

    @classmethod
    def _read(cls, env: _Reader) -> AuditStorageSettings:
        names = {
            "OPTOUT_AUDIT_CONTAINER": _text(env, "OPTOUT_AUDIT_CONTAINER") or DEFAULT_AUDIT_CONTAINER,
            "OPTOUT_AUDIT_INDEX_QUEUE": audit_index_queue_name(env.mapping),
        }
        for setting, name in names.items():
            if not _STORAGE_NAME.fullmatch(name) or "--" in name:
                env.problem(setting, "must be 3 to 63 lowercase letters, digits and single hyphens, "
                                     "starting and ending with a letter or digit (Azure Storage naming rules)")
        reconcile = _number(env, "OPTOUT_AUDIT_RECONCILE_SECONDS", DEFAULT_AUDIT_RECONCILE_SECONDS, minimum=1)
        if reconcile > MAX_AUDIT_RECONCILE_SECONDS:
            env.problem("OPTOUT_AUDIT_RECONCILE_SECONDS", f"must be at most {MAX_AUDIT_RECONCILE_SECONDS:g}")
            reconcile = DEFAULT_AUDIT_RECONCILE_SECONDS
        return cls(
            table=_text(env, "OPTOUT_AUDIT_TABLE") or DEFAULT_AUDIT_TABLE,
            container=names["OPTOUT_AUDIT_CONTAINER"],
            index_queue=names["OPTOUT_AUDIT_INDEX_QUEUE"],
            reconcile_seconds=reconcile,
            writes_disabled_reason=_writes_disabled_reason(env),
        )


def _writes_disabled_reason(env: _Reader) -> str | None:
    # Read leniently: a broken OPTOUT_AUDIT_WRITES is the gateway's settings problem to report
    # (Settings), and must not stop the functions that only need the trail's storage.
    if (_text(env, "OPTOUT_AUDIT_WRITES") or "").lower() in {"0", "false", "no"}:
        return "OPTOUT_AUDIT_WRITES is false"
    if not storage_configured(STORAGE_CONNECTION, env.mapping):
        return f"{STORAGE_CONNECTION} is not configured"
    return None


@dataclass(frozen=True)
class EventSettings(EnvironSettings):
    """Where change events go. They are emitted by the audit indexer from the journal, so they
    need the audit trail: with it off, no operation is journalled and no event is sent."""

    sinks: tuple[str, ...]
    queue: str
    #: The custom topic's endpoint, https://<topic>.<region>-1.eventgrid.azure.net/api/events.
    topic_endpoint: str | None

    @classmethod
    def _read(cls, env: _Reader) -> EventSettings:
        listed = [name.lower() for name in _csv(env, "OPTOUT_EVENTS_SINKS")] or list(DEFAULT_EVENT_SINKS)
        sinks = tuple(dict.fromkeys(name for name in listed if name != "none"))
        unknown = [name for name in sinks if name not in EVENT_SINKS]
        if unknown or ("none" in listed and len(listed) > 1):
            env.problem("OPTOUT_EVENTS_SINKS", "must be none, or a comma-separated list of queue and eventgrid")
            sinks = tuple(name for name in sinks if name in EVENT_SINKS)
        queue = _text(env, "OPTOUT_EVENTS_QUEUE") or DEFAULT_EVENTS_QUEUE
        if not _STORAGE_NAME.fullmatch(queue) or "--" in queue:
            env.problem("OPTOUT_EVENTS_QUEUE", "must be 3 to 63 lowercase letters, digits and single hyphens, "
                        "starting and ending with a letter or digit (Azure Storage naming rules)")
        endpoint = _text(env, "OPTOUT_EVENTS_TOPIC_ENDPOINT")
        if "eventgrid" in sinks and endpoint is None:
            env.problem("OPTOUT_EVENTS_TOPIC_ENDPOINT", "is required when OPTOUT_EVENTS_SINKS names eventgrid")
        elif endpoint is not None and not endpoint.lower().startswith("https://"):
            # The managed identity's bearer token must never travel in clear text.
            env.problem("OPTOUT_EVENTS_TOPIC_ENDPOINT", "must start with https://")
        return cls(sinks=sinks, queue=queue, topic_endpoint=endpoint)

    def describe(self, audit_disabled_reason: str | None) -> dict[str, object]:
        """What /api/health shows; `audit_disabled_reason` is the trail's, since events come from it."""
        return {
            "sinks": list(self.sinks),
            "queue": self.queue if "queue" in self.sinks else None,
            "topicEndpoint": self.topic_endpoint if "eventgrid" in self.sinks else None,
            "enabled": bool(self.sinks) and audit_disabled_reason is None,
            "disabledReason": ("OPTOUT_EVENTS_SINKS is none" if not self.sinks
                               else f"change events come from the audit trail, which is off ({audit_disabled_reason})"
                               if audit_disabled_reason else None),
        }


@dataclass(frozen=True)
class QueueSettings(EnvironSettings):
    """Where queued requests come from and results go. Independent of how ACS is
    reached, so a `failed` result can be published even when ACS settings are broken."""

    requests_queue: str
    results_queue: str
    results_container: str
    time_budget_seconds: float

    @classmethod
    def _read(cls, env: _Reader) -> QueueSettings:
        names = {
            "OPTOUT_REQUESTS_QUEUE": _text(env, "OPTOUT_REQUESTS_QUEUE") or DEFAULT_REQUESTS_QUEUE,
            "OPTOUT_RESULTS_QUEUE": _text(env, "OPTOUT_RESULTS_QUEUE") or DEFAULT_RESULTS_QUEUE,
            "OPTOUT_RESULTS_CONTAINER": _text(env, "OPTOUT_RESULTS_CONTAINER") or DEFAULT_RESULTS_CONTAINER,
        }
        for setting, name in names.items():
            if not _STORAGE_NAME.fullmatch(name) or "--" in name:
                env.problem(setting, "must be 3 to 63 lowercase letters, digits and single hyphens, "
                                     "starting and ending with a letter or digit (Azure Storage naming rules)")
        return cls(
            requests_queue=names["OPTOUT_REQUESTS_QUEUE"],
            results_queue=names["OPTOUT_RESULTS_QUEUE"],
            results_container=names["OPTOUT_RESULTS_CONTAINER"],
            time_budget_seconds=_number(
                env, "OPTOUT_QUEUE_TIME_BUDGET_SECONDS", DEFAULT_QUEUE_TIME_BUDGET_SECONDS, minimum=1
            ),
        )


@dataclass(frozen=True)
class JobSettings(EnvironSettings):
    """Where jobs live and how large they may be (docs/jobs.md)."""

    queue: str
    table: str
    container: str
    uploads_container: str
    max_body_bytes: int
    max_rows: int
    max_blob_bytes: int
    item_size: int
    report_sas_minutes: int
    max_streamed_report_bytes: int

    @classmethod
    def _read(cls, env: _Reader) -> JobSettings:
        names = {
            "OPTOUT_JOBS_QUEUE": jobs_queue_name(env.mapping),
            "OPTOUT_JOBS_CONTAINER": _text(env, "OPTOUT_JOBS_CONTAINER") or DEFAULT_JOBS_CONTAINER,
            "OPTOUT_UPLOADS_CONTAINER": _text(env, "OPTOUT_UPLOADS_CONTAINER") or DEFAULT_UPLOADS_CONTAINER,
        }
        for setting, name in names.items():
            if not _STORAGE_NAME.fullmatch(name) or "--" in name:
                env.problem(setting, "must be 3 to 63 lowercase letters, digits and single hyphens, "
                                     "starting and ending with a letter or digit (Azure Storage naming rules)")
        table = _text(env, "OPTOUT_JOBS_TABLE") or DEFAULT_JOBS_TABLE
        if not _TABLE_NAME.fullmatch(table):
            env.problem("OPTOUT_JOBS_TABLE", "must be 3 to 63 letters and digits, starting with a letter")
            table = DEFAULT_JOBS_TABLE
        sas_minutes = int(_number(env, "OPTOUT_JOB_REPORT_SAS_MINUTES", DEFAULT_JOB_REPORT_SAS_MINUTES, minimum=1))
        if sas_minutes > MAX_JOB_REPORT_SAS_MINUTES:
            env.problem("OPTOUT_JOB_REPORT_SAS_MINUTES", f"must be at most {MAX_JOB_REPORT_SAS_MINUTES}")
            sas_minutes = DEFAULT_JOB_REPORT_SAS_MINUTES
        return cls(
            queue=names["OPTOUT_JOBS_QUEUE"],
            table=table,
            container=names["OPTOUT_JOBS_CONTAINER"],
            uploads_container=names["OPTOUT_UPLOADS_CONTAINER"],
            max_body_bytes=int(_number(env, "OPTOUT_JOB_MAX_BODY_BYTES", DEFAULT_JOB_MAX_BODY_BYTES, minimum=1024)),
            max_rows=int(_number(env, "OPTOUT_JOB_MAX_ROWS", DEFAULT_JOB_MAX_ROWS, minimum=1)),
            max_blob_bytes=int(_number(env, "OPTOUT_JOB_MAX_BLOB_BYTES", DEFAULT_JOB_MAX_BLOB_BYTES, minimum=1024)),
            item_size=int(_number(env, "OPTOUT_JOB_ITEM_SIZE", DEFAULT_JOB_ITEM_SIZE, minimum=1)),
            report_sas_minutes=sas_minutes,
            max_streamed_report_bytes=int(_number(env, "OPTOUT_JOB_MAX_STREAMED_REPORT_BYTES",
                                                  DEFAULT_JOB_MAX_STREAMED_REPORT_BYTES, minimum=1024)),
        )


def jobs_queue_name(environ: Mapping[str, str] | _Reader | None = None) -> str:
    """The jobs' work queue, read when the functions are indexed."""
    return _text(os.environ if environ is None else environ, "OPTOUT_JOBS_QUEUE") or DEFAULT_JOBS_QUEUE


def requests_queue_name(environ: Mapping[str, str] | None = None) -> str:
    """The queue the trigger listens on, read when the app is indexed. Never raises: a bad name
    is reported by `all_problems` at startup and by readiness, not by a failed indexing."""
    return _text(os.environ if environ is None else environ, "OPTOUT_REQUESTS_QUEUE") or DEFAULT_REQUESTS_QUEUE


def audit_index_queue_name(environ: Mapping[str, str] | None = None) -> str:
    """The indexer's queue; read when the functions are indexed, so a module-level call."""
    return _text(os.environ if environ is None else environ, "OPTOUT_AUDIT_INDEX_QUEUE") or DEFAULT_AUDIT_INDEX_QUEUE


def storage_configured(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a Functions-style storage connection `name` is set in any of its shapes."""
    env = os.environ if environ is None else environ
    if _text(env, name) is not None:
        return True
    prefix = f"{name}__"
    return any(key.startswith(prefix) and str(value).strip() for key, value in env.items())


def all_problems(environ: Mapping[str, str] | None = None) -> list[SettingsError]:
    """What is wrong with the gateway's settings, one message per problem, never a value
    (optouts.runtime.settings_problems adds the providers'). Beyond what `from_environ`
    refuses, a gateway with no sender at all is reported, since it would refuse every request."""
    env = os.environ if environ is None else environ
    problems = (Settings.problems(env) + QueueSettings.problems(env) + JobSettings.problems(env)
                + EventSettings.problems(env))
    if _text(env, "OPTOUT_DEFAULT_SENDER") is None and not _csv(env, "OPTOUT_ALLOWED_SENDERS"):
        problems.append(SettingsError("OPTOUT_DEFAULT_SENDER", "no sender is configured: set OPTOUT_DEFAULT_SENDER "
                                      "(and OPTOUT_ALLOWED_SENDERS for more than one), or every request is refused"))
    return problems


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
_STORAGE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")


def comparable_sender(sender: str) -> str:
    """Toll-free and 10DLC senders compare as E.164 (spaces, dashes, dots, brackets ignored)."""
    compact = "".join(c for c in sender if c not in " -().")
    if compact.startswith("+") and compact[1:].isdigit():
        return compact
    return sender.strip()


def sender_problem(sender: str) -> str | None:
    """Why `sender` cannot own an opt-out list, or None. A list exists for numbers that can
    receive a STOP: phone numbers (E.164) and short codes. Alphanumeric sender ids are
    one-way in ACS (nobody can reply STOP to them), so a name such as `hello` is refused."""
    compact = comparable_sender(sender)
    if _E164.fullmatch(compact) or _SHORT_CODE.fullmatch(compact):
        return None
    return ("must be a phone number in E.164 format such as +18005550100, or a short code of 3 to 8 digits "
            "(alphanumeric sender ids are one-way and have no opt-out list)")


class _Reader:
    """The environment, read so that problems are collected instead of stopping at the first:
    an operator sees everything to fix at once. A broken value reads as its default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        #: The environment itself, for the few reads that look at more than one name.
        self.mapping = env
        self.problems: list[SettingsError] = []

    def get(self, name: str, default: str = "") -> str:
        return self._env.get(name, default)

    def problem(self, setting: str, problem: str) -> None:
        self.problems.append(SettingsError(setting, problem))


def _text(env: Mapping[str, str] | _Reader, name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _csv(env: Mapping[str, str] | _Reader, name: str) -> list[str]:
    return [part.strip() for part in env.get(name, "").split(",") if part.strip()]


def _flag(env: Mapping[str, str] | _Reader, name: str, *, default: bool = False) -> bool:
    value = (_text(env, name) or str(default)).lower()
    if value in {"1", "true", "yes"}:
        return True
    if value in {"0", "false", "no"}:
        return False
    return _refuse(env, SettingsError(name, "must be true or false"), default)


def _number(env: Mapping[str, str] | _Reader, name: str, default: float, *, minimum: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        return _refuse(env, SettingsError(name, "must be a number"), default)
    if not minimum <= value < math.inf:  # NaN and infinity too: int() of either raises
        return _refuse(env, SettingsError(name, f"must be a finite number of at least {minimum:g}"), default)
    return value


def _refuse(env: Mapping[str, str] | _Reader, error: SettingsError, default: _T) -> _T:
    if isinstance(env, _Reader):
        env.problems.append(error)
        return default
    raise error
