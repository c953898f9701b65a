import pytest

from optouts.providers.acs.settings import AuthMode
from optouts.config import Settings, SettingsError

CONNECTION = "endpoint=https://x.communication.azure.com/;accesskey=cHc="


def test_connection_string_mode_and_defaults() -> None:
    settings = Settings.from_environ({"ACS_CONNECTION_STRING": CONNECTION, "OPTOUT_DEFAULT_SENDER": "+18005550100"})
    assert settings.auth_mode is AuthMode.CONNECTION_STRING
    assert settings.api_version == "2026-01-23"
    assert settings.allowed_senders == frozenset({"+18005550100"})
    assert (settings.max_numbers, settings.max_concurrency, settings.default_region) == (10_000, 8, "US")


def test_managed_identity_when_only_endpoint() -> None:
    settings = Settings.from_environ({"ACS_ENDPOINT": "https://x.communication.azure.com"})
    assert settings.auth_mode is AuthMode.MANAGED_IDENTITY


def test_key_vault_mode_needs_both_settings() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"KEY_VAULT_URL": "https://kv.vault.azure.net/"})
    assert raised.value.setting == "ACS_CONNECTION_STRING_SECRET_NAME"
    settings = Settings.from_environ(
        {"KEY_VAULT_URL": "https://kv.vault.azure.net/", "ACS_CONNECTION_STRING_SECRET_NAME": "acs"}
    )
    assert settings.auth_mode is AuthMode.KEY_VAULT


def test_nothing_configured_names_the_setting() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({})
    assert raised.value.setting == "ACS_CONNECTION_STRING"


def test_unresolved_key_vault_reference_is_detected() -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/acs/)"
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"ACS_CONNECTION_STRING": reference})
    assert raised.value.setting == "ACS_CONNECTION_STRING"
    assert "Key Vault reference" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("OPTOUT_MAX_NUMBERS", "lots"), ("OPTOUT_MAX_CONCURRENCY", "0"), ("ACS_ALLOW_INSECURE_BEARER", "maybe")],
)
def test_broken_numbers_and_flags_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"ACS_CONNECTION_STRING": CONNECTION, name: value})
    assert raised.value.setting == name
    assert value not in str(raised.value)


def test_allowed_senders_list_overrides_default_only_rule() -> None:
    settings = Settings.from_environ({
        "ACS_CONNECTION_STRING": CONNECTION,
        "OPTOUT_DEFAULT_SENDER": "+18005550100",
        "OPTOUT_ALLOWED_SENDERS": "+18005550100, +18005550111,",
    })
    assert settings.allowed_senders == frozenset({"+18005550100", "+18005550111"})


def test_describe_never_contains_the_key() -> None:
    settings = Settings.from_environ({"ACS_CONNECTION_STRING": CONNECTION})
    assert "cHc=" not in repr(settings.describe())
