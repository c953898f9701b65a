"""ACS and AWS senders in one deployment, audited: every record names the provider that keeps
the sender's list, and AWS's facts (EndUserOptedOut, OptedOutTimestamp) are kept per number.
Against a real Azurite and both emulators, with the indexer fed from the real index queue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.acs_emulator import AcsEmulator
from devtools.aws_emulator import AwsEmulator
from devtools.azurite import Azurite
from optouts import runtime
from tests.aws.conftest import FAST_RATES
from tests.conftest import SENDER as ACS_SENDER
from tests.test_audit import audit_env, azurite, drain_index, names, operation  # noqa: F401 - fixtures
from tests.test_http_api import body_of, call

AWS_SENDER = "+18005550177"
AWS_LIST = "AuditedList"
NUMBER = "+14255550180"


@pytest.fixture
def mixed(audit_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEmulator]:
    with AwsEmulator(rates={}) as aws:
        aws.store.create_list(AWS_LIST)
        for name, value in {**aws.environ(), **FAST_RATES, "OPTOUT_AWS_SENDERS": f"{AWS_SENDER}={AWS_LIST}"}.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        try:
            yield aws
        finally:
            runtime.reset()


def history(sender: str, number: str) -> list[dict[str, object]]:
    answer = call("GetOptOutHistory", method="GET", route_params={"phoneNumber": number}, params={"sender": sender})
    assert answer.status_code == 200, answer.get_body()
    return list(body_of(answer)["value"])


def test_records_carry_the_provider_and_awss_facts(mixed: AwsEmulator, emulator: AcsEmulator,
                                                  azurite: Azurite, audit_env: dict[str, str]) -> None:
    mixed.store.seed(AWS_LIST, [NUMBER], end_user=True, timestamp=1_700_000_000.0)
    on_aws = body_of(call("RemoveOptOuts", body={"sender": AWS_SENDER, "phoneNumbers": [NUMBER]}))
    on_acs = body_of(call("AddOptOuts", body={"sender": ACS_SENDER, "phoneNumbers": [NUMBER]}))
    assert on_aws["summary"]["succeeded"] == 1 and on_acs["summary"]["succeeded"] == 1
    assert NUMBER in emulator.opted_out(ACS_SENDER) and mixed.store.numbers(AWS_LIST) == {}

    drain_index(azurite, audit_env["queue"])
    [aws_record] = history(AWS_SENDER, NUMBER)
    [acs_record] = history(ACS_SENDER, NUMBER)
    assert (aws_record["provider"], aws_record["action"], aws_record["outcome"]) == ("aws", "remove", "succeeded")
    details = aws_record["details"]
    assert isinstance(details, dict)
    assert details["endUserOptedOut"] is True and details["optOutList"] == AWS_LIST
    assert str(details["removedTimestamp"]).endswith("Z")
    assert (acs_record["provider"], acs_record["details"]) == ("acs", None)

    assert operation(on_aws["audit"]["operationId"])["provider"] == "aws"
    assert operation(on_acs["audit"]["operationId"])["provider"] == "acs"


def test_a_request_refused_for_awss_rate_is_recorded_as_failed(mixed: AwsEmulator, azurite: Azurite,
                                                              audit_env: dict[str, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Two adds at one per 50 s cannot finish within the 30 s budget.
    monkeypatch.setenv("OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER", "0.02")
    runtime.reset()
    answer = call("AddOptOuts", body={"sender": AWS_SENDER, "phoneNumbers": [NUMBER, "+14255550181"]})
    assert answer.status_code == 413
    drain_index(azurite, audit_env["queue"])
    [record] = history(AWS_SENDER, NUMBER)
    assert (record["provider"], record["outcome"], record["errorCode"]) == ("aws", "failed", "AwsRateBudgetExceeded")
    assert mixed.calls("PutOptedOutNumber") == []
