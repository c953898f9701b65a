"""The gateway's settings, read from app settings (environment variables).

Each provider reads its own (optouts/providers/acs/settings.py); what is here holds whatever
provider serves a sender.

Reading settings never raises at import time: a missing or broken setting is
reported as a `SettingsError` naming the setting, when a function first needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

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


class SettingsError(Exception):
    """A setting is missing or malformed. The message names the setting, never its value."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"App setting {setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class Settings:
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

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        default_sender = _text(env, "OPTOUT_DEFAULT_SENDER")
        allowed = _csv(env, "OPTOUT_ALLOWED_SENDERS")
        if not allowed and default_sender is not None:
            allowed = frozenset({default_sender})

        return cls(
            default_sender=default_sender,
            allowed_senders=allowed,
            default_region=(_text(env, "OPTOUT_DEFAULT_REGION") or DEFAULT_REGION).upper(),
            max_numbers=int(_number(env, "OPTOUT_MAX_NUMBERS", DEFAULT_MAX_NUMBERS, minimum=1)),
            max_concurrency=int(_number(env, "OPTOUT_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY, minimum=1)),
            max_body_bytes=int(_number(env, "OPTOUT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024)),
            time_budget_seconds=_number(env, "OPTOUT_TIME_BUDGET_SECONDS", DEFAULT_TIME_BUDGET_SECONDS, minimum=1),
            audit_table=_text(env, "OPTOUT_AUDIT_TABLE") or DEFAULT_AUDIT_TABLE,
            audit_checks=_flag(env, "OPTOUT_AUDIT_CHECKS"),
            audit_writes=_flag(env, "OPTOUT_AUDIT_WRITES", default=True),
        )

    def describe(self) -> dict[str, object]:
        """What /api/health may show: the configuration's shape, never a secret."""
        return {
            "defaultSender": self.default_sender,
            "allowedSenders": sorted(self.allowed_senders),
            "defaultRegion": self.default_region,
            "maxNumbers": self.max_numbers,
            "maxConcurrency": self.max_concurrency,
        }


@dataclass(frozen=True)
class QueueSettings:
    """Where queued requests come from and results go. Independent of how ACS is
    reached, so a `failed` result can be published even when ACS settings are broken."""

    requests_queue: str
    results_queue: str
    results_container: str
    time_budget_seconds: float

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> QueueSettings:
        env = os.environ if environ is None else environ
        return cls(
            requests_queue=_text(env, "OPTOUT_REQUESTS_QUEUE") or DEFAULT_REQUESTS_QUEUE,
            results_queue=_text(env, "OPTOUT_RESULTS_QUEUE") or DEFAULT_RESULTS_QUEUE,
            results_container=_text(env, "OPTOUT_RESULTS_CONTAINER") or DEFAULT_RESULTS_CONTAINER,
            time_budget_seconds=_number(
                env, "OPTOUT_QUEUE_TIME_BUDGET_SECONDS", DEFAULT_QUEUE_TIME_BUDGET_SECONDS, minimum=1
            ),
        )


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
