"""Upstream faults end to end over HTTP: the local host serving the app, the ACS emulator
injecting faults (or ACS unreachable, hanging, or refusing the gateway's key).

Every number must reach a definite state. With transient faults only every number must end
`succeeded`; the gateway's own per-recipient retry rounds are fixed in code (2 rounds, no app
setting), so at a 20% per-recipient error rate about 0.2**3 = 0.8% of numbers are still
`failed` after one request, and the caller re-sends exactly those, as the API documents
("calling again is safe"), for at most MAX_CALLER_PASSES passes.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azurite import Azurite
from devtools.localhost import LocalHost

from ..conftest import OTHER_SENDER, SENDER
from .faults import TRANSIENT_ERROR_CODES, TRANSIENT_FAULTS, distinct_numbers
from .gateway import RawClient, assert_problem, closed_port, running_gateway

NUMBER_COUNT = 10_000
PER_REQUEST = 1_000
CALLERS = 2
MAX_CALLER_PASSES = 4
#: Expected ~0.8% after the first pass; a much higher share means the retry rounds broke.
MAX_FIRST_PASS_FAILED_SHARE = 0.03
#: Short, so that the failure scenarios answer quickly; every wait is bounded by it.
SHORT_BUDGET_SECONDS = "3"


@pytest.fixture
def acs() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER, OTHER_SENDER}) as running:
        yield running


def send_pass(host: LocalHost, numbers: list[str]) -> dict[str, dict]:
    """One `add` per PER_REQUEST numbers, CALLERS at a time; every number's outcome."""
    batches = [numbers[start:start + PER_REQUEST] for start in range(0, len(numbers), PER_REQUEST)]

    def send(batch: list[str]) -> dict[str, dict]:
        client = RawClient(host.base_url)
        try:
            answer = client.post_json("/api/optouts/add", {"phoneNumbers": batch})
        finally:
            client.close()
        if answer.status == 503:  # every call of this request failed: a definite, retryable state
            problem = assert_problem(answer, 503)
            assert problem["code"] in TRANSIENT_ERROR_CODES and "retry-after" in answer.headers
            return {n: {"status": "failed", "error": {"code": problem["code"]}} for n in batch}
        assert answer.status == 200, (answer.status, answer.body[:300])
        body = answer.json()
        assert [r["input"] for r in body["results"]] == batch
        return {r["input"]: r for r in body["results"]}

    outcomes: dict[str, dict] = {}
    with ThreadPoolExecutor(CALLERS) as pool:
        for part in pool.map(send, batches):
            outcomes.update(part)
    return outcomes


def test_ten_thousand_numbers_all_succeed_through_transient_faults(azurite: Azurite, acs: AcsEmulator) -> None:
    acs.faults = TRANSIENT_FAULTS
    numbers = distinct_numbers(425, NUMBER_COUNT)
    failed_per_pass: list[int] = []
    with running_gateway(acs.connection_string, azurite.connection_string,
                         OPTOUT_MAX_NUMBERS=str(PER_REQUEST), OPTOUT_TIME_BUDGET_SECONDS="60") as host:
        pending = numbers
        for _ in range(MAX_CALLER_PASSES):
            if not pending:
                break
            outcomes = send_pass(host, pending)
            for number in pending:
                result = outcomes[number]
                assert result["status"] in ("succeeded", "failed"), result  # definite, and never `invalid`
                if result["status"] == "failed":
                    assert result["error"]["code"] in TRANSIENT_ERROR_CODES, result
                else:
                    assert result["phoneNumber"] == number
            pending = [n for n in pending if outcomes[n]["status"] == "failed"]
            failed_per_pass.append(len(pending))
    stats = acs.stats
    print(f"\n10,000 numbers over HTTP with transient faults: still failed after each pass {failed_per_pass}; "
          f"ACS calls {stats['total_calls']} by status {stats['by_status']}")
    assert failed_per_pass[0] <= MAX_FIRST_PASS_FAILED_SHARE * NUMBER_COUNT, failed_per_pass
    assert pending == [], f"still failed after {MAX_CALLER_PASSES} passes: {len(pending)}"
    assert set(numbers) <= acs.opted_out(SENDER)
    # The faults really happened: throttling, whole-call 503s and per-recipient retries.
    assert stats["by_status"].get(429, 0) > 0 and stats["by_status"].get(503, 0) > 0


