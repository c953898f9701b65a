"""Readiness (`GET /api/health/ready`) in every state, and settings validated at startup.

The HTTP function is called the way the host calls it, against the real ACS emulator and
a real Azurite; fault states use the same probe with a fast-retrying client so they stay quick.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.azure_standins import ManagedIdentityStandIn
from devtools.azure_standins.managed_identity import CONFLICTING_ENVIRONMENT
from devtools.azurite import Azurite, free_port
from optouts import config, readiness, runtime
from optouts.readiness import ReadinessProbe, storage_check
from optouts.usecases.service import OptOutService

from .conftest import OTHER_SENDER, SENDER, fast_client
from .test_http_api import assert_problem, body_of, call

REPO = Path(__file__).resolve().parent.parent
REQUESTS_QUEUE = "optout-requests"


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        QueueClient.from_connection_string(running.connection_string, REQUESTS_QUEUE).create_queue()
        yield running


@pytest.fixture
def ready_env(emulator: AcsEmulator, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[AcsEmulator]:
    for name in ("ACS_ENDPOINT", "KEY_VAULT_URL", "ACS_CONNECTION_STRING_SECRET_NAME", "OPTOUT_REQUESTS_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
        "AzureWebJobsStorage": azurite.connection_string,
    }.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield emulator
    runtime.reset()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def probe_for(emulator: AcsEmulator, *, connection_string: str | None = None, storage: object = None,
              clock: Clock | None = None) -> ReadinessProbe:
    """The runtime's probe, with a client whose retries are fast."""
    client = fast_client(connection_string or emulator.connection_string)
    service = OptOutService(client)
    return ReadinessProbe(
        environ=lambda: os.environ,
        settings=runtime.get_settings,
        service=lambda: service,
        storage_check=storage or storage_check(config.QueueSettings.from_environ),
        clock=clock or Clock(),
    )


def statuses(body: dict) -> dict[str, str]:
    return {name: check["status"] for name, check in body["checks"].items()}


# -- through the HTTP function ------------------------------------------------------------------

def test_ready_when_every_dependency_answers(ready_env: AcsEmulator) -> None:
    response = call("Readiness", method="GET")

    assert response.status_code == 200, response.get_body()
    body = body_of(response)
    assert body["status"] == "ready"
    assert statuses(body) == {"settings": "ok", "credentials": "ok", "acs": "ok", "storage": "ok"}
    assert ready_env.stats["total_calls"] == 1  # one signed check of the test number


def test_readiness_is_cached_so_probes_do_not_hammer_acs(ready_env: AcsEmulator) -> None:
    for _ in range(5):
        assert call("Readiness", method="GET").status_code == 200
    assert ready_env.stats["total_calls"] == 1


