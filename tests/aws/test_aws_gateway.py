"""ACS and AWS senders in one deployment: each sender routed to its provider behind the same
HTTP API, AWS's facts in check answers, listing for AWS senders (501 for ACS), the up-front
refusal of requests too slow for AWS's quotas, and the queue's longer budget for AWS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import pytest

from devtools.acs_emulator import AcsEmulator
from devtools.aws_emulator import AwsEmulator
from optouts import runtime
from tests.aws.conftest import FAST_RATES
from tests.conftest import SENDER as ACS_SENDER
from tests.test_http_api import assert_problem, body_of, call

AWS_SENDER = "+18005550177"
AWS_LIST = "MarketingList"
NUMBER, OTHER = "+14255550170", "+14255550171"


@dataclass
class Deployment:
    acs: AcsEmulator
    aws: AwsEmulator


@pytest.fixture
def deployment(emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    with AwsEmulator(rates={}) as aws:
        aws.store.create_list(AWS_LIST)
        for name, value in {
            "ACS_CONNECTION_STRING": emulator.connection_string,
            "OPTOUT_DEFAULT_SENDER": ACS_SENDER,
            "OPTOUT_ALLOWED_SENDERS": ACS_SENDER,
            "OPTOUT_AWS_SENDERS": f"{AWS_SENDER}={AWS_LIST}",
            "OPTOUT_TIME_BUDGET_SECONDS": "10",
            "OPTOUT_AUDIT_WRITES": "false",
            **aws.environ(),
            **FAST_RATES,
        }.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        try:
            yield Deployment(emulator, aws)
        finally:
            runtime.reset()


def test_each_sender_goes_to_its_provider(deployment: Deployment) -> None:
    aws_answer = call("AddOptOuts", body={"sender": AWS_SENDER, "phoneNumbers": [NUMBER]})
    acs_answer = call("AddOptOuts", body={"sender": ACS_SENDER, "phoneNumbers": [OTHER]})

    assert aws_answer.status_code == 200 and acs_answer.status_code == 200
    assert set(deployment.aws.store.numbers(AWS_LIST)) == {NUMBER}
    assert deployment.acs.opted_out(ACS_SENDER) == {OTHER}
    assert NUMBER not in deployment.acs.opted_out(AWS_SENDER)


def test_aws_facts_appear_in_check_answers(deployment: Deployment) -> None:
    deployment.aws.store.seed(AWS_LIST, [NUMBER], end_user=True)
    answer = body_of(call("CheckOptOuts", body={"sender": AWS_SENDER, "phoneNumbers": [NUMBER, OTHER]}))
    opted_out, not_opted_out = answer["results"]
    assert opted_out["optedOut"] is True and opted_out["details"]["endUserOptedOut"] is True
    assert opted_out["details"]["optOutList"] == AWS_LIST
    assert not_opted_out["optedOut"] is False
    acs_answer = body_of(call("CheckOptOuts", body={"sender": ACS_SENDER, "phoneNumbers": [NUMBER]}))
    assert "details" not in acs_answer["results"][0]


def test_the_30_day_rule_is_a_failed_number_with_its_own_code(deployment: Deployment) -> None:
    deployment.aws.store.seed(AWS_LIST, [NUMBER])
    deployment.aws.store.mark_removed(AWS_LIST, NUMBER)
    answer = body_of(call("RemoveOptOuts", body={"sender": AWS_SENDER, "phoneNumbers": [NUMBER]}))
    [result] = answer["results"]
    assert result["status"] == "failed" and result["error"]["code"] == "AwsRemovalTooSoon"
    assert answer["summary"]["failed"] == 1


def test_listing_pages_through_an_aws_list(deployment: Deployment) -> None:
    numbers = [f"+1425555{n:04d}" for n in range(150)]
    deployment.aws.store.seed(AWS_LIST, numbers)
    first = body_of(call("ListOptOuts", method="GET", params={"sender": AWS_SENDER}))
    assert len(first["value"]) == 100 and first["sender"] == AWS_SENDER
    link = first["nextLink"]
    assert link.startswith("http://127.0.0.1:7071/api/optouts?")
    token = link.split("continuationToken=", 1)[1]
    second = body_of(call("ListOptOuts", method="GET", params={"sender": AWS_SENDER, "continuationToken": unquote(token)}))
    assert "nextLink" not in second
    assert sorted(e["phoneNumber"] for e in first["value"] + second["value"]) == numbers


def test_listing_an_acs_sender_is_not_supported(deployment: Deployment) -> None:
    problem = assert_problem(call("ListOptOuts", method="GET", params={"sender": ACS_SENDER}), 501,
                             "ListingNotSupported")
    assert "check" in problem["detail"]


def test_a_forged_continuation_token_is_a_bad_request(deployment: Deployment) -> None:
    assert_problem(call("ListOptOuts", method="GET", params={"sender": AWS_SENDER, "continuationToken": "bm9wZQ=="}),
                   400, "InvalidContinuationToken")


def test_too_many_numbers_for_awss_rate_are_refused_up_front(deployment: Deployment,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER", "1")
    runtime.reset()
    problem = assert_problem(call("AddOptOuts", body={"sender": AWS_SENDER,
                                                      "phoneNumbers": [f"+1425555{n:04d}" for n in range(30)]}),
                             413, "AwsRateBudgetExceeded")
    assert "queue" in problem["detail"]
    assert deployment.aws.calls("PutOptedOutNumber") == []


def test_aws_credentials_refused_is_a_502_naming_aws(deployment: Deployment) -> None:
    deployment.aws.denied_actions.add("PutOptedOutNumber")
    problem = assert_problem(call("AddOptOuts", body={"sender": AWS_SENDER, "phoneNumbers": [NUMBER]}), 502,
                             "AwsAuthenticationFailed")
    assert "AWS End User Messaging SMS" in problem["detail"]


def test_health_describes_the_aws_senders(deployment: Deployment) -> None:
    configuration = body_of(call("Health", method="GET"))["configuration"]
    assert configuration["aws"]["senders"] == {AWS_SENDER: AWS_LIST}
    assert AWS_SENDER in configuration["allowedSenders"]


def test_the_single_check_route_serves_aws_senders(deployment: Deployment) -> None:
    deployment.aws.store.seed(AWS_LIST, [NUMBER])
    answer = call("GetOptOutStatus", method="GET", route_params={"phoneNumber": NUMBER},
                  params={"sender": AWS_SENDER})
    assert body_of(answer) == {"phoneNumber": NUMBER, "sender": AWS_SENDER, "optedOut": True}


def test_startup_validation_names_a_broken_aws_setting(deployment: Deployment) -> None:
    env = {"ACS_CONNECTION_STRING": deployment.acs.connection_string, "OPTOUT_DEFAULT_SENDER": ACS_SENDER,
           "AWS_REGION": "us-east-1"}
    assert runtime.settings_problems({**env, "OPTOUT_AWS_SENDERS": f"{AWS_SENDER}={AWS_LIST}"}) == []
    problems = runtime.settings_problems({**env, "OPTOUT_AWS_SENDERS": f"{AWS_SENDER}=bad list"})
    assert [problem.setting for problem in problems] == ["OPTOUT_AWS_SENDERS"]
