"""Numbers stream to the provider unless the audit trail must journal them first: a trail that
writes nothing (OPTOUT_AUDIT_WRITES=false, no storage) must not cost a pass over every number
before the first chunk can leave (bench section 2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from optouts.audit.callers import AuditContext
from optouts.audit.trail import AuditReceipt, AuditTrail
from optouts.domain.commands import OptOutCommand
from optouts.domain.operations import Operation
from optouts.domain.phone import normalize
from optouts.providers.base import RecipientOutcome, RecipientResult
from optouts.usecases import service as service_module
from optouts.usecases.service import OptOutService

from .conftest import SENDER

CONTEXT = AuditContext("http", "crm-sync@contoso.com", "corr-1", caller_id="id-1", verified=True, trace_id="t-1")
NUMBERS = tuple(f"+1425555{n:04d}" for n in range(250))


class _Storage:
    """Takes the intent and outcome writes in memory: enough for an enabled trail."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def send(self, message: Any, delay_seconds: float | None = None) -> None:
        pass

    def put_blob(self, name: str, data: bytes, overwrite: bool = True) -> None:
        self.blobs[name] = data

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _RecordingProvider:
    """Notes how many numbers had been normalized when the first one reached it."""

    name = "fake"

    def __init__(self, normalized: list[str]) -> None:
        self._normalized = normalized
        self.normalized_at_first: int | None = None

    def run(self, operation: Operation, sender: str, recipients: Iterable[str], *,
            time_budget: float | None = None) -> list[RecipientResult]:
        results = []
        for to in recipients:
            if self.normalized_at_first is None:
                self.normalized_at_first = len(self._normalized)
            results.append(RecipientResult(to, RecipientOutcome.SUCCEEDED, 200, None))
        return results

    def close(self) -> None:
        pass


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    def counting(raw: str, region: str | None) -> Any:
        seen.append(raw)
        return normalize(raw, region)

    monkeypatch.setattr(service_module, "normalize", counting)
    return seen


def _run(trail: AuditTrail | None, counted: list[str]) -> tuple[_RecordingProvider, Any]:
    provider = _RecordingProvider(counted)
    report = OptOutService(provider, trail).execute(  # type: ignore[arg-type]
        OptOutCommand(Operation.REMOVE, NUMBERS, SENDER, "US", None), audit=CONTEXT)
    assert report.summary["succeeded"] == len(NUMBERS)
    return provider, report


def test_a_trail_that_does_not_write_lets_numbers_stream(counted: list[str]) -> None:
    trail = AuditTrail(None, disabled_reason="OPTOUT_AUDIT_WRITES is false")
    provider, report = _run(trail, counted)
    assert provider.normalized_at_first == 1
    assert report.audit == AuditReceipt("disabled", disabled_reason="OPTOUT_AUDIT_WRITES is false")


def test_no_trail_lets_numbers_stream(counted: list[str]) -> None:
    provider, report = _run(None, counted)
    assert provider.normalized_at_first == 1
    assert report.audit is None


def test_a_writing_trail_journals_every_number_before_the_first_is_sent(counted: list[str]) -> None:
    storage = _Storage()
    provider, report = _run(AuditTrail(storage, reconcile_delay=60), counted)  # type: ignore[arg-type]
    assert provider.normalized_at_first == len(NUMBERS)
    assert report.audit is not None and report.audit.status == "accepted"
    assert any(name.endswith("intent.json") for name in storage.blobs), sorted(storage.blobs)