def test_broken_settings_are_503_naming_each_setting(ready_env: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_DEFAULT_SENDER", "hello")
    monkeypatch.setenv("OPTOUT_MAX_CONCURRENCY", "0")
    runtime.reset()

    response = call("Readiness", method="GET")

    problem = assert_problem(response, 503, "NotReady")
    assert response.headers["Retry-After"] == "30"
    assert problem["detail"] == "failed: settings"
    assert statuses(problem) == {"settings": "failed", "credentials": "skipped", "acs": "skipped", "storage": "ok"}
    detail = problem["checks"]["settings"]["detail"]
    assert "OPTOUT_DEFAULT_SENDER" in detail and "OPTOUT_MAX_CONCURRENCY" in detail
    assert ready_env.stats["total_calls"] == 0


def test_unreachable_storage_is_503_naming_storage(ready_env: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("AzureWebJobsStorage", f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                                              f"AccountKey={base64.b64encode(b'k' * 32).decode()};"
                                              f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    runtime.reset()

    problem = assert_problem(call("Readiness", method="GET"), 503, "NotReady")

    assert problem["detail"] == "failed: storage"
    assert problem["checks"]["storage"]["code"] == "StorageUnavailable"
    assert "ServiceRequestError" in problem["checks"]["storage"]["detail"]
    assert statuses(problem)["acs"] == "ok"


def test_a_missing_requests_queue_is_reported(ready_env: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_REQUESTS_QUEUE", "no-such-queue")
    runtime.reset()
    problem = assert_problem(call("Readiness", method="GET"), 503, "NotReady")
    assert problem["checks"]["storage"]["code"] == "QueueNotFound"


def test_credentials_that_cannot_be_obtained(emulator: AcsEmulator, azurite: Azurite,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The identity endpoint knows no identity with this client id: no token for ACS.
    with ManagedIdentityStandIn(client_ids=frozenset({"00000000-0000-4000-8000-000000000001"})) as identity:
        for name in (*CONFLICTING_ENVIRONMENT, "ACS_CONNECTION_STRING", "KEY_VAULT_URL",
                     "ACS_CONNECTION_STRING_SECRET_NAME", "OPTOUT_REQUESTS_QUEUE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**identity.environ(), "AZURE_CLIENT_ID": "0b8f3c2e-5a1d-4c7e-9f60-3d2b1a0c9e87",
                            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
                            "ACS_ENDPOINT": emulator.endpoint, "ACS_ALLOW_INSECURE_BEARER": "true",
                            "OPTOUT_DEFAULT_SENDER": SENDER,
                            "AzureWebJobsStorage": azurite.connection_string}.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        try:
            problem = assert_problem(call("Readiness", method="GET"), 503, "NotReady")
        finally:
            runtime.reset()

    assert problem["detail"] == "failed: credentials"
    assert problem["checks"]["credentials"]["code"] == "CredentialsUnavailable"
    assert statuses(problem) == {"settings": "ok", "credentials": "failed", "acs": "skipped", "storage": "ok"}
    assert emulator.stats["total_calls"] == 0


# -- the probe, with fast retries ------------------------------------------------------------------

def test_acs_unavailable_names_acs_and_its_host(ready_env: AcsEmulator) -> None:
    ready_env.faults = FaultConfig(server_error_rate=1.0)
    result = probe_for(ready_env).check()

    assert not result.ready and result.failed == ["acs"]
    acs = result.checks["acs"]
    assert acs.code == "AcsUnavailable" and "127.0.0.1" in (acs.detail or "")
    assert result.checks["credentials"].status == "ok"


def test_acs_unreachable(ready_env: AcsEmulator) -> None:
    closed = f"endpoint=http://127.0.0.1:{free_port()}/;accesskey={base64.b64encode(b'k' * 32).decode()}"
    result = probe_for(ready_env, connection_string=closed).check()
    assert result.failed == ["acs"] and result.checks["acs"].code == "AcsUnavailable"


def test_acs_throttling(ready_env: AcsEmulator) -> None:
    ready_env.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=0)
    result = probe_for(ready_env).check()
    assert result.failed == ["acs"] and result.checks["acs"].code == "AcsThrottled"


def test_acs_rejecting_the_key(ready_env: AcsEmulator) -> None:
    wrong = f"endpoint={ready_env.endpoint}/;accesskey={base64.b64encode(b'x' * 32).decode()}"
    result = probe_for(ready_env, connection_string=wrong).check()
    assert result.failed == ["acs"] and result.checks["acs"].code == "AcsAuthenticationFailed"


def test_acs_failing_for_the_test_number(ready_env: AcsEmulator) -> None:
    ready_env.faults = FaultConfig(recipient_error_rate=1.0)
    result = probe_for(ready_env).check()
    assert result.failed == ["acs"] and result.checks["acs"].code == "AcsUnavailable"


def test_results_are_kept_for_the_cache_period_then_probed_again(ready_env: AcsEmulator) -> None:
    clock = Clock()
    probe = probe_for(ready_env, clock=clock)
    assert probe.check().ready
    ready_env.faults = FaultConfig(server_error_rate=1.0)
    clock.now += readiness.CACHE_SECONDS - 1
    assert probe.check().ready  # still the cached answer
    clock.now += 2
    assert probe.check().failed == ["acs"]


def test_storage_failures_are_caught_whatever_they_are(ready_env: AcsEmulator) -> None:
    def broken() -> None:
        raise config.SettingsError("AzureWebJobsStorage", "set a connection string")

    result = probe_for(ready_env, storage=broken).check()
    assert result.failed == ["storage"] and result.checks["storage"].code == "GatewayMisconfigured"


# -- startup validation -------------------------------------------------------------------------

def test_start_logs_one_line_per_problem_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="optouts.startup")
    env = {"ACS_CONNECTION_STRING": "garbage", "OPTOUT_DEFAULT_SENDER": "hello",
           "OPTOUT_ALLOWED_SENDERS": "+18005550100,MyBrand", "OPTOUT_MAX_NUMBERS": "lots",
           "OPTOUT_RESULTS_QUEUE": "Results_Queue"}

    problems = runtime.start(env)

    assert [p.setting for p in problems] == ["ACS_CONNECTION_STRING", "OPTOUT_DEFAULT_SENDER",
                                             "OPTOUT_ALLOWED_SENDERS", "OPTOUT_MAX_NUMBERS", "OPTOUT_RESULTS_QUEUE"]
    lines = [r.getMessage() for r in caplog.records if r.name == "optouts.startup"]
    assert len(lines) == 5
    assert all(line.startswith("startup: App setting ") for line in lines)
    assert not any("garbage" in line or "MyBrand" in line for line in lines)


def test_indexing_survives_broken_settings_and_prints_every_problem() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACS_", "OPTOUT_", "KEY_VAULT"))}
    env.update({"OPTOUT_DEFAULT_SENDER": "hello", "OPTOUT_MAX_CONCURRENCY": "many", "OPTOUT_REQUESTS_QUEUE": "Q_1"})
    code = "import function_app; print(sorted(f.get_function_name() for f in function_app.app.get_functions()))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert "Readiness" in done.stdout and "ProcessOptOutRequest" in done.stdout
    for setting in ("ACS_CONNECTION_STRING", "OPTOUT_DEFAULT_SENDER", "OPTOUT_MAX_CONCURRENCY",
                    "OPTOUT_REQUESTS_QUEUE"):
        assert f"App setting {setting}:" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("sender", ["+18005550100", "+1 (800) 555-0100", "+442079460958", "12345", "262966"])
def test_senders_that_can_have_an_opt_out_list(sender: str) -> None:
    assert config.sender_problem(sender) is None


@pytest.mark.parametrize("sender", ["hello", "MyBrand", "+1", "18005550100x", "+1800555010012345", "12", "+0123456789"])
def test_senders_refused(sender: str) -> None:
    assert "E.164" in (config.sender_problem(sender) or "")


def test_default_sender_outside_the_allowed_list_is_a_problem() -> None:
    problems = config.all_problems({"ACS_CONNECTION_STRING": "endpoint=https://x/;accesskey=cHc=",
                                    "OPTOUT_DEFAULT_SENDER": "+18005550100",
                                    "OPTOUT_ALLOWED_SENDERS": "+18005550111"})
    assert [p.setting for p in problems] == ["OPTOUT_DEFAULT_SENDER"]
    assert "not in OPTOUT_ALLOWED_SENDERS" in problems[0].problem


def test_no_sender_at_all_is_a_startup_problem() -> None:
    problems = config.all_problems({"ACS_CONNECTION_STRING": "endpoint=https://x/;accesskey=cHc="})
    assert [p.setting for p in problems] == ["OPTOUT_DEFAULT_SENDER"]
