"""AwsSettings: OPTOUT_AWS_SENDERS, the standard AWS variables, rates and credential modes."""

from __future__ import annotations

import pytest

from optouts.config import SettingsError
from optouts.providers.aws import AwsCredentialMode, AwsSettings
from optouts.providers.aws.ratelimit import RateLimiter

BASE = {"AWS_REGION": "eu-west-1"}


def settings(**env: str) -> AwsSettings:
    return AwsSettings.from_environ({**BASE, **env})


def test_senders_name_their_list_or_are_looked_up() -> None:
    parsed = settings(OPTOUT_AWS_SENDERS=" +18005550100=Marketing , +18005550101,BRAND=arn:aws:sms-voice:"
                                         "eu-west-1:123456789012:opt-out-list/Brand ")
    assert dict(parsed.senders) == {
        "+18005550100": "Marketing",
        "+18005550101": None,
        "BRAND": "arn:aws:sms-voice:eu-west-1:123456789012:opt-out-list/Brand",
    }
    assert parsed.configured and parsed.is_aws_sender("BRAND") and not parsed.is_aws_sender("+18005550199")
    # Compared as requests' senders are: numbers as compact E.164.
    assert dict(settings(OPTOUT_AWS_SENDERS="+1 (800) 555-0100=L").senders) == {"+18005550100": "L"}


@pytest.mark.parametrize(("env", "setting"), [
    ({"OPTOUT_AWS_SENDERS": "BRAND"}, "OPTOUT_AWS_SENDERS"),            # a sender id has no number to look up
    ({"OPTOUT_AWS_SENDERS": "+18005550100=bad list"}, "OPTOUT_AWS_SENDERS"),
    ({"OPTOUT_AWS_SENDERS": "=List"}, "OPTOUT_AWS_SENDERS"),
    ({"AWS_REGION": "", "OPTOUT_AWS_SENDERS": "+18005550100=L"}, "AWS_REGION"),
    ({"AWS_REGION": "Mars"}, "AWS_REGION"),
    ({"OPTOUT_AWS_ROLE_ARN": "role/gateway"}, "OPTOUT_AWS_ROLE_ARN"),
    ({"OPTOUT_AWS_ACCESS_KEY_SECRET_NAME": "aws-keys"}, "KEY_VAULT_URL"),
    ({"AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2": "http://sms.example.com"}, "AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2"),
    ({"AWS_ENDPOINT_URL": "ftp://127.0.0.1"}, "AWS_ENDPOINT_URL"),
    ({"OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER": "0"}, "OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER"),
    ({"OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER": "nan"}, "OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER"),
    ({"OPTOUT_AWS_SESSION_SECONDS": "60"}, "OPTOUT_AWS_SESSION_SECONDS"),
])
def test_bad_settings_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings(**env)
    assert raised.value.setting == setting


def test_every_problem_is_listed_at_once_and_the_first_is_raised() -> None:
    """As the gateway's and ACS's settings: an operator sees everything to fix in one startup log."""
    env = {**BASE, "AWS_REGION": "Mars", "OPTOUT_AWS_SENDERS": "BRAND", "OPTOUT_AWS_MAX_INSTANCES": "0",
           "OPTOUT_AWS_ROLE_SESSION_NAME": "x"}
    problems = AwsSettings.problems(env)
    assert [p.setting for p in problems] == ["OPTOUT_AWS_SENDERS", "AWS_REGION", "OPTOUT_AWS_MAX_INSTANCES",
                                             "OPTOUT_AWS_ROLE_SESSION_NAME"]
    with pytest.raises(SettingsError) as raised:
        AwsSettings.from_environ(env)
    assert raised.value.setting == "OPTOUT_AWS_SENDERS"


def test_the_service_endpoint_wins_over_the_global_one() -> None:
    parsed = settings(AWS_ENDPOINT_URL="https://global.example", AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2="http://127.0.0.1:8090")
    assert parsed.endpoint_url == "http://127.0.0.1:8090"
    assert parsed.sts_endpoint_url == "https://global.example"


def test_default_rates_are_awss_default_quotas_shared_between_instances() -> None:
    assert dict(settings().rates) == {"PutOptedOutNumber": 1.0, "DeleteOptedOutNumber": 10.0,
                                      "DescribeOptedOutNumbers": 1.0, "DescribePhoneNumbers": 1.0}
    shared = settings(OPTOUT_AWS_MAX_INSTANCES="4", OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER="20")
    assert shared.rates["PutOptedOutNumber"] == 5.0 and shared.quotas["PutOptedOutNumber"] == 20.0
    assert shared.rates["DeleteOptedOutNumber"] == 2.5


def test_credential_modes() -> None:
    assert settings().credential_mode is AwsCredentialMode.DEFAULT_CHAIN
    federated = settings(OPTOUT_AWS_ROLE_ARN="arn:aws:iam::123456789012:role/gateway")
    assert federated.credential_mode is AwsCredentialMode.WEB_IDENTITY
    assert federated.web_identity_audience == "api://AzureADTokenExchange"
    vaulted = settings(KEY_VAULT_URL="https://v.vault.azure.net", OPTOUT_AWS_ACCESS_KEY_SECRET_NAME="aws-keys")
    assert vaulted.credential_mode is AwsCredentialMode.KEY_VAULT


def test_describe_shows_the_shape_and_no_secret() -> None:
    described = settings(OPTOUT_AWS_SENDERS="+18005550100=L,+18005550101",
                         OPTOUT_AWS_ROLE_ARN="arn:aws:iam::123456789012:role/gateway",
                         AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").describe()
    assert described["senders"] == {"+18005550100": "L", "+18005550101": "(looked up from the number)"}
    assert described["credentialMode"] == "web-identity" and described["retryMode"] == "adaptive"
    assert "wJalrXUtnFEMI" not in repr(described)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_limiter_spaces_calls_without_a_burst() -> None:
    fake = FakeTime()
    limiter = RateLimiter(10, clock=fake.clock, sleep=fake.sleep)
    for _ in range(10):
        assert limiter.acquire()
    assert fake.now == pytest.approx(100.9)
    assert len(fake.slept) == 9 and all(s == pytest.approx(0.1) for s in fake.slept)


def test_the_rate_limiter_refuses_a_slot_past_the_deadline_and_keeps_it() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1, clock=fake.clock, sleep=fake.sleep)
    assert limiter.acquire(deadline=100.5)
    assert not limiter.acquire(deadline=100.5)  # the next slot is at 101
    assert limiter.estimate(3) == pytest.approx(3.0)
    assert limiter.acquire(deadline=101.0) and fake.now == pytest.approx(101.0)
