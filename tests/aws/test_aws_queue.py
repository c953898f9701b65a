"""Queued requests for AWS senders: the longer AWS budget, and a request too slow even for it
published as `rejected` at once (redelivering it would only fail again)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.aws_emulator import AwsEmulator
from optouts import runtime
from optouts.usecases.queued_requests import QueuedMessage, QueuedRequestProcessor
from tests.aws.conftest import FAST_RATES

AWS_SENDER = "+18005550177"
AWS_LIST = "QueueList"


class Published:
    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def publish(self, result: dict[str, Any]) -> None:
        self.results.append(result)


@pytest.fixture
def aws_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEmulator]:
    """An AWS-only deployment: no ACS setting at all."""
    with AwsEmulator(rates={}) as aws:
        aws.store.create_list(AWS_LIST)
        for name in ("ACS_CONNECTION_STRING", "ACS_ENDPOINT", "KEY_VAULT_URL", "ACS_CONNECTION_STRING_SECRET_NAME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**aws.environ(), **FAST_RATES, "OPTOUT_AWS_SENDERS": f"{AWS_SENDER}={AWS_LIST}",
                            "OPTOUT_DEFAULT_SENDER": AWS_SENDER, "OPTOUT_AUDIT_WRITES": "false",
                            "OPTOUT_AWS_QUEUE_TIME_BUDGET_SECONDS": "120"}.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        try:
            yield aws
        finally:
            runtime.reset()


def processor(published: Published) -> QueuedRequestProcessor:
    return QueuedRequestProcessor(settings=runtime.get_settings, service=runtime.get_service,
                                  publisher=published,  # type: ignore[arg-type]
                                  max_dequeue_count=5,
                                  time_budget=lambda sender: runtime.queue_time_budget(20.0, sender))


def message(body: dict[str, Any]) -> QueuedMessage:
    return QueuedMessage(id="m-1", body=json.dumps(body).encode(), dequeue_count=1)


def test_an_aws_only_deployment_serves_its_senders(aws_only: AwsEmulator) -> None:
    published = Published()
    state = processor(published).process(message({"action": "add", "phoneNumbers": ["+14255550101"]}))
    assert state == "completed"
    assert published.results[0]["summary"]["succeeded"] == 1
    assert "+14255550101" in aws_only.store.numbers(AWS_LIST)


def test_queued_aws_requests_get_the_longer_budget(aws_only: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 adds at 1 per second: over the queue's 20 s, within AWS's 120 s queue budget (not run: refused
    # up front or not is decided before any call, so a 1 s pace would only slow the test).
    monkeypatch.setenv("OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER", "1")
    runtime.reset()
    assert runtime.queue_time_budget(20.0, AWS_SENDER) == 120.0
    assert runtime.queue_time_budget(20.0, "+18005550100") == 20.0


def test_a_queued_request_too_slow_even_for_its_budget_is_rejected_at_once(
        aws_only: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER", "1")
    runtime.reset()
    published = Published()
    numbers = [f"+1425555{n:04d}" for n in range(200)]
    state = processor(published).process(message({"action": "add", "phoneNumbers": numbers}))
    assert state == "rejected"
    [result] = published.results
    assert result["status"] == "rejected" and result["error"]["code"] == "AwsRateBudgetExceeded"
    assert result["error"]["status"] == 413
    assert aws_only.calls("PutOptedOutNumber") == []
