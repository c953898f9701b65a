import pytest

from optouts.config import Settings, SettingsError
from optouts.providers.acs.settings import AcsSettings, AuthMode

CONNECTION = "endpoint=https://x.communication.azure.com/;accesskey=cHc="


def test_connection_string_mode_and_defaults() -> None:
    acs = AcsSettings.from_environ({"ACS_CONNECTION_STRING": CONNECTION, "OPTOUT_DEFAULT_SENDER": "+18005550100"})
    assert acs.auth_mode is AuthMode.CONNECTION_STRING
    assert acs.api_version == "2026-01-23"
    settings = Settings.from_environ({"ACS_CONNECTION_STRING": CONNECTION, "OPTOUT_DEFAULT_SENDER": "+18005550100"})
    assert settings.allowed_senders == frozenset({"+18005550100"})
    assert (settings.max_numbers, settings.max_concurrency, settings.default_region) == (10_000, 8, "US")


def test_managed_identity_when_only_endpoint() -> None:
    settings = AcsSettings.from_environ({"ACS_ENDPOINT": "https://x.communication.azure.com"})
    assert settings.auth_mode is AuthMode.MANAGED_IDENTITY


def test_key_vault_mode_needs_both_settings() -> None:
    with pytest.raises(SettingsError) as raised:
        AcsSettings.from_environ({"KEY_VAULT_URL": "https://kv.vault.azure.net/"})
    assert raised.value.setting == "ACS_CONNECTION_STRING_SECRET_NAME"
    settings = AcsSettings.from_environ(
        {"KEY_VAULT_URL": "https://kv.vault.azure.net/", "ACS_CONNECTION_STRING_SECRET_NAME": "acs"}
    )
    assert settings.auth_mode is AuthMode.KEY_VAULT


def test_nothing_configured_names_the_setting() -> None:
    with pytest.raises(SettingsError) as raised:
        AcsSettings.from_environ({})
    assert raised.value.setting == "ACS_CONNECTION_STRING"


def test_unresolved_key_vault_reference_is_detected() -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/acs/)"
    with pytest.raises(SettingsError) as raised:
        AcsSettings.from_environ({"ACS_CONNECTION_STRING": reference})
    assert raised.value.setting == "ACS_CONNECTION_STRING"
    assert "Key Vault reference" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("OPTOUT_MAX_NUMBERS", "lots"), ("OPTOUT_MAX_CONCURRENCY", "0"), ("ACS_ALLOW_INSECURE_BEARER", "maybe"),
     # int() of either would raise ValueError/OverflowError past the settings check.
     ("OPTOUT_MAX_NUMBERS", "nan"), ("OPTOUT_MAX_NUMBERS", "inf"), ("OPTOUT_TIME_BUDGET_SECONDS", "-inf")],
)
def test_broken_numbers_and_flags_name_the_setting(name: str, value: str) -> None:
    read = AcsSettings.from_environ if name.startswith("ACS_") else Settings.from_environ
    with pytest.raises(SettingsError) as raised:
        read({"ACS_CONNECTION_STRING": CONNECTION, name: value})
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
    acs = AcsSettings.from_environ({"ACS_CONNECTION_STRING": CONNECTION})
    assert "cHc=" not in repr(acs.describe())
    assert acs.describe() == {"authMode": "connection-string", "acsEndpoint": None, "keyVaultUrl": None,
                              "apiVersion": "2026-01-23"}


def test_gateway_settings_hold_nothing_of_a_provider() -> None:
    """Settings per provider: the gateway's need no ACS setting, and describe none."""
    settings = Settings.from_environ({"OPTOUT_DEFAULT_SENDER": "+18005550100"})
    described = settings.describe()
    assert {key: described[key] for key in ("defaultSender", "allowedSenders", "maxNumbers")} == {
        "defaultSender": "+18005550100", "allowedSenders": ["+18005550100"], "maxNumbers": 10_000}
    assert not {"authMode", "acsEndpoint", "keyVaultUrl", "apiVersion"} & set(described)
    assert not any(name.startswith(("acs", "auth", "key_vault", "api_")) for name in vars(settings))
