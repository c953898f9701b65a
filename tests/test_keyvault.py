"""Key Vault mode end to end: the real azure-keyvault-secrets and azure-identity code
reads the ACS connection string from an HTTPS Key Vault stand-in, with a token from an
App Service style managed-identity stand-in, and the gateway calls the ACS emulator
with the key it read. Rotation, outages and concurrency are driven from the tests."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import azure.functions as func
import pytest
from azure.keyvault.secrets import SecretClient

from devtools.acs_emulator import AcsEmulator
from devtools.azure_standins import KeyVaultStandIn, ManagedIdentityStandIn
from devtools.azure_standins.key_vault import VAULT_RESOURCE
from devtools.azure_standins.managed_identity import CONFLICTING_ENVIRONMENT
from optouts import runtime
from optouts.azure.identity import gateway_credential
from optouts.config import SettingsError
from optouts.providers.acs import OptOutsClient
from optouts.providers.acs.errors import CredentialUnavailableError
from optouts.providers.acs.keyvault import (
    REJECTED_KEY_RECHECK_SECONDS,
    KeyVaultAccessKey,
    build_key_vault_client,
    secret_client,
)
from optouts.providers.acs.settings import AcsSettings

from .conftest import OTHER_SENDER, SENDER
from .test_http_api import assert_problem, body_of, call

SECRET_NAME = "acs-connection-string"
NUMBER = "+14255550100"
FAST_RETRIES = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, "recipient_retry_backoff": 0.01,
                "time_budget": 30.0}


@dataclass
class Azure:
    """The stand-ins one test runs against."""

    emulator: AcsEmulator
    vault: KeyVaultStandIn
    identity: ManagedIdentityStandIn

    def reads(self) -> int:
        return self.vault.stats.secret_reads[SECRET_NAME]

    def rotate(self) -> str:
        """Rotate the key in ACS, then store the new connection string in the vault."""
        new_key = self.emulator.rotate_access_key()
        self.vault.set_secret(SECRET_NAME, connection_string(self.emulator, new_key))
        return new_key


def connection_string(emulator: AcsEmulator, access_key: str) -> str:
    return f"endpoint={emulator.endpoint}/;accesskey={access_key}"


@pytest.fixture
def azure(emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azure]:
    with ManagedIdentityStandIn() as identity, KeyVaultStandIn() as vault:
        vault.accepted_tokens.add(identity.token_for(VAULT_RESOURCE))
        vault.set_secret(SECRET_NAME, emulator.connection_string)
        for name in (*CONFLICTING_ENVIRONMENT, "AZURE_CLIENT_ID", "ACS_CONNECTION_STRING", "ACS_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {
            **identity.environ(),
            # Only the managed identity: no developer credential (CLI, VS Code...) is tried.
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            # Trust the stand-in's self-signed certificate, in this test only.
            "REQUESTS_CA_BUNDLE": vault.ca_bundle,
            "KEY_VAULT_URL": vault.url,
            "ACS_CONNECTION_STRING_SECRET_NAME": SECRET_NAME,
            "OPTOUT_DEFAULT_SENDER": SENDER,
            "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
            "OPTOUT_TIME_BUDGET_SECONDS": "10",
        }.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        try:
            yield Azure(emulator, vault, identity)
        finally:
            runtime.reset()


def check_number() -> func.HttpResponse:
    return call("CheckOptOuts", body={"phoneNumbers": [NUMBER]})


def key_vault_client(**options: object) -> OptOutsClient:
    return build_key_vault_client(AcsSettings.from_environ(), **{**FAST_RETRIES, **options})  # type: ignore[arg-type]


def access_key(azure: Azure, *, cache_seconds: float = 300.0, clock: object = None) -> KeyVaultAccessKey:
    extra = {"clock": clock} if clock is not None else {}
    return KeyVaultAccessKey(secret_client(azure.vault.url, gateway_credential()), SECRET_NAME,
                             cache_seconds=cache_seconds, **extra)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


# -- through the HTTP functions ---------------------------------------------------------------


def test_health_reports_key_vault_mode_without_secrets(azure: Azure) -> None:
    response = call("Health", method="GET")
    assert response.status_code == 200
    configuration = body_of(response)["configuration"]
    assert configuration["authMode"] == "key-vault"
    assert configuration["keyVaultUrl"] == azure.vault.url
    assert_no_secrets(response.get_body().decode(), azure.emulator.access_key, azure.emulator.connection_string)


def test_calls_use_the_key_read_once_from_the_vault(azure: Azure) -> None:
    for _ in range(3):
        response = check_number()
        assert response.status_code == 200, response.get_body()
        assert body_of(response)["summary"]["succeeded"] == 1
    assert azure.reads() == 1
    assert azure.vault.stats.challenges >= 1  # the SDK discovered the tenant from the real challenge
    assert {(request.resource or "").rstrip("/") for request in azure.identity.requests} == {VAULT_RESOURCE}


def test_rotated_key_is_picked_up_without_restart(azure: Azure, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    old_key = azure.emulator.access_key
    assert check_number().status_code == 200
    service = runtime.get_service()
    assert azure.reads() == 1

    new_key = azure.rotate()
    response = check_number()

    assert response.status_code == 200, response.get_body()
    assert runtime.get_service() is service  # same worker state: nothing was rebuilt
    assert azure.reads() == 2  # exactly one more vault read, triggered by ACS's 401
    assert check_number().status_code == 200
    assert azure.reads() == 2
    assert_no_secrets(caplog.text, old_key, new_key, azure.identity.token_for(VAULT_RESOURCE),
                      azure.identity.identity_header)


def test_key_rotated_in_acs_but_not_yet_in_the_vault_is_502_without_hammering_the_vault(azure: Azure) -> None:
    assert check_number().status_code == 200
    azure.emulator.rotate_access_key()

    assert_problem(check_number(), 502, "AcsAuthenticationFailed")
    assert azure.reads() == 2  # re-read once, found the same key
    assert_problem(check_number(), 502, "AcsAuthenticationFailed")
    assert azure.reads() == 2  # the vault is not re-read for every failing request


def test_vault_down_after_start_is_503(azure: Azure, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ACS_SECRET_CACHE_SECONDS", "0")
    runtime.reset()
    assert check_number().status_code == 200
    azure.vault.stop()

    assert_problem(check_number(), 503, "CredentialsUnavailable")

    assert azure.vault.url in caplog.text and SECRET_NAME in caplog.text
    assert_no_secrets(caplog.text, azure.emulator.access_key)


def test_vault_down_answer_asks_to_retry(azure: Azure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_SECRET_CACHE_SECONDS", "0")
    runtime.reset()
    assert check_number().status_code == 200
    azure.vault.fail_with_status = 503

    response = check_number()

    assert_problem(response, 503, "CredentialsUnavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert azure.vault.stats.failed >= 1


def test_secret_deleted_is_503_and_the_log_names_the_secret(azure: Azure, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ACS_SECRET_CACHE_SECONDS", "0")
    runtime.reset()
    assert check_number().status_code == 200
    azure.vault.delete_secret(SECRET_NAME)

    assert_problem(check_number(), 503, "CredentialsUnavailable")

    assert f"secret '{SECRET_NAME}'" in caplog.text and "does not exist" in caplog.text
    assert_no_secrets(caplog.text, azure.emulator.access_key)


@pytest.mark.parametrize("failure", ["status-500", "refused"])
def test_identity_failure_is_503(azure: Azure, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    # Short-lived tokens are never cached (they expire within five minutes), so every
    # vault read asks the identity endpoint again.
    azure.identity.token_lifetime_seconds = 120
    monkeypatch.setenv("ACS_SECRET_CACHE_SECONDS", "0")
    runtime.reset()
    assert check_number().status_code == 200
    asked = azure.identity.request_count()
    if failure == "refused":
        azure.identity.stop()
    else:
        azure.identity.fail_with_status = 500

    assert_problem(check_number(), 503, "CredentialsUnavailable")
    if failure == "status-500":
        assert azure.identity.request_count() > asked


def test_unresolved_key_vault_reference_is_503_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # What App Service passes on when it cannot resolve the reference: the reference itself.
    monkeypatch.setenv("ACS_CONNECTION_STRING",
                       "@Microsoft.KeyVault(SecretUri=https://contoso.vault.azure.net/secrets/acs/)")
    runtime.reset()
    try:
        problem = assert_problem(call("Health", method="GET"), 503, "GatewayMisconfigured")
    finally:
        runtime.reset()
    assert "ACS_CONNECTION_STRING" in problem["detail"]
    assert "contoso" not in problem["detail"]


# -- the client and the credential directly -------------------------------------------------


def test_build_reads_the_endpoint_from_the_secret(azure: Azure) -> None:
    with key_vault_client() as client:
        assert client.endpoint == azure.emulator.endpoint.rstrip("/")
        assert client.check(SENDER, [NUMBER])[0].is_opted_out is False
    assert azure.reads() == 1


def test_concurrent_calls_after_rotation_share_one_vault_read(azure: Azure) -> None:
    with key_vault_client(max_concurrency=4) as client:
        client.check(SENDER, [NUMBER])
        azure.rotate()
        start = threading.Barrier(12, timeout=30)

        def call_after_barrier(index: int) -> bool:
            start.wait()
            return client.check(SENDER, [f"+1425555{index:04d}"])[0].is_opted_out is False

        with ThreadPoolExecutor(max_workers=12) as pool:
            outcomes = list(pool.map(call_after_barrier, range(12)))

    assert outcomes == [True] * 12
    assert azure.reads() == 2


def test_concurrent_rejections_share_one_vault_read(azure: Azure) -> None:
    credential = access_key(azure)
    rejected = credential.get_key()
    new_key = azure.rotate()
    start = threading.Barrier(16, timeout=30)

    def refresh(_: int) -> bool:
        start.wait()
        return credential.refresh_after_rejection(rejected)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(refresh, range(16)))

    assert answers == [True] * 16
    assert azure.reads() == 2
    assert credential.get_key() == base64.b64decode(new_key)


def test_cache_expiry_rereads_the_secret(azure: Azure) -> None:
    clock = FakeClock()
    credential = access_key(azure, cache_seconds=60, clock=clock)
    first = credential.get_key()
    new_key = azure.rotate()

    clock.now += 59
    assert credential.get_key() == first
    assert azure.reads() == 1

    clock.now += 1
    assert credential.get_key() == base64.b64decode(new_key)
    assert azure.reads() == 2


def test_stale_vault_is_rechecked_after_a_pause(azure: Azure) -> None:
    clock = FakeClock()
    credential = access_key(azure, cache_seconds=3600, clock=clock)
    rejected = credential.get_key()

    assert credential.refresh_after_rejection(rejected) is False
    assert credential.refresh_after_rejection(rejected) is False
    assert azure.reads() == 2

    new_key = azure.rotate()
    clock.now += REJECTED_KEY_RECHECK_SECONDS
    assert credential.refresh_after_rejection(rejected) is True
    assert azure.reads() == 3
    assert credential.get_key() == base64.b64decode(new_key)


def test_unreachable_vault_at_build_is_credential_unavailable(azure: Azure) -> None:
    azure.vault.stop()
    with pytest.raises(CredentialUnavailableError) as raised:
        key_vault_client()
    message = str(raised.value)
    assert azure.vault.url in message and SECRET_NAME in message and "unreachable" in message


def test_vault_error_status_is_named_in_the_message(azure: Azure) -> None:
    azure.vault.fail_with_status = 403
    with pytest.raises(CredentialUnavailableError, match="answered 403"):
        key_vault_client()


def test_missing_secret_at_build_names_the_secret(azure: Azure) -> None:
    azure.vault.delete_secret(SECRET_NAME)
    with pytest.raises(CredentialUnavailableError, match=f"secret '{SECRET_NAME}' .* does not exist"):
        key_vault_client()


def test_identity_failure_at_build_is_credential_unavailable(azure: Azure) -> None:
    azure.identity.fail_with_status = 500
    with pytest.raises(CredentialUnavailableError, match="identity got no token") as raised:
        key_vault_client()
    assert azure.reads() == 0
    assert SECRET_NAME in str(raised.value)


def test_malformed_secret_is_reported_without_its_value(azure: Azure) -> None:
    value = "endpoint=https://contoso.communication.azure.com/;accesskey=not base64 at all!"
    azure.vault.set_secret(SECRET_NAME, value)
    with pytest.raises(CredentialUnavailableError, match="not a valid ACS connection string") as raised:
        key_vault_client()
    assert "not base64 at all" not in str(raised.value)


def test_challenge_for_another_resource_is_refused_when_verified(azure: Azure) -> None:
    # What every non-loopback vault gets: the SDK's challenge check, which the stand-in's
    # challenge (resource vault.azure.net, host 127.0.0.1) does not pass.
    verified = SecretClient(azure.vault.url, gateway_credential(), verify_challenge_resource=True)
    credential = KeyVaultAccessKey(verified, SECRET_NAME, cache_seconds=300)
    with pytest.raises(CredentialUnavailableError, match="challenge names another resource"):
        credential.get_key()
    assert azure.reads() == 0
    assert azure.identity.request_count() == 0  # no token was handed out for the wrong host


def test_key_vault_url_must_be_https() -> None:
    with pytest.raises(SettingsError) as raised:
        secret_client("http://contoso.vault.azure.net", gateway_credential())
    assert raised.value.setting == "KEY_VAULT_URL"


def test_vault_down_on_the_first_call_is_503_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose very first request finds the vault unreachable answers 503."""
    import socket

    from optouts import runtime
    from optouts.domain.problems import Problem

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.delenv("ACS_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("KEY_VAULT_URL", f"https://127.0.0.1:{closed_port}/")
    monkeypatch.setenv("ACS_CONNECTION_STRING_SECRET_NAME", "acs-connection-string")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential")
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{closed_port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "test-header")
    runtime.reset()
    try:
        with pytest.raises(Problem) as raised:
            runtime.get_service()
        assert (raised.value.status, raised.value.code) == (503, "CredentialsUnavailable")
    finally:
        runtime.reset()
