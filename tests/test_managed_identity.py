"""Managed-identity mode end to end: azure-identity's real ManagedIdentityCredential
(reached through DefaultAzureCredential) gets an ACS token from an App Service style
token endpoint stand-in, and the ACS emulator accepts it as a bearer token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import azure.functions as func
import pytest

from devtools.acs_emulator import AcsEmulator
from devtools.azure_standins import ManagedIdentityStandIn
from devtools.azure_standins.managed_identity import CONFLICTING_ENVIRONMENT
from optouts import runtime
from optouts.azure.identity import BOUNDED_PIPELINE_OPTIONS

from .conftest import OTHER_SENDER, SENDER
from .test_http_api import assert_problem, body_of, call

ACS_RESOURCE = "https://communication.azure.com"
CLIENT_ID = "0b8f3c2e-5a1d-4c7e-9f60-3d2b1a0c9e87"
NUMBER = "+14255550100"


@dataclass
class Azure:
    emulator: AcsEmulator
    identity: ManagedIdentityStandIn

    @property
    def acs_token(self) -> str:
        return self.identity.token_for(ACS_RESOURCE)


@pytest.fixture
def azure(emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azure]:
    # Only the user-assigned identity CLIENT_ID exists, so a token is issued only when
    # the gateway names it (AZURE_CLIENT_ID).
    with ManagedIdentityStandIn(client_ids=frozenset({CLIENT_ID})) as identity:
        emulator.bearer_tokens.add(identity.token_for(ACS_RESOURCE))
        for name in (*CONFLICTING_ENVIRONMENT, "ACS_CONNECTION_STRING", "KEY_VAULT_URL",
                     "ACS_CONNECTION_STRING_SECRET_NAME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {
            **identity.environ(),
            "AZURE_CLIENT_ID": CLIENT_ID,
            # Only the managed identity: no developer credential (CLI, VS Code...) is tried.
            "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
            "ACS_ENDPOINT": emulator.endpoint,
            # The emulator speaks plain http on 127.0.0.1.
            "ACS_ALLOW_INSECURE_BEARER": "true",
            "OPTOUT_DEFAULT_SENDER": SENDER,
            "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
            "OPTOUT_TIME_BUDGET_SECONDS": "10",
        }.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        try:
            yield Azure(emulator, identity)
        finally:
            runtime.reset()


def check_number() -> func.HttpResponse:
    return call("CheckOptOuts", body={"phoneNumbers": [NUMBER]})


def test_call_with_a_user_assigned_identity_succeeds(azure: Azure, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    response = check_number()

    assert response.status_code == 200, response.get_body()
    assert body_of(response)["results"][0]["optedOut"] is False
    assert azure.identity.requests, "the token came from the identity endpoint"
    assert {request.client_id for request in azure.identity.requests} == {CLIENT_ID}
    assert {(request.resource or "").rstrip("/") for request in azure.identity.requests} == {ACS_RESOURCE}
    assert azure.acs_token not in caplog.text
    assert azure.identity.identity_header not in caplog.text


def test_token_is_reused_across_calls(azure: Azure) -> None:
    for _ in range(3):
        assert check_number().status_code == 200
    assert azure.identity.request_count() == 1


def test_health_reports_managed_identity_mode_without_secrets(azure: Azure) -> None:
    assert check_number().status_code == 200
    response = call("Health", method="GET")
    assert response.status_code == 200
    configuration = body_of(response)["configuration"]
    assert configuration["authMode"] == "managed-identity"
    assert configuration["acsEndpoint"] == azure.emulator.endpoint
    assert azure.acs_token not in response.get_body().decode()


@pytest.mark.parametrize("failure", ["status-500", "refused"])
def test_token_endpoint_failure_is_503(azure: Azure, failure: str) -> None:
    if failure == "refused":
        azure.identity.stop()
    else:
        azure.identity.fail_with_status = 500

    response = check_number()

    assert_problem(response, 503, "CredentialsUnavailable")
    assert int(response.headers["Retry-After"]) > 0
    if failure == "status-500":
        # Retried, but boundedly: azure-identity's default would back off for minutes.
        assert azure.identity.request_count() == 1 + BOUNDED_PIPELINE_OPTIONS["retry_total"]


def test_unknown_client_id_gets_no_token_and_503(azure: Azure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    runtime.reset()

    assert_problem(check_number(), 503, "CredentialsUnavailable")
    assert {request.client_id for request in azure.identity.requests} == {"11111111-2222-3333-4444-555555555555"}


def test_token_acs_does_not_accept_is_502(azure: Azure) -> None:
    azure.emulator.bearer_tokens.discard(azure.acs_token)

    assert_problem(check_number(), 502, "AcsAuthenticationFailed")
