"""The AWS provider against the AWS emulator, through real boto3: every operation and error mapping."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from devtools.aws_emulator import AwsEmulator
from optouts.providers.aws.errors import RateBudgetExceededError
from optouts.providers.aws.provider import AwsProvider, InvalidNextTokenError
from optouts.providers.base import (
    Operation,
    ProviderAuthenticationError,
    ProviderRejectedError,
    ProviderThrottledError,
    ProviderUnavailableError,
    RecipientOutcome,
)

from .conftest import LIST, PHONE_LIST, SENDER, make_provider

A, B, C, D = "+14255550101", "+14255550102", "+14255550103", "+14255550104"


def numbers(count: int, start: int = 1000) -> list[str]:
    return [f"+1425555{start + i:04d}" for i in range(count)]


# -- add ---------------------------------------------------------------------------------------


def test_add_puts_each_distinct_number_once_in_first_seen_order(provider: AwsProvider, aws: AwsEmulator) -> None:
    results = provider.run(Operation.ADD, SENDER, [B, A, B, C])

    assert [r.to for r in results] == [B, A, C]
    assert all(r.outcome is RecipientOutcome.SUCCEEDED and r.status_code == 200 for r in results)
    assert set(aws.store.numbers(LIST)) == {A, B, C}
    assert len(aws.calls("PutOptedOutNumber")) == 3
    details = results[0].details
    assert details is not None
    assert details["endUserOptedOut"] is False and details["optOutList"] == LIST
    assert str(details["optedOutTimestamp"]).endswith("Z")


def test_add_keeps_an_end_users_own_opt_out_as_it_was(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.store.seed(LIST, [A], end_user=True, timestamp=1_700_000_000.0)

    [result] = provider.run(Operation.ADD, SENDER, [A])

    assert result.details == {"optOutList": LIST, "optedOutTimestamp": "2023-11-14T22:13:20.000Z",
                              "endUserOptedOut": True}


def test_a_malformed_number_is_rejected_and_the_others_go_on(provider: AwsProvider, aws: AwsEmulator) -> None:
    results = provider.run(Operation.ADD, SENDER, [A, "+12", B])

    assert [r.outcome for r in results] == [RecipientOutcome.SUCCEEDED, RecipientOutcome.REJECTED,
                                            RecipientOutcome.SUCCEEDED]
    assert results[1].status_code == 400 and results[1].error_code == "AwsInvalidNumber"
    assert "E.164" in (results[1].error_message or "")
    assert set(aws.store.numbers(LIST)) == {A, B}


# -- remove ----------------------------------------------------------------------------------------


def test_remove_deletes_and_reports_the_providers_facts(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.store.seed(LIST, [A], end_user=True)

    [result] = provider.run(Operation.REMOVE, SENDER, [A])

    assert result.outcome is RecipientOutcome.SUCCEEDED
    assert result.details is not None and result.details["endUserOptedOut"] is True
    assert str(result.details["removedTimestamp"]).endswith("Z") and "optedOutTimestamp" not in result.details
    assert aws.store.numbers(LIST) == {}


def test_removing_a_number_that_is_not_on_the_list_succeeds(provider: AwsProvider, aws: AwsEmulator) -> None:
    [result] = provider.run(Operation.REMOVE, SENDER, [B])

    assert result.outcome is RecipientOutcome.SUCCEEDED and result.error_code is None
    assert result.details == {"optOutList": LIST, "wasOptedOut": False}
    assert len(aws.calls("DeleteOptedOutNumber")) == 1


def test_a_second_removal_within_30_days_fails_with_its_own_code(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.store.seed(LIST, [A, B])
    aws.store.mark_removed(LIST, A, when=time.time() - 29 * 24 * 3600)
    aws.store.mark_removed(LIST, B, when=time.time() - 31 * 24 * 3600)

    too_soon, allowed = provider.run(Operation.REMOVE, SENDER, [A, B])

    # Final (not retried) and not the number's fault: a conflict with its state.
    assert too_soon.outcome is RecipientOutcome.REJECTED and too_soon.status_code == 409
    assert too_soon.error_code == "AwsRemovalTooSoon"
    assert "30 days" in (too_soon.error_message or "")
    assert allowed.outcome is RecipientOutcome.SUCCEEDED
    assert set(aws.store.numbers(LIST)) == {A}


# -- check -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("absent_numbers", ["error", "omit"])
def test_check_asks_for_at_most_five_numbers_per_call(monkeypatch: pytest.MonkeyPatch, absent_numbers: str) -> None:
    with AwsEmulator(rates={}, absent_numbers=absent_numbers) as aws:
        aws.store.create_list(LIST)
        wanted = numbers(12)
        opted_out = {wanted[0], wanted[6], wanted[7], wanted[11]}
        aws.store.seed(LIST, opted_out, end_user=True)
        provider = make_provider(aws, monkeypatch)
        try:
            results = provider.run(Operation.CHECK, SENDER, wanted)
        finally:
            provider.close()

        assert [r.to for r in results] == wanted
        assert {r.to for r in results if r.is_opted_out} == opted_out
        assert all(r.outcome is RecipientOutcome.SUCCEEDED and r.is_opted_out is not None for r in results)
        flagged = next(r for r in results if r.to == wanted[6])
        assert flagged.details is not None and flagged.details["endUserOptedOut"] is True
        groups = [wanted[i:i + 5] for i in range(0, 12, 5)]
        if absent_numbers == "omit":
            expected_calls = math.ceil(12 / 5)
        else:
            # Each absent number costs the call that names it; the rest of its group is asked again.
            expected_calls = sum(len([n for n in g if n not in opted_out]) + (1 if opted_out & set(g) else 0)
                                 for g in groups)
        assert len(aws.calls("DescribeOptedOutNumbers")) == expected_calls


def test_check_finds_the_malformed_number_in_its_group(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.store.seed(LIST, [B])

    results = provider.run(Operation.CHECK, SENDER, [A, "+12", B])

    by_number = {r.to: r for r in results}
    assert by_number["+12"].outcome is RecipientOutcome.REJECTED and by_number["+12"].status_code == 400
    assert by_number[A].is_opted_out is False and by_number[B].is_opted_out is True


# -- whole-call errors ----------------------------------------------------------------------------------


def test_an_unknown_opt_out_list_is_a_rejected_request(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_SENDERS=f"{SENDER}=NoSuchList")
    try:
        with pytest.raises(ProviderRejectedError) as raised:
            provider.run(Operation.ADD, SENDER, numbers(20))
    finally:
        provider.close()
    assert raised.value.code == "AwsRejectedRequest" and "NoSuchList" in str(raised.value)
    # The first refusal stops the operation: not one call per number.
    assert len(aws.calls("PutOptedOutNumber")) <= provider.settings.max_concurrency


def test_access_denied_is_an_authentication_failure(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.denied_actions.add("DeleteOptedOutNumber")

    with pytest.raises(ProviderAuthenticationError) as raised:
        provider.run(Operation.REMOVE, SENDER, [A, B])

    assert raised.value.code == "AwsAuthenticationFailed"
    assert raised.value.upstream == "AWS End User Messaging SMS"  # how answers name who refused
    assert "sms-voice:DeleteOptedOutNumber" in str(raised.value)


def test_a_wrong_secret_is_an_authentication_failure(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make_provider(aws, monkeypatch)
    monkeypatch.setattr(aws, "secret_access_key", "not-the-secret")
    try:
        with pytest.raises(ProviderAuthenticationError):
            provider.run(Operation.CHECK, SENDER, [A])
    finally:
        provider.close()
    assert aws.auth_failures() == {"InvalidSignatureException": 1}


# -- throttling and outages --------------------------------------------------------------------------------


def test_throttling_is_retried_by_botocore(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.inject("PutOptedOutNumber", "ThrottlingException")

    [result] = provider.run(Operation.ADD, SENDER, [A])

    assert result.outcome is RecipientOutcome.SUCCEEDED
    assert len(aws.calls("PutOptedOutNumber")) == 2


def test_a_number_still_throttled_after_retries_fails_transiently(
        aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.inject("PutOptedOutNumber", *["ThrottlingException"] * 2)  # every attempt of the first number
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_MAX_CONCURRENCY="1", OPTOUT_AWS_MAX_ATTEMPTS="2")
    try:
        results = provider.run(Operation.ADD, SENDER, [A, B])
    finally:
        provider.close()

    assert sorted(r.outcome.value for r in results) == ["failed", "succeeded"]
    failed = next(r for r in results if r.outcome is RecipientOutcome.FAILED)
    assert (failed.error_code, failed.status_code) == ("AwsThrottled", 429)


def test_every_number_throttled_raises_throttled(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.inject("PutOptedOutNumber", *["ThrottlingException"] * 4)
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_MAX_ATTEMPTS="2")
    try:
        with pytest.raises(ProviderThrottledError) as raised:
            provider.run(Operation.ADD, SENDER, [A, B])
    finally:
        provider.close()
    assert raised.value.code == "AwsThrottled"


def test_every_call_failing_raises_unavailable(provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.inject("DescribeOptedOutNumbers", *["InternalServerException"] * 3)

    with pytest.raises(ProviderUnavailableError) as raised:
        provider.run(Operation.CHECK, SENDER, [A, B])
    assert raised.value.code == "AwsUnavailable"


def test_an_emulator_that_is_gone_fails_every_number(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_MAX_ATTEMPTS="1")
    aws.stop()
    try:
        with pytest.raises(ProviderUnavailableError):
            provider.run(Operation.ADD, SENDER, [A])
    finally:
        provider.close()


def test_quota_throttling_without_pacing_is_absorbed_by_adaptive_retries(
        aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.configure_rates({"PutOptedOutNumber": 20})
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_MAX_ATTEMPTS="10", OPTOUT_AWS_MAX_CONCURRENCY="8")
    try:
        results = provider.run(Operation.ADD, SENDER, numbers(40))
    finally:
        provider.close()

    assert aws.throttled("PutOptedOutNumber") > 0
    assert all(r.outcome is RecipientOutcome.SUCCEEDED for r in results)
    assert len(aws.store.numbers(LIST)) == 40


# -- time budget and rate ------------------------------------------------------------------------------------


def test_a_request_that_cannot_finish_in_its_budget_is_refused_before_any_call(
        aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make_provider(aws, monkeypatch, budget=60, OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER="1")
    try:
        with pytest.raises(RateBudgetExceededError) as raised:
            provider.run(Operation.ADD, SENDER, numbers(100))
        assert provider.run(Operation.ADD, SENDER, numbers(2)) != []
    finally:
        provider.close()
    error = raised.value
    assert error.code == "AwsRateBudgetExceeded" and error.status == 413
    assert error.estimated_seconds >= 99 and error.budget_seconds == 60
    assert "queue" in str(error)
    assert len(aws.calls("PutOptedOutNumber")) == 2


def test_a_shared_quota_is_divided_between_instances(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER="10",
                             OPTOUT_AWS_MAX_INSTANCES="4")
    try:
        assert provider.settings.rates["DeleteOptedOutNumber"] == 2.5
        assert provider.estimate_seconds(Operation.REMOVE, 11) == pytest.approx(4.0, abs=0.01)
    finally:
        provider.close()


def test_a_100_number_remove_at_10_rps_takes_9_seconds_and_is_never_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator enforces AWS's default quota (10 per second for DeleteOptedOutNumber).
    with AwsEmulator() as aws:
        aws.store.create_list(LIST)
        wanted = numbers(100)
        aws.store.seed(LIST, wanted)
        provider = make_provider(aws, monkeypatch, OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER="10")
        try:
            started = time.monotonic()
            results = provider.run(Operation.REMOVE, SENDER, wanted)
            elapsed = time.monotonic() - started
        finally:
            provider.close()

        assert elapsed >= 9.0
        assert aws.throttled() == 0
        assert all(r.outcome is RecipientOutcome.SUCCEEDED for r in results)
        assert aws.store.numbers(LIST) == {}
        assert len(aws.calls("DeleteOptedOutNumber")) == 100


# -- the sender's list ----------------------------------------------------------------------------------------


def test_a_bare_senders_list_is_looked_up_once(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for extra in ("+18005550177", "+18005550178"):
        aws.store.add_phone_number(extra, "Default")
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_SENDERS=SENDER)
    try:
        provider.run(Operation.ADD, SENDER, [A])
        provider.run(Operation.ADD, SENDER, [B])
    finally:
        provider.close()

    assert set(aws.store.numbers(PHONE_LIST)) == {A, B}
    assert len(aws.calls("DescribePhoneNumbers")) == 1


def test_a_bare_sender_the_account_does_not_own_is_rejected(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_SENDERS="+18005550199")
    try:
        with pytest.raises(ProviderRejectedError) as raised:
            provider.run(Operation.ADD, "+18005550199", [A])
    finally:
        provider.close()
    assert "sender=optOutListName" in str(raised.value)
    assert aws.calls("PutOptedOutNumber") == []


def test_a_sender_not_configured_for_aws_is_rejected(provider: AwsProvider) -> None:
    with pytest.raises(ProviderRejectedError):
        provider.run(Operation.ADD, "+18005550111", [A])


# -- listing ---------------------------------------------------------------------------------------------------


def test_listing_pages_through_the_whole_list(provider: AwsProvider, aws: AwsEmulator) -> None:
    seeded = numbers(230)
    aws.store.seed(LIST, seeded[:200], end_user=True)
    aws.store.seed(LIST, seeded[200:], end_user=False)

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = provider.list_opted_out(SENDER, next_token=token)
        pages += 1
        seen.extend(entry.phone_number for entry in page.numbers)
        token = page.next_token
        if token is None:
            break
    assert pages == 3 and sorted(seen) == sorted(seeded)

    page = provider.list_opted_out(SENDER, end_user_opted_out=False)
    assert {entry.phone_number for entry in page.numbers} == set(seeded[200:])
    details = page.numbers[0].details
    assert details is not None and details["endUserOptedOut"] is False and details["optOutList"] == LIST


def test_listing_refuses_a_forged_continuation_token(provider: AwsProvider) -> None:
    with pytest.raises(InvalidNextTokenError):
        provider.list_opted_out(SENDER, next_token="bm90LWEtdG9rZW4=")


def test_concurrent_operations_share_one_pace(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two callers at once: together they stay within the quota (one limiter per process).
    aws.configure_rates({"DeleteOptedOutNumber": 20})
    first, second = numbers(20), numbers(20, start=3000)
    aws.store.seed(LIST, first + second)
    provider = make_provider(aws, monkeypatch, OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER="20",
                             OPTOUT_AWS_MAX_CONCURRENCY="8")
    try:
        with ThreadPoolExecutor(max_workers=2) as callers:
            started = time.monotonic()
            runs = [callers.submit(provider.run, Operation.REMOVE, SENDER, batch) for batch in (first, second)]
            results = [result for run in runs for result in run.result()]
            elapsed = time.monotonic() - started
    finally:
        provider.close()
    assert all(r.outcome is RecipientOutcome.SUCCEEDED for r in results)
    assert elapsed >= 39 / 20
    assert aws.throttled() == 0


def test_once_aws_names_absent_numbers_in_errors_checks_are_estimated_per_number(
        provider: AwsProvider, aws: AwsEmulator) -> None:
    aws.absent_numbers = "error"
    assert provider.estimate_seconds(Operation.CHECK, 100) == pytest.approx(19 / 500, abs=0.01)
    provider.run(Operation.CHECK, SENDER, [A, B])  # neither is on the list: the emulator names them
    assert provider.estimate_seconds(Operation.CHECK, 100) == pytest.approx(99 / 500, abs=0.01)
