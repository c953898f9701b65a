"""The provider interface and what every provider shares: neutral errors, the fan-out, the
router and the fake provider. No HTTP: the fan-out is driven by in-memory chunk senders."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from azure.core.exceptions import AzureError, ClientAuthenticationError

from optouts.domain.operations import Operation
from optouts.providers import base
from optouts.providers.acs import errors as acs_errors
from optouts.providers.base import (
    Provider,
    ProviderAuthenticationError,
    ProviderError,
    ProviderThrottledError,
    ProviderUnavailableError,
    RecipientOutcome,
    RecipientResult,
)
from optouts.providers.fake import FakeProvider
from optouts.providers.fanout import ChunkAnswer, FanOut
from optouts.providers.router import ProviderRouter

SENDER = "+18005550100"


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+1425555{n:04d}" for n in range(start, start + count)]


def succeeded(chunk: list[str]) -> ChunkAnswer:
    return ChunkAnswer({to: RecipientResult(to, RecipientOutcome.SUCCEEDED, 200) for to in chunk})


def all_failed(failures: Sequence[ChunkAnswer]) -> Exception:
    return ProviderUnavailableError(f"{len(failures)} calls failed", retry_after=failures[0].retry_after)


# -- the interface ---------------------------------------------------------------------

def test_operation_is_the_domains_and_the_interface_names_it() -> None:
    from optouts.domain.operations import Operation as DomainOperation

    assert base.Operation is DomainOperation
    assert set(base.__all__) >= {"Operation", "Provider", "RecipientOutcome", "RecipientResult", "ProviderError",
                                 "ProviderAuthenticationError", "ProviderRejectedError", "ProviderTransientError",
                                 "ProviderThrottledError", "ProviderUnavailableError", "ProviderCredentialsError"}


def test_recipient_result_fields_extend_at_the_end() -> None:
    result = RecipientResult("+14255550100", RecipientOutcome.REJECTED, 400, "bad", None, "RejectedByAcs",
                             {"endUserOptedOut": True})
    assert (result.error_code, result.details, result.succeeded) == ("RejectedByAcs", {"endUserOptedOut": True}, False)
    plain = RecipientResult("+14255550100", RecipientOutcome.SUCCEEDED, 200)
    assert (plain.error_code, plain.details, plain.succeeded) == (None, None, True)


def test_neutral_errors_carry_a_code_and_retry_after() -> None:
    error = ProviderThrottledError("slow down", retry_after=7.0)
    assert (error.code, error.retry_after, str(error)) == ("UpstreamThrottled", 7.0, "slow down")
    assert ProviderThrottledError("x", code="AwsThrottled").code == "AwsThrottled"
    assert ProviderThrottledError("y").code == "UpstreamThrottled"  # an instance's code is its own
    assert isinstance(error, base.ProviderTransientError) and isinstance(error, ProviderError)
    assert base.ProviderCredentialsError("kv").code == "CredentialsUnavailable"


@pytest.mark.parametrize(
    ("error", "neutral", "code"),
    [
        (acs_errors.AcsAuthenticationError("401"), base.ProviderAuthenticationError, "AcsAuthenticationFailed"),
        (acs_errors.AcsBadRequestError("400"), base.ProviderRejectedError, "AcsRejectedRequest"),
        (acs_errors.AcsThrottledError("429", status_code=429, retry_after=3.0), base.ProviderThrottledError,
         "AcsThrottled"),
        (acs_errors.AcsUnavailableError("503", status_code=503, retry_after=None), base.ProviderUnavailableError,
         "AcsUnavailable"),
        (acs_errors.CredentialUnavailableError("vault"), base.ProviderCredentialsError, "CredentialsUnavailable"),
    ],
)
def test_acs_errors_implement_the_neutral_ones_with_their_public_codes(
    error: ProviderError, neutral: type[ProviderError], code: str
) -> None:
    assert isinstance(error, neutral) and isinstance(error, AzureError)  # Azure SDK callers keep working
    assert error.code == code
    assert error.upstream == "Azure Communication Services"


def test_acs_errors_keep_their_azure_core_bases_and_retry_after() -> None:
    assert isinstance(acs_errors.AcsAuthenticationError("401"), ClientAuthenticationError)
    throttled = acs_errors.AcsThrottledError("429", status_code=429, retry_after=3.0)
    assert (throttled.retry_after, throttled.status_code, throttled.message) == (3.0, 429, "429")
    assert acs_errors.AcsAuthenticationError("401").retry_after is None


def test_the_acs_client_and_the_fake_are_providers() -> None:
    from optouts.providers.acs.client import OptOutsClient

    assert OptOutsClient.name == "acs"
    fake = FakeProvider()
    try:
        assert isinstance(fake, Provider)
        assert isinstance(ProviderRouter(fake), Provider)
    finally:
        fake.close()


# -- the fan-out -----------------------------------------------------------------------

class RecordingSender:
    """Answers every recipient, recording calls and the most calls in flight at once."""

    def __init__(self, answer: object = None, pause: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._pause = pause

    def __call__(self, operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        with self._lock:
            self.calls.append(list(chunk))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self._pause:
                time.sleep(self._pause)  # lets other chunks overlap; nothing is asserted about time
            return succeeded(chunk)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_fanout_sends_each_distinct_recipient_once_and_answers_in_input_order() -> None:
    send = RecordingSender()
    fanout = FanOut(send, chunk_size=3, max_concurrency=2, all_failed=all_failed)
    try:
        wanted = ["+14255550103", "+14255550101", "+14255550103", "+14255550102", "+14255550101",
                  "+14255550104", "+14255550105"]

        def lazily() -> Iterator[str]:
            yield from wanted

        results = fanout.run(Operation.ADD, SENDER, lazily(), deadline=time.monotonic() + 30)
    finally:
        fanout.close()
    assert [r.to for r in results] == wanted
    sent = [to for call in send.calls for to in call]
    assert sorted(sent) == sorted(set(wanted)) and all(len(call) <= 3 for call in send.calls)


def test_fanout_bounds_the_calls_in_flight() -> None:
    send = RecordingSender(pause=0.02)
    fanout = FanOut(send, chunk_size=10, max_concurrency=3, all_failed=all_failed)
    try:
        results = fanout.run(Operation.CHECK, SENDER, numbers(400), deadline=time.monotonic() + 60)
    finally:
        fanout.close()
    assert len(results) == 400 and len(send.calls) == 40
    assert 1 <= send.most_in_flight <= 3


def test_fanout_retries_per_recipient_transient_failures_in_bounded_rounds() -> None:
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def flaky(operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        results = {}
        for to in chunk:
            with lock:
                attempts[to] = attempts.get(to, 0) + 1
            fails = to.endswith("1") or (to.endswith("2") and attempts[to] < 2)
            results[to] = (RecipientResult(to, RecipientOutcome.FAILED, 503, "busy", error_code="XUnavailable")
                           if fails else RecipientResult(to, RecipientOutcome.SUCCEEDED, 200))
        return ChunkAnswer(results)

    fanout = FanOut(flaky, chunk_size=100, max_concurrency=2, all_failed=all_failed, retry_rounds=2,
                    retry_backoff=0.0)
    try:
        results = fanout.run(Operation.ADD, SENDER, ["+14255550100", "+14255550101", "+14255550102"],
                             deadline=time.monotonic() + 30)
    finally:
        fanout.close()
    assert [r.outcome for r in results] == [RecipientOutcome.SUCCEEDED, RecipientOutcome.FAILED,
                                            RecipientOutcome.SUCCEEDED]
    assert results[1].error_code == "XUnavailable"
    assert attempts == {"+14255550100": 1, "+14255550101": 3, "+14255550102": 2}  # 1 + at most 2 rounds


def test_fanout_raises_the_providers_error_when_no_call_got_through() -> None:
    def down(operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        return ChunkAnswer.whole_call_failure(chunk, status_code=503, retry_after=4.0, message="down",
                                              error_code="XUnavailable")

    fanout = FanOut(down, chunk_size=2, max_concurrency=2, all_failed=all_failed)
    try:
        with pytest.raises(ProviderUnavailableError) as raised:
            fanout.run(Operation.REMOVE, SENDER, numbers(5), deadline=time.monotonic() + 30)
    finally:
        fanout.close()
    assert raised.value.retry_after == 4.0 and str(raised.value) == "3 calls failed"


def test_fanout_reports_whole_call_failures_per_number_when_others_were_answered() -> None:
    def half(operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        if chunk[0] == "+14255550000":
            return ChunkAnswer.whole_call_failure(chunk, status_code=429, retry_after=None, message="slow",
                                                  error_code="XThrottled")
        return succeeded(chunk)

    calls: list[list[str]] = []

    def recording(operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        calls.append(chunk)
        return half(operation, sender, chunk, deadline)

    fanout = FanOut(recording, chunk_size=2, max_concurrency=1, all_failed=all_failed, retry_backoff=0.0)
    try:
        results = fanout.run(Operation.ADD, SENDER, numbers(4), deadline=time.monotonic() + 30)
    finally:
        fanout.close()
    assert [r.outcome for r in results] == [RecipientOutcome.FAILED] * 2 + [RecipientOutcome.SUCCEEDED] * 2
    assert {r.error_code for r in results[:2]} == {"XThrottled"}
    assert len(calls) == 2  # a whole-call failure is not re-tried in rounds: its retries were spent


def test_fanout_stops_at_an_error_every_call_would_meet() -> None:
    calls: list[list[str]] = []

    def refused(operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        calls.append(chunk)
        raise ProviderAuthenticationError("no", code="XAuthenticationFailed")

    fanout = FanOut(refused, chunk_size=1, max_concurrency=1, all_failed=all_failed)
    try:
        with pytest.raises(ProviderAuthenticationError):
            fanout.run(Operation.ADD, SENDER, numbers(50), deadline=time.monotonic() + 30)
    finally:
        fanout.close()
    assert len(calls) < 50


def test_fanout_stops_retry_rounds_at_the_deadline() -> None:
    calls: list[list[str]] = []

    def failing(operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        calls.append(chunk)
        return ChunkAnswer({to: RecipientResult(to, RecipientOutcome.FAILED, 503) for to in chunk})

    fanout = FanOut(failing, chunk_size=10, max_concurrency=1, all_failed=all_failed, retry_rounds=5,
                    retry_backoff=60.0)
    try:
        results = fanout.run(Operation.ADD, SENDER, numbers(3), deadline=time.monotonic() + 5)
    finally:
        fanout.close()
    assert len(calls) == 1 and all(r.outcome is RecipientOutcome.FAILED for r in results)


def test_fanout_refuses_nonsense_sizes() -> None:
    with pytest.raises(ValueError):
        FanOut(RecordingSender(), chunk_size=0, max_concurrency=1, all_failed=all_failed)
    with pytest.raises(ValueError):
        FanOut(RecordingSender(), chunk_size=1, max_concurrency=0, all_failed=all_failed)


# -- the fake provider -----------------------------------------------------------------

def test_fake_provider_keeps_opt_out_lists_per_sender() -> None:
    fake = FakeProvider(chunk_size=2)
    try:
        fake.run(Operation.ADD, SENDER, ["+14255550100", "+14255550101", "+14255550100"])
        fake.run(Operation.REMOVE, SENDER, ["+14255550101"])
        checked = fake.run(Operation.CHECK, SENDER, ["+14255550100", "+14255550101"])
        other = fake.run(Operation.CHECK, "+18005550111", ["+14255550100"])
    finally:
        fake.close()
    assert [r.is_opted_out for r in checked] == [True, False]
    assert [r.is_opted_out for r in other] == [False]
    assert fake.calls[0].recipients == ("+14255550100", "+14255550101") and fake.closed


def test_fake_provider_answers_a_spent_budget_as_failed() -> None:
    fake = FakeProvider()
    try:
        with pytest.raises(ProviderUnavailableError):
            fake.run(Operation.ADD, SENDER, ["+14255550100"], time_budget=0)
    finally:
        fake.close()


# -- the router ------------------------------------------------------------------------

def test_router_sends_each_sender_to_its_provider() -> None:
    acs, aws = FakeProvider(name="acs"), FakeProvider(name="aws")
    router = ProviderRouter(acs, {"+18005550111": aws, " +18005550122 ": aws})
    try:
        router.run(Operation.ADD, SENDER, ["+14255550100"])
        router.run(Operation.ADD, "+18005550111", ["+14255550101"])
        router.run(Operation.ADD, "+18005550122", ["+14255550102"])
        assert router.provider_for("+18005550999") is acs and router.providers == [acs, aws]
    finally:
        router.close()
    assert [c.recipients for c in acs.calls] == [("+14255550100",)]
    assert [c.recipients for c in aws.calls] == [("+14255550101",), ("+14255550102",)]
    assert acs.closed and aws.closed


def test_router_closes_every_provider_even_when_one_fails() -> None:
    class Broken(FakeProvider):
        def close(self) -> None:
            super().close()
            raise RuntimeError("close failed")

    broken, other = Broken(name="acs"), FakeProvider(name="aws")
    with pytest.raises(RuntimeError):
        ProviderRouter(broken, {"+18005550111": other}).close()
    assert other.closed


def test_closing_the_fan_out_mid_operation_ends_it_with_every_number_answered() -> None:
    """close() (the host stopping) cancels queued chunks: their slots must come back, or the
    operation's next submit waits forever, and their numbers must be answered as not sent."""
    started = threading.Event()

    def slow(operation: Operation, sender: str, chunk: list[str], deadline: float) -> ChunkAnswer:
        started.set()
        time.sleep(0.3)
        return ChunkAnswer(results={to: RecipientResult(to, RecipientOutcome.SUCCEEDED, 200) for to in chunk})

    fanout = FanOut(slow, chunk_size=1, max_concurrency=2, pool_size=1, retry_rounds=0,
                    all_failed=lambda failures: ProviderUnavailableError("all failed"))
    numbers = [f"+1425555{n:04d}" for n in range(6)]
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_run_catching(fanout, numbers)), daemon=True)
    worker.start()
    assert started.wait(5)
    fanout.close()
    worker.join(10)
    assert not worker.is_alive(), "the operation hung after close()"
    (results,) = outcome
    assert isinstance(results, list), results
    assert [r.to for r in results] == numbers
    assert results[0].outcome is RecipientOutcome.SUCCEEDED
    not_sent = [r for r in results[1:] if r.outcome is RecipientOutcome.FAILED]
    assert not_sent and all("shutting down" in (r.error_message or "") for r in not_sent)


def _run_catching(fanout: FanOut, numbers: list[str]) -> object:
    try:
        return fanout.run(Operation.REMOVE, "+18005550100", iter(numbers), deadline=time.monotonic() + 30)
    except Exception as error:  # the test asserts on what came out
        return error
