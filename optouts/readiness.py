"""Readiness: can this instance serve requests right now?

`/api/health` only says the process is up (liveness). Readiness checks, in order, what a
request needs: the settings, the credentials for ACS, an answer from ACS (a signed check of
one fixed test number for the default sender) and the storage account behind the queue API.
Results are kept for `CACHE_SECONDS`, and only one probe runs at a time, so a probe every few
seconds costs ACS and Storage at most one call each per period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ResourceNotFoundError

from optouts.azure.storage import queue_client
from optouts.config import QueueSettings, Settings, SettingsError, all_problems
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem
from optouts.providers.base import (
    Provider,
    ProviderAuthenticationError,
    ProviderCredentialsError,
    ProviderRejectedError,
    ProviderTransientError,
    RecipientOutcome,
)
from optouts.providers.router import ProviderRouter
from optouts.usecases.service import OptOutService

_logger = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
#: A fictional number (555-01xx is reserved for fiction in North America): checking it
#: changes nothing and tells whether ACS answers for the sender.
TEST_NUMBER = "+14255550100"
ACS_TIME_BUDGET_SECONDS = 5.0
STORAGE_TIMEOUT_SECONDS = 5.0

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
DEPENDENCIES = ("settings", "credentials", "acs", "storage")


@dataclass(frozen=True)
class Check:
    status: str
    detail: str | None = None
    code: str | None = None
    duration_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status}
        if self.code is not None:
            data["code"] = self.code
        if self.detail is not None:
            data["detail"] = self.detail
        if self.duration_ms is not None:
            data["durationMs"] = round(self.duration_ms, 1)
        return data


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, Check]
    checked_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return all(check.status != FAILED for check in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, check in self.checks.items() if check.status == FAILED]

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not-ready",
                "checks": {name: check.to_dict() for name, check in self.checks.items()}}


class ReadinessProbe:
    def __init__(
        self,
        *,
        environ: Callable[[], Any],
        settings: Callable[[], Settings],
        service: Callable[[], OptOutService],
        storage_check: Callable[[], None],
        problems: Callable[[Any], list[SettingsError]] = all_problems,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._environ = environ
        self._settings = settings
        self._service = service
        self._storage_check = storage_check
        self._problems = problems
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Readiness] | None = None

    def check(self) -> Readiness:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            readiness = self._probe()
            self._cached = (self._clock(), readiness)
        if not readiness.ready:
            _logger.warning("not ready: %s", "; ".join(
                f"{name} {readiness.checks[name].code or 'failed'}" for name in readiness.failed))
        return readiness

    def _probe(self) -> Readiness:
        checks: dict[str, Check] = {}
        problems = self._problems(self._environ())
        if problems:
            checks["settings"] = Check(FAILED, "; ".join(str(p) for p in problems[:10]), "GatewayMisconfigured")
            checks["credentials"] = Check(SKIPPED, "the settings are broken")
            checks["acs"] = Check(SKIPPED, "the settings are broken")
        else:
            checks["settings"] = Check(OK)
            checks.update(self._probe_acs())
        checks["storage"] = _timed(self._probe_storage)
        return Readiness({name: checks[name] for name in DEPENDENCIES})

    def _probe_acs(self) -> dict[str, Check]:
        try:
            service = self._service()
        except Problem as problem:
            return {"credentials": Check(FAILED, problem.detail, problem.code), "acs": Check(SKIPPED, "no credentials")}
        except SettingsError as error:
            return {"credentials": Check(FAILED, str(error), "GatewayMisconfigured"),
                    "acs": Check(SKIPPED, "no credentials")}
        settings = self._settings()
        sender = settings.default_sender or min(settings.allowed_senders, default=None)
        if sender is None:
            return {"credentials": Check(OK), "acs": Check(SKIPPED, "no sender is configured")}
        started = time.perf_counter()
        provider = service.provider
        if isinstance(provider, ProviderRouter):
            provider = provider.provider_for(sender)
        credentials, acs = _check_provider(provider, sender)
        elapsed = (time.perf_counter() - started) * 1000
        return {"credentials": credentials, "acs": Check(acs.status, acs.detail, acs.code, elapsed)}

    def _probe_storage(self) -> Check:
        try:
            self._storage_check()
        except SettingsError as error:
            return Check(FAILED, str(error), "GatewayMisconfigured")
        except ResourceNotFoundError:
            return Check(FAILED, "the requests queue does not exist", "QueueNotFound")
        except AzureError as error:
            return Check(FAILED, f"no answer from Storage ({type(error).__name__})", "StorageUnavailable")
        return Check(OK)


def _check_provider(provider: Provider, sender: str) -> tuple[Check, Check]:
    """(credentials, upstream) for one check of the test number; codes from the provider's errors."""
    where = f"{provider.name.upper()} at {urlsplit(getattr(provider, 'endpoint', '')).hostname}"
    try:
        [result] = provider.run(Operation.CHECK, sender, [TEST_NUMBER], time_budget=ACS_TIME_BUDGET_SECONDS)
    except ProviderCredentialsError as error:
        return Check(FAILED, str(error), error.code), Check(SKIPPED, "no credentials")
    except ProviderAuthenticationError as error:
        return Check(OK), Check(FAILED, f"{where} rejected the gateway's credentials or does not own the "
                                        "sender", error.code)
    except ProviderTransientError as error:
        return Check(OK), Check(FAILED, f"{where} is throttling or unavailable", error.code)
    except ProviderRejectedError as error:
        return Check(OK), Check(FAILED, f"{where} rejected the check call", error.code)
    if result.outcome is RecipientOutcome.SUCCEEDED:
        return Check(OK), Check(OK)
    return Check(OK), Check(FAILED, f"{where} answered {result.status_code} for the test number",
                            # The readiness contract's codes for the "acs" check (docs: README Operations).
                            "AcsUnavailable" if result.outcome is RecipientOutcome.FAILED else "AcsRejectedRequest")


def _timed(probe: Callable[[], Check]) -> Check:
    started = time.perf_counter()
    check = probe()
    return Check(check.status, check.detail, check.code, (time.perf_counter() - started) * 1000)


def storage_check(queue_settings: Callable[[], QueueSettings]) -> Callable[[], None]:
    """Reads the requests queue's properties: the account answers, the credentials work and
    the queue the trigger listens on exists. The client is built once and reused."""
    client: list[Any] = []

    def check() -> None:
        if not client:
            client.append(queue_client(queue_settings().requests_queue, connection_timeout=STORAGE_TIMEOUT_SECONDS,
                                       read_timeout=STORAGE_TIMEOUT_SECONDS,
                                       # The prober asks again; the SDK would wait 15 s before its retry.
                                       retry_total=0))
        client[0].get_queue_properties()

    return check
