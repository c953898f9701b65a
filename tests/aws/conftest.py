"""Fixtures for the AWS provider: the AWS emulator on 127.0.0.1 and providers pointed at it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.aws_emulator import AwsEmulator
from optouts.providers.aws import AwsSettings
from optouts.providers.aws.provider import AwsProvider

SENDER = "+18005550100"
LIST = "GatewayList"
PHONE_LIST = "PhoneNumberList"
ROLE_ARN = "arn:aws:iam::123456789012:role/sms-optout-gateway"
AUDIENCE = "api://AzureADTokenExchange"
#: Fast enough that functional tests never wait on the limiter.
FAST_RATES = {
    "OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER": "500",
    "OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER": "500",
    "OPTOUT_AWS_RPS_DESCRIBE_OPTED_OUT_NUMBERS": "500",
    "OPTOUT_AWS_RPS_DESCRIBE_PHONE_NUMBERS": "500",
}

# botocore's DEBUG records carry request bodies (phone numbers): the provider silences them,
# and so must tests that use boto3 directly.
logging.getLogger("botocore").setLevel(logging.INFO)


@pytest.fixture
def aws() -> Iterator[AwsEmulator]:
    with AwsEmulator(rates={}) as running:
        running.store.create_list(LIST)
        running.store.add_phone_number(SENDER, PHONE_LIST)
        running.sts.trust(ROLE_ARN, audience=AUDIENCE)
        yield running


def settings_for(aws: AwsEmulator, **overrides: str) -> AwsSettings:
    env: dict[str, Any] = {
        **aws.environ(),
        **FAST_RATES,
        "OPTOUT_AWS_SENDERS": f"{SENDER}={LIST}",
        "OPTOUT_AWS_MAX_ATTEMPTS": "3",
    }
    env.update(overrides)
    return AwsSettings.from_environ({k: v for k, v in env.items() if v is not None})


def make_provider(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch, *, budget: float = 30,
                  **overrides: str) -> AwsProvider:
    """The provider as runtime builds it (`from_settings`, standard credential chain from the
    environment), against the emulator."""
    for name, value in aws.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return AwsProvider.from_settings(settings_for(aws, **overrides), default_time_budget=budget)


@pytest.fixture
def provider(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProvider]:
    opened = make_provider(aws, monkeypatch)
    try:
        yield opened
    finally:
        opened.close()
