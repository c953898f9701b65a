"""Security checks through the local host: function keys on every product route, the sender
allow-list, request-size caps; and bandit over the deployed code, run from here so CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost

from ..conftest import OTHER_SENDER, SENDER
from .gateway import KEY, RawClient, assert_problem, running_gateway

REPO = Path(__file__).resolve().parents[2]
MAX_BODY_BYTES = 4_096
MAX_NUMBERS = 5
NOT_ALLOWED_SENDER = "+18005559999"


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsEmulator]:
    # Owns a sender the gateway may not act for: only the allow-list stands in the way.
    with AcsEmulator(owned_senders={SENDER, OTHER_SENDER, NOT_ALLOWED_SENDER}) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(azurite: Azurite, acs: AcsEmulator) -> Iterator[LocalHost]:
    with running_gateway(acs.connection_string, azurite.connection_string,
                         OPTOUT_MAX_BODY_BYTES=str(MAX_BODY_BYTES), OPTOUT_MAX_NUMBERS=str(MAX_NUMBERS),
                         OPTOUT_TIME_BUDGET_SECONDS="10") as host:
        yield host


@pytest.fixture(scope="module")
def http(gateway: LocalHost) -> Iterator[RawClient]:
    client = RawClient(gateway.base_url)
    yield client
    client.close()


def product_routes(host: LocalHost) -> list[tuple[str, str]]:
    """(method, path) of every route that needs a key, as the app indexes them: a new route is covered."""
    routes = []
    for function in host.http_functions:
        if function.auth_level == "anonymous":
            continue
        path = "/api/" + function.route.template.replace("{phoneNumber}", "+14255550100").replace(
            "{operationId}", UNKNOWN_OPERATION_ID).replace("{jobId}", UNKNOWN_OPERATION_ID)
        routes += [(method, path) for method in sorted(function.methods)]
    return routes


#: A well-formed id no operation has: with the key, the function itself answers 404.
UNKNOWN_OPERATION_ID = "0" * 32
WRONG_KEYS = ["", "x", KEY[:-1], KEY + "x", KEY.upper(), "default", KEY + "\x00"]
#: A header value's surrounding blanks are not part of it (HTTP trims them); in a query they are.
WRONG_CODES = [*WRONG_KEYS, " " + KEY]


def test_every_product_route_needs_a_function_key(gateway: LocalHost, http: RawClient) -> None:
    routes = product_routes(gateway)
    # remove, add, check, single check, listing, history, health, readiness, operation record;
    # jobs: create, get, cancel, report
    assert len(routes) == 13
    body = json.dumps({"phoneNumbers": ["+14255550100"]}).encode()
    for method, path in routes:
        payload = body if method == "POST" else None
        headers = {"content-type": "application/json"}
        refused = [http.request(method, path, payload, headers, key=None)]
        refused += [http.request(method, path, payload, {**headers, "x-functions-key": k}, key=None)
                    for k in WRONG_KEYS if "\x00" not in k]
        refused += [http.request(method, f"{path}?code={quote(k)}", payload, headers, key=None) for k in WRONG_CODES]
        for answer in refused:
            assert (answer.status, answer.body) == (401, b""), (method, path, answer.status)
        by_header = http.request(method, path, payload, headers)
        by_code = http.request(method, f"{path}?code={KEY}", payload, headers, key=None)
        # Listing: the default sender is ACS's, which cannot list (501 once the key is right). Jobs
        # take no phoneNumbers (400 once the key is right).
        expected = 404 if UNKNOWN_OPERATION_ID in path else 501 if path == "/api/optouts" else \
            400 if path == "/api/jobs" else 200
        assert by_header.status == expected and by_code.status == expected, (method, path, by_header.status,
                                                                             by_code.status)


def test_only_the_contract_is_anonymous_and_it_holds_no_secret(gateway: LocalHost, http: RawClient,
                                                               acs: AcsEmulator) -> None:
    anonymous = [f.name for f in gateway.http_functions if f.auth_level == "anonymous"]
    assert anonymous == ["OpenApiDocument"]
    answer = http.request("GET", "/api/openapi.json", key=None)
    assert answer.status == 200
    for secret in (KEY, gateway.master_key, acs.access_key):
        assert secret.encode() not in answer.body
    health = http.request("GET", "/api/health")
    for secret in (KEY, gateway.master_key, acs.access_key):
        assert secret.encode() not in health.body


def test_senders_outside_the_allow_list_are_refused(http: RawClient, acs: AcsEmulator) -> None:
    before = acs.stats["total_calls"]
    for sender in (NOT_ALLOWED_SENDER, "+1 800 555 9999", "+１８００５５５０１００", "＋18005550100", "18005550100x",
                   "", " ", SENDER + "0"):
        for path in ("/api/optouts/remove", "/api/optouts/add", "/api/optouts/check"):
            answer = http.post_json(path, {"phoneNumbers": ["+14255550100"], "sender": sender})
            if sender.strip():
                assert_problem(answer, 403, "SenderNotAllowed")
            else:  # blank is no sender at all: the default one
                assert answer.status == 200
        single = http.request("GET", "/api/optouts/+14255550100?sender=" + quote(sender, safe=""))
        if sender.strip():
            assert_problem(single, 403, "SenderNotAllowed")
    # Refused before ACS was asked anything (the blank senders' default-sender calls aside).
    assert acs.stats["total_calls"] - before == 8
    assert acs.opted_out(NOT_ALLOWED_SENDER) == set()


def test_allowed_senders_in_any_formatting_are_accepted(http: RawClient) -> None:
    for sender in (SENDER, OTHER_SENDER, "+1 (800) 555-0111", " +1-800-555-0100 "):
        answer = http.post_json("/api/optouts/check", {"phoneNumbers": ["+14255550100"], "sender": sender})
        assert answer.status == 200, (sender, answer.body[:200])
        assert answer.json()["sender"] in (SENDER, OTHER_SENDER)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(sender=st.text(max_size=20) | st.from_regex(r"\+1800555\d{4}", fullmatch=True))
def test_generated_senders_act_only_for_allowed_ones(http: RawClient, acs: AcsEmulator, sender: str) -> None:
    answer = http.post_json("/api/optouts/add", {"phoneNumbers": ["+14255550199"], "sender": sender})
    assert answer.status in (200, 400, 403), answer.status
    if answer.status == 200:
        assert answer.json()["sender"] in (SENDER, OTHER_SENDER)
    else:
        assert_problem(answer)
    assert acs.opted_out(NOT_ALLOWED_SENDER) == set()


def test_request_size_caps(http: RawClient) -> None:
    path = "/api/optouts/check"
    headers = {"content-type": "application/json"}
    at_cap = json.dumps({"phoneNumbers": ["+14255550100"]}).encode()
    at_cap += b" " * (MAX_BODY_BYTES - len(at_cap))
    assert http.request("POST", path, at_cap, headers).status == 200
    assert_problem(http.request("POST", path, at_cap + b" ", headers), 413, "BodyTooLarge")
    numbers = [f"+1425555{n:04d}" for n in range(MAX_NUMBERS + 1)]
    assert http.post_json(path, {"phoneNumbers": numbers[:MAX_NUMBERS]}).status == 200
    assert_problem(http.post_json(path, {"phoneNumbers": numbers}), 413, "TooManyPhoneNumbers")
    assert_problem(http.post_json(path, {"phoneNumbers": ["+14255550100"], "reason": "r" * 501}), 400, "ValidationFailed")
    long_number = http.request("GET", "/api/optouts/" + "1" * 10_000)
    assert_problem(long_number, 400)
    # Over the host's own cap: refused from the header, before the body would be read.
    huge = http.request("POST", path, None, {**headers, "content-length": str(100 * 1024 * 1024 + 1)})
    assert (huge.status, huge.body) == (413, b"")


# -- bandit ----------------------------------------------------------------------------

#: Findings reviewed and accepted, by file, test id and the flagged line's text (not its number,
#: which moves). Each is an `assert` that narrows a type for mypy after the invariant was already
#: established by the code just before it; stripping it under `python -O` changes nothing. They
#: live in files other engineers own, so they are justified here rather than with inline `# nosec`.
ACCEPTED_BANDIT_FINDINGS = {
    ("optouts/runtime.py", "B101", "assert acs.connection_string is not None"),
    ("optouts/runtime.py", "B101", "assert acs.endpoint is not None"),
    ("optouts/providers/acs/keyvault.py", "B101", "assert self._endpoint is not None"),
    ("optouts/providers/acs/keyvault.py", "B101", "assert self._key is not None"),
    ("optouts/providers/acs/keyvault.py", "B101",
     "assert settings.key_vault_url is not None and settings.connection_string_secret_name is not None"),
}


def test_bandit_finds_nothing_unjustified() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bandit", "-r", "optouts", "blueprints", "function_app.py", "-f", "json", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.stdout, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert not report["errors"], report["errors"]
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned the code
    unjustified = []
    for finding in report["results"]:
        path = Path(finding["filename"]).as_posix().removeprefix("./")
        line = finding["code"].splitlines()
        flagged = next((text.split(" ", 1)[1].strip() for text in line
                        if text.split(" ", 1)[0] == str(finding["line_number"])), "")
        if not any(path == file and finding["test_id"] == test and flagged.startswith(text)
                   for file, test, text in ACCEPTED_BANDIT_FINDINGS):
            unjustified.append(f"{path}:{finding['line_number']} {finding['test_id']} {finding['issue_text']}: {flagged}")
    assert not unjustified, "\n".join(unjustified)
