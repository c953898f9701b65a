"""The AWS provider's settings are wired through infra: every setting
optouts/providers/aws/settings.py reads (that makes sense in Azure) is set, from a
main.bicep parameter, and the values put the code in web identity mode."""

from __future__ import annotations

import re

from optouts.providers.aws import AwsCredentialMode, AwsSettings
from optouts.providers.aws.settings import RATE_SETTINGS
from tests.infra import bicep
from tests.infra.bicep import Expr

AWS_SOURCE = (bicep.ROOT / "optouts" / "providers" / "aws" / "settings.py").read_text()
READ_BY_CODE = set(re.findall(r'_(?:text|number|endpoint)\(\s*env,\s*"([A-Za-z0-9_]+)"', AWS_SOURCE))
READ_BY_CODE |= set(RATE_SETTINGS.values()) | {"OPTOUT_AWS_SENDERS"}
#: Local development only: endpoint overrides point at the emulator. (KEY_VAULT_URL is ACS's mode setting;
#: OPTOUT_AWS_KEY_VAULT_URL is set instead.)
NOT_FOR_AZURE = {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2", "AWS_ENDPOINT_URL_STS", "KEY_VAULT_URL"}


def common_settings() -> dict[str, object]:
    groups = {v.name: v.value() for v in bicep.file("modules/app-settings.bicep").declarations("var")}
    common = groups["commonSettings"]
    assert isinstance(common, dict)
    return common


def main_module_params() -> dict[str, object]:
    modules = {m.name: m.value() for m in bicep.file("main.bicep").declarations("module")}
    app_settings = modules["appSettings"]
    assert isinstance(app_settings, dict) and isinstance(app_settings["params"], dict)
    return app_settings["params"]


def test_the_regex_finds_the_aws_settings() -> None:
    assert {"AWS_REGION", "OPTOUT_AWS_ROLE_ARN", "OPTOUT_AWS_WEB_IDENTITY_AUDIENCE"} <= READ_BY_CODE


def test_every_aws_setting_for_azure_is_set_from_a_parameter() -> None:
    common = common_settings()
    missing = READ_BY_CODE - NOT_FOR_AZURE - set(common)
    assert not missing, f"read by the AWS provider but not set in infra: {sorted(missing)}"
    assert not NOT_FOR_AZURE & set(common) - {"KEY_VAULT_URL"}, "endpoint overrides are for the emulator only"
    # Tuning settings carry the code's defaults.
    defaults = AwsSettings.from_environ({})
    assert common["OPTOUT_AWS_MAX_ATTEMPTS"] == str(defaults.max_attempts)
    assert common["OPTOUT_AWS_QUEUE_TIME_BUDGET_SECONDS"] == f"{defaults.queue_time_budget_seconds:g}"
    assert common["OPTOUT_AWS_ROLE_SESSION_NAME"] == defaults.role_session_name


def environment(main_params: dict[str, str]) -> dict[str, str]:
    """The AWS app settings as a deployment with these main.bicep parameters would set them."""
    common, passed = common_settings(), main_module_params()
    env: dict[str, str] = {}
    for name, value in common.items():
        if not name.startswith(("OPTOUT_AWS_", "AWS_")):
            continue
        if isinstance(value, str):
            env[name] = value
            continue
        assert isinstance(value, Expr), name
        match = re.fullmatch(r"(?:string\()?(\w+)\)?", value.text)
        assert match, value.text
        source = passed[match.group(1)]
        assert isinstance(source, Expr), name
        env[name] = str(main_params.get(source.text, "https://kv-optout-abc.vault.azure.net/"))
    return env


def test_the_parameters_put_the_gateway_in_web_identity_mode() -> None:
    defaults = {p.name: p.value() for p in bicep.file("main.bicep").declarations("param")}
    params = {name: str(value) for name, value in defaults.items() if isinstance(value, str | int)}
    params.update({"awsSenders": "+18005550100=Marketing", "awsRegion": "eu-west-1",
                   "awsRoleArn": "arn:aws:iam::123456789012:role/sms-optout-gateway", "maximumInstanceCount": "10"})
    settings = AwsSettings.from_environ(environment(params))
    assert settings.credential_mode is AwsCredentialMode.WEB_IDENTITY
    assert dict(settings.senders) == {"+18005550100": "Marketing"}
    assert settings.region == "eu-west-1" and settings.web_identity_audience == "api://AzureADTokenExchange"
    # AWS's default quotas, shared between the instances that may run at once.
    assert settings.quotas["DeleteOptedOutNumber"] == 10 and settings.rates["DeleteOptedOutNumber"] == 1.0


def test_by_default_aws_is_off() -> None:
    defaults = {p.name: p.value() for p in bicep.file("main.bicep").declarations("param")}
    params = {name: str(value) for name, value in defaults.items() if isinstance(value, str | int)}
    settings = AwsSettings.from_environ(environment(params))
    assert not settings.configured and settings.credential_mode is AwsCredentialMode.DEFAULT_CHAIN


def test_the_key_pair_fallback_can_read_the_vault() -> None:
    main = bicep.file("main.bicep")
    modules = {m.name: m for m in main.declarations("module")}
    text = bicep.text(modules["awsKeyVaultAccess"].node)
    assert "if (usesAwsKeyVault && !usesKeyVault)" in text
    access = modules["awsKeyVaultAccess"].value()
    assert isinstance(access, dict) and access["params"]["principals"] == Expr("appPrincipal")
