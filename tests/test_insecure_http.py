"""Plain http:// ACS endpoints: refused unless loopback or allowed by ACS_ALLOW_INSECURE_HTTP,
because opt-out bodies (phone numbers) are personal data."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from optouts import runtime
from optouts.config import Settings, SettingsError
from optouts.providers.acs import InsecureEndpointError, OptOutsClient
from optouts.providers.acs.settings import AcsSettings

from .test_http_api import assert_problem, call

KEY = "ZHVtbXkta2V5LWZvci10ZXN0cw=="


def build_client(env: dict[str, str]) -> OptOutsClient:
    return runtime.build_acs_client(Settings.from_environ(env), AcsSettings.from_environ(env))


@pytest.mark.parametrize("endpoint", ["http://acs.example.com", "HTTP://10.0.0.8:8080", "http://127.0.0.1.example.com"])

def test_a_plain_http_endpoint_elsewhere_is_refused(endpoint: str) -> None:
    with pytest.raises(InsecureEndpointError, match="ACS_ALLOW_INSECURE_HTTP"):
        OptOutsClient.from_connection_string(f"endpoint={endpoint}/;accesskey={KEY}")


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8089", "http://localhost:8089", "http://[::1]:8089",
                                      "http://127.8.9.10", "https://acs.example.com"])
def test_loopback_and_https_endpoints_are_accepted(endpoint: str) -> None:
    with OptOutsClient.from_connection_string(f"endpoint={endpoint}/;accesskey={KEY}") as client:
        assert client.endpoint == endpoint


def test_the_setting_allows_plain_http_explicitly() -> None:
    with OptOutsClient.from_connection_string(f"endpoint=http://acs.example.com/;accesskey={KEY}",
                                              allow_insecure_http=True) as client:
        assert client.endpoint == "http://acs.example.com"


@pytest.fixture
def clean_runtime() -> Iterator[None]:
    runtime.reset()
    yield
    runtime.reset()


def test_a_refused_endpoint_is_a_misconfiguration_naming_the_setting(
    clean_runtime: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACS_CONNECTION_STRING", f"endpoint=http://acs.example.com/;accesskey={KEY}")
    monkeypatch.setenv("OPTOUT_DEFAULT_SENDER", "+18005550100")
    monkeypatch.delenv("ACS_ALLOW_INSECURE_HTTP", raising=False)
    response = call("AddOptOuts", body={"phoneNumbers": ["+14255550100"]})
    problem = assert_problem(response, 503, "GatewayMisconfigured")
    assert "ACS_CONNECTION_STRING" in problem["detail"] and "ACS_ALLOW_INSECURE_HTTP" in problem["detail"]
    assert KEY not in json.dumps(problem)


def test_the_setting_is_read_and_honoured_by_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"ACS_CONNECTION_STRING": f"endpoint=http://acs.example.com/;accesskey={KEY}"}
    assert AcsSettings.from_environ(env).allow_insecure_http is False
    with pytest.raises(SettingsError, match="ACS_CONNECTION_STRING"):
        build_client(env)
    client = build_client({**env, "ACS_ALLOW_INSECURE_HTTP": "true"})
    try:
        assert client.endpoint == "http://acs.example.com"
    finally:
        client.close()
    with pytest.raises(SettingsError, match="ACS_ALLOW_INSECURE_HTTP"):
        AcsSettings.from_environ({**env, "ACS_ALLOW_INSECURE_HTTP": "maybe"})


def test_managed_identity_endpoints_are_held_to_the_same_rule() -> None:
    with pytest.raises(SettingsError, match="ACS_ENDPOINT"):
        build_client({"ACS_ENDPOINT": "http://acs.example.com"})
