"""No long-lived AWS secret: the managed identity's Entra ID token is exchanged through STS
AssumeRoleWithWebIdentity (the emulator's stand-in) for the role's temporary credentials,
which are refreshed before they expire. The fallback is a key pair in Key Vault."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import botocore.session
import pytest
from dateutil.tz import tzlocal

from devtools.aws_emulator import AwsEmulator
from devtools.azure_standins import KeyVaultStandIn, ManagedIdentityStandIn
from devtools.azure_standins.managed_identity import CONFLICTING_ENVIRONMENT
from optouts.azure.identity import gateway_credential
from optouts.providers.acs.keyvault import secret_client
from optouts.providers.aws.credentials import EntraTokenLoader, web_identity_credentials
from optouts.providers.aws.errors import AwsCredentialsUnavailableError
from optouts.providers.aws.provider import AwsProvider
from optouts.providers.aws.settings import AwsCredentialMode
from optouts.providers.base import Operation, ProviderAuthenticationError, ProviderCredentialsError, RecipientOutcome

from .conftest import AUDIENCE, LIST, ROLE_ARN, SENDER, settings_for

NUMBER = "+14255550123"
MANAGED_IDENTITY_ID = "5f0c7a1e-0d3b-4c2a-9e8f-1a2b3c4d5e6f"


@dataclass
class Federation:
    aws: AwsEmulator
    identity: ManagedIdentityStandIn

    def provider(self, **overrides: str) -> AwsProvider:
        settings = settings_for(self.aws, OPTOUT_AWS_ROLE_ARN=ROLE_ARN, **overrides)
        assert settings.credential_mode is AwsCredentialMode.WEB_IDENTITY
        return AwsProvider.from_settings(settings, token_credential=gateway_credential(), default_time_budget=30)


@pytest.fixture
def federation(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Federation]:
    with ManagedIdentityStandIn() as identity:
        # The token the managed identity gets for the federation audience is one the STS
        # stand-in trusts, as AWS trusts the tenant's Entra ID tokens.
        identity.issue(AUDIENCE, aws.sts.mint_token(subject=MANAGED_IDENTITY_ID, audience=AUDIENCE))
        for name in (*CONFLICTING_ENVIRONMENT, "AZURE_CLIENT_ID", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**identity.environ(), "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential"}.items():
            monkeypatch.setenv(name, value)
        yield Federation(aws, identity)


def test_the_managed_identitys_token_is_exchanged_for_the_roles_credentials(federation: Federation) -> None:
    provider = federation.provider()
    try:
        [result] = provider.run(Operation.ADD, SENDER, [NUMBER])
    finally:
        provider.close()

    assert result.outcome is RecipientOutcome.SUCCEEDED
    assert NUMBER in federation.aws.store.numbers(LIST)
    [call] = federation.aws.sts.calls
    assert (call.role_arn, call.audience, call.subject, call.outcome) == (
        ROLE_ARN, AUDIENCE, MANAGED_IDENTITY_ID, "issued")
    assert call.session_name == "sms-optout-gateway"
    assert [r.resource for r in federation.identity.requests] == [AUDIENCE]


def test_credentials_are_reused_until_they_near_expiry(federation: Federation) -> None:
    provider = federation.provider()
    try:
        provider.run(Operation.ADD, SENDER, [NUMBER])
        provider.run(Operation.CHECK, SENDER, [NUMBER])
    finally:
        provider.close()
    assert federation.aws.sts.call_count() == 1


def test_credentials_are_refreshed_before_they_expire(federation: Federation) -> None:
    now = [datetime.now(tzlocal())]
    settings = settings_for(federation.aws, OPTOUT_AWS_ROLE_ARN=ROLE_ARN)
    credentials = web_identity_credentials(botocore.session.Session(), settings,
                                           EntraTokenLoader(gateway_credential(), AUDIENCE),
                                           time_fetcher=lambda: now[0])
    first = credentials.get_frozen_credentials()
    assert federation.aws.sts.call_count() == 1

    now[0] += timedelta(minutes=40)  # 20 minutes left of the hour: still used as they are
    assert credentials.get_frozen_credentials().access_key == first.access_key
    assert federation.aws.sts.call_count() == 1

    now[0] += timedelta(minutes=8)  # 12 minutes left: refreshed ahead of expiry
    second = credentials.get_frozen_credentials()
    assert federation.aws.sts.call_count() == 2
    assert second.access_key != first.access_key and second.token != first.token
    # The emulator accepts the new session, as the SMS API would.
    assert federation.aws.sts.key_for(second.access_key) is not None


def test_short_lived_sessions_are_renewed_and_keep_working(federation: Federation) -> None:
    # Sessions shorter than botocore's refresh window are renewed on every use.
    federation.aws.sts.credential_lifetime_seconds = 60
    provider = federation.provider()
    try:
        for _ in range(3):
            assert provider.run(Operation.CHECK, SENDER, [NUMBER])[0].outcome is RecipientOutcome.SUCCEEDED
    finally:
        provider.close()
    assert federation.aws.sts.call_count() >= 3


def test_an_expired_session_is_refused_by_aws(federation: Federation) -> None:
    provider = federation.provider()
    try:
        provider.run(Operation.ADD, SENDER, [NUMBER])
        federation.aws.clock_offset = timedelta(hours=2)  # the session is past its expiry
        federation.aws.clock_skew = timedelta(hours=3)    # ...while the signature's date is still accepted
        with pytest.raises(ProviderAuthenticationError):
            provider.run(Operation.ADD, SENDER, ["+14255550124"])
    finally:
        provider.close()
    assert federation.aws.auth_failures() == {"ExpiredTokenException": 1}


def test_a_token_for_another_audience_is_refused_by_sts(federation: Federation) -> None:
    federation.identity.issue(AUDIENCE, federation.aws.sts.mint_token(subject=MANAGED_IDENTITY_ID,
                                                                      audience="api://something-else"))
    provider = federation.provider()
    try:
        with pytest.raises(ProviderAuthenticationError) as raised:
            provider.run(Operation.ADD, SENDER, [NUMBER])
    finally:
        provider.close()
    assert raised.value.code == "AwsAuthenticationFailed"
    assert "trust policy" in str(raised.value)
    assert federation.aws.calls("PutOptedOutNumber") == []


def test_a_subject_the_trust_policy_does_not_admit_is_refused(federation: Federation) -> None:
    federation.aws.sts.trust(ROLE_ARN, audience=AUDIENCE, subjects={"another-identity"})
    provider = federation.provider()
    try:
        with pytest.raises(ProviderAuthenticationError):
            provider.run(Operation.ADD, SENDER, [NUMBER])
    finally:
        provider.close()
    assert federation.aws.sts.calls[-1].outcome == "refused"


def test_no_managed_identity_token_means_credentials_unavailable(federation: Federation) -> None:
    federation.identity.stop()
    provider = federation.provider()
    try:
        with pytest.raises(ProviderCredentialsError) as raised:
            provider.run(Operation.ADD, SENDER, [NUMBER])
    finally:
        provider.close()
    assert isinstance(raised.value, AwsCredentialsUnavailableError)
    assert raised.value.code == "CredentialsUnavailable"
    assert federation.aws.sts.call_count() == 0


# -- the fallback: a key pair in Key Vault ----------------------------------------------------------


@pytest.fixture
def vault(federation: Federation, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyVaultStandIn]:
    with KeyVaultStandIn() as running:
        running.accepted_tokens.add(federation.identity.token_for("https://vault.azure.net"))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", running.ca_bundle)
        yield running


def key_vault_provider(federation: Federation, vault: KeyVaultStandIn) -> AwsProvider:
    settings = settings_for(federation.aws, KEY_VAULT_URL=vault.url, OPTOUT_AWS_ACCESS_KEY_SECRET_NAME="aws-keys")
    assert settings.credential_mode is AwsCredentialMode.KEY_VAULT
    secrets = secret_client(vault.url, gateway_credential())
    return AwsProvider.from_settings(settings, read_secret=lambda name: secrets.get_secret(name).value or "",
                                     default_time_budget=30)


def test_a_key_pair_from_key_vault_signs_the_calls(federation: Federation, vault: KeyVaultStandIn) -> None:
    aws = federation.aws
    vault.set_secret("aws-keys", json.dumps({"accessKeyId": aws.access_key_id,
                                             "secretAccessKey": aws.secret_access_key}))
    provider = key_vault_provider(federation, vault)
    try:
        [result] = provider.run(Operation.ADD, SENDER, [NUMBER])
    finally:
        provider.close()
    assert result.outcome is RecipientOutcome.SUCCEEDED
    assert vault.stats.secret_reads["aws-keys"] == 1
    assert aws.sts.call_count() == 0


def test_a_malformed_key_vault_secret_is_reported_without_its_value(federation: Federation,
                                                                   vault: KeyVaultStandIn) -> None:
    vault.set_secret("aws-keys", "AKIAEXAMPLE:very-secret-value")
    with pytest.raises(AwsCredentialsUnavailableError) as raised:
        key_vault_provider(federation, vault)
    assert "aws-keys" in str(raised.value) and "very-secret-value" not in str(raised.value)