def test_acs_unreachable_is_a_503_problem(azurite: Azurite) -> None:
    dead = f"endpoint=http://127.0.0.1:{closed_port()}/;accesskey={base64.b64encode(secrets.token_bytes(32)).decode()}"
    with running_gateway(dead, azurite.connection_string, OPTOUT_TIME_BUDGET_SECONDS=SHORT_BUDGET_SECONDS) as host:
        client = RawClient(host.base_url)
        bulk = client.post_json("/api/optouts/remove", {"phoneNumbers": ["+14255550100", "+14255550101"]})
        single = client.request("GET", "/api/optouts/+14255550100")
        client.close()
    for answer in (bulk, single):
        assert_problem(answer, 503, "AcsUnavailable")
        assert int(answer.headers["retry-after"]) >= 1


def test_acs_hanging_is_answered_within_the_budget_with_a_503(azurite: Azurite, acs: AcsEmulator) -> None:
    # ACS accepts the connection and never answers in time; the budget bounds the wait.
    acs.faults = FaultConfig(hang_seconds=8)
    with running_gateway(acs.connection_string, azurite.connection_string,
                         OPTOUT_TIME_BUDGET_SECONDS=SHORT_BUDGET_SECONDS) as host:
        client = RawClient(host.base_url)  # its own timeout bounds the test should the budget not hold
        bulk = client.post_json("/api/optouts/check", {"phoneNumbers": ["+14255550100"]})
        single = client.request("GET", "/api/optouts/+14255550100")
        client.close()
    for answer in (bulk, single):
        assert_problem(answer, 503, "AcsUnavailable")
        assert "retry-after" in answer.headers


def test_bad_credentials_are_a_502_without_a_retry_storm(azurite: Azurite, acs: AcsEmulator) -> None:
    wrong_key = base64.b64encode(secrets.token_bytes(32)).decode()
    connection_string = f"endpoint={acs.endpoint}/;accesskey={wrong_key}"
    requests_sent = 5
    numbers = distinct_numbers(206, 250)  # three chunks per request
    with running_gateway(connection_string, azurite.connection_string, OPTOUT_TIME_BUDGET_SECONDS="30") as host:
        client = RawClient(host.base_url)
        answers = [client.post_json("/api/optouts/add", {"phoneNumbers": numbers}) for _ in range(requests_sent)]
        answers.append(client.request("GET", "/api/optouts/+14255550100"))
        client.close()
    for answer in answers:
        assert_problem(answer, 502, "AcsAuthenticationFailed")
        assert wrong_key.encode() not in answer.body
    stats = acs.stats
    # At most one call per chunk (3 per bulk request, 1 for the GET): a 401 is never retried.
    assert stats["total_calls"] <= requests_sent * 3 + 1, stats
    assert set(stats["by_status"]) == {401}, stats
    assert acs.opted_out(SENDER) == set()


def test_sender_acs_does_not_own_is_a_502(azurite: Azurite) -> None:
    with AcsEmulator(owned_senders={SENDER}) as acs, running_gateway(
            acs.connection_string, azurite.connection_string, OPTOUT_TIME_BUDGET_SECONDS="10") as host:
        client = RawClient(host.base_url)
        answer = client.post_json("/api/optouts/add", {"phoneNumbers": ["+14255550100"], "sender": OTHER_SENDER})
        client.close()
        assert_problem(answer, 502)
        assert acs.stats["total_calls"] == 1
