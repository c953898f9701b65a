"""The function app's settings cover every setting the code reads, and in each
acsAuthMode they put the code in the intended mode (checked with optouts/config.py and optouts/providers/acs/settings.py
itself, on the values the templates would produce with their defaults)."""

from __future__ import annotations

import re

import pytest

from optouts.config import AuditStorageSettings, EventSettings, JobSettings, QueueSettings, Settings, SettingsError
from optouts.providers.acs.settings import AcsSettings, AuthMode
from tests.infra import bicep
from tests.infra.bicep import Expr

# The gateway's settings and each provider's.
CONFIG_SOURCE = "".join(path.read_text() for path in [bicep.ROOT / "optouts" / "config.py",
                                                      *(bicep.ROOT / "optouts" / "providers").glob("*/settings.py")])
STORAGE_SOURCE = (bicep.ROOT / "optouts" / "azure" / "storage.py").read_text()
READ_BY_CODE = set(re.findall(r'_(?:text|number|flag|csv)\(\s*env,\s*"([A-Za-z0-9_]+)"', CONFIG_SOURCE))

# Present only in the mode that uses them: optouts/config.py picks its mode from which
# of these are set.
MODE_SETTINGS = {
    "managedIdentitySettings": {"ACS_ENDPOINT"},
    "keyVaultSettings": {"KEY_VAULT_URL", "ACS_CONNECTION_STRING_SECRET_NAME", "ACS_SECRET_CACHE_SECONDS"},
    "keyVaultReferenceSettings": {"ACS_CONNECTION_STRING"},
}

# Stand-ins for what other modules output at deployment time.
DEPLOYMENT_OUTPUTS = {
    "identity.outputs.clientId": "11111111-2222-3333-4444-555555555555",
    "storage.outputs.name": "stoptoutabc",
    "monitoring.outputs.applicationInsightsConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "communication.outputs.endpoint": "https://acs-optout-abc.communication.azure.com",
    "keyVault.outputs.uri": "https://kv-optout-abc.vault.azure.net/",
    "acsSecret.outputs.secretUri": "https://kv-optout-abc.vault.azure.net/secrets/acs-connection-string",
}
RESOLVED_CONNECTION_STRING = "endpoint=https://acs-optout-abc.communication.azure.com/;accesskey=c2VjcmV0"


def settings_file() -> bicep.BicepFile:
    return bicep.file("modules/app-settings.bicep")


def setting_groups() -> dict[str, dict[str, object]]:
    groups = {v.name: v.value() for v in settings_file().declarations("var")}
    return {name: value for name, value in groups.items() if isinstance(value, dict)}


def test_the_regex_still_finds_the_code_settings() -> None:
    # Guards the drift check itself: if config.py's helpers were renamed, this would
    # find nothing and every other test here would pass vacuously.
    assert {"ACS_ENDPOINT", "OPTOUT_MAX_NUMBERS", "OPTOUT_REQUESTS_QUEUE", "OPTOUT_AUDIT_CHECKS"} <= READ_BY_CODE
    assert len(READ_BY_CODE) >= 20


#: Set by the platform, never by the templates: App Service sets WEBSITE_AUTH_ENABLED when its
#: authentication runs in front of the app; setting it ourselves would make claimed callers verified.
PLATFORM_SETTINGS = {"WEBSITE_AUTH_ENABLED"}


def test_every_setting_the_code_reads_is_set() -> None:
    groups = setting_groups()
    everywhere = set(groups["commonSettings"])
    mode_dependent = set().union(*MODE_SETTINGS.values())
    assert not PLATFORM_SETTINGS & everywhere, "platform settings must not be set by the templates"
    missing = READ_BY_CODE - everywhere - mode_dependent - PLATFORM_SETTINGS
    assert not missing, f"settings read by optouts/config.py but not set in infra: {sorted(missing)}"
    for group, names in MODE_SETTINGS.items():
        assert set(groups[group]) == names, group
        assert not names & everywhere, f"{sorted(names & everywhere)} must depend on acsAuthMode"


def test_storage_connection_is_identity_based() -> None:
    common = setting_groups()["commonSettings"]
    for suffix in re.findall(r'f"\{name\}__(\w+)"', STORAGE_SOURCE):
        if suffix.endswith("ServiceUri"):
            continue  # derived from accountName when absent
        assert f"AzureWebJobsStorage__{suffix}" in common, suffix
    assert common["AzureWebJobsStorage__credential"] == "managedidentity"
    assert common["AzureWebJobsStorage__clientId"] == Expr("identityClientId")
    assert "AzureWebJobsStorage" not in common, "a connection string would need a shared key"
    assert common["AZURE_CLIENT_ID"] == Expr("identityClientId")


def test_telemetry_authenticates_with_entra() -> None:
    common = setting_groups()["commonSettings"]
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in common
    assert common["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == Expr(
        "'ClientId=${identityClientId};Authorization=AAD'"
    )


def test_flex_consumption_rejected_settings_are_absent() -> None:
    names = set().union(*(set(g) for g in setting_groups().values()))
    assert not names & {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}


# -- evaluating the settings as the templates would, with default parameters ---------------


def _main() -> dict[str, dict[str, object]]:
    main = bicep.file("main.bicep")
    modules = {m.name: m.value() for m in main.declarations("module")}
    return {
        "params": {p.name: p.value() for p in main.declarations("param")},
        "vars": {v.name: v.value() for v in main.declarations("var")},
        "module_params": modules["appSettings"]["params"],
    }


def _main_value(expression: str, mode: str, main: dict) -> object:
    expression = expression.strip()
    if expression in DEPLOYMENT_OUTPUTS:
        return DEPLOYMENT_OUTPUTS[expression]
    if expression == "usesKeyVault":
        return mode != "managed-identity"
    if expression == "usesEventTopic":  # contains(eventSinks, 'eventgrid'), with the default eventSinks
        return "eventgrid" in str(main["params"]["eventSinks"])
    if expression == "acsAuthMode":
        return mode
    if expression in main["params"] and not isinstance(main["params"][expression], Expr | None):
        return main["params"][expression]
    if expression in main["vars"] and not isinstance(main["vars"][expression], Expr):
        return main["vars"][expression]
    if match := re.fullmatch(r"toUpper\((\w+)\)", expression):
        return str(_main_value(match.group(1), mode, main)).upper()
    if match := re.fullmatch(r"(\w+) \? ([\w.]+|'[^']*') : ([\w.]+|'[^']*')", expression):
        branch = match.group(2) if _main_value(match.group(1), mode, main) else match.group(3)
        return branch[1:-1] if branch.startswith("'") else _main_value(branch, mode, main)
    raise AssertionError(f"test cannot evaluate main.bicep expression {expression!r}; extend the evaluator")


def _setting_value(value: object, mode: str, main: dict) -> str:
    if isinstance(value, str):
        return value
    assert isinstance(value, Expr), value
    source = value.text

    def param(name: str) -> object:
        passed = main["module_params"][name]
        return passed if not isinstance(passed, Expr) else _main_value(passed.text, mode, main)

    if re.fullmatch(r"\w+", source):
        return str(param(source))
    if match := re.fullmatch(r"string\((\w+)\)", source):
        return str(param(match.group(1)))
    if match := re.fullmatch(r"(\w+) \? 'true' : 'false'", source):
        return "true" if param(match.group(1)) else "false"
    if source.startswith("'") and source.endswith("'"):
        return re.sub(r"\$\{(\w+)\}", lambda m: str(param(m.group(1))), source[1:-1])
    raise AssertionError(f"test cannot evaluate app setting expression {source!r}; extend the evaluator")


def _pick(expression: str, mode: str, groups: dict) -> dict[str, object]:
    if expression in groups:
        return groups[expression]
    variables = {v.name: v.value() for v in settings_file().declarations("var")}
    if expression in variables and isinstance(variables[expression], Expr):
        return _pick(variables[expression].text, mode, groups)
    match = re.fullmatch(r"acsAuthMode == '([\w-]+)' \? (\w+) : (\w+)", expression)
    assert match, f"cannot evaluate {expression!r}"
    return _pick(match.group(2) if mode == match.group(1) else match.group(3), mode, groups)


def environment_for(mode: str) -> dict[str, str]:
    outputs = settings_file().declarations("output")
    assert [o.name for o in outputs] == ["settings"]
    assert outputs[0].value() == Expr("union(commonSettings, modeSettings)")
    groups = setting_groups()
    main = _main()
    merged = {**groups["commonSettings"], **_pick("modeSettings", mode, groups)}
    return {name: _setting_value(value, mode, main) for name, value in merged.items()}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("managed-identity", AuthMode.MANAGED_IDENTITY), ("key-vault", AuthMode.KEY_VAULT)],
)
def test_each_mode_puts_the_code_in_that_mode(mode: str, expected: AuthMode) -> None:
    settings = Settings.from_environ(environment_for(mode))
    acs = AcsSettings.from_environ(environment_for(mode))
    assert acs.auth_mode is expected
    assert settings.max_numbers == 10_000 and settings.max_concurrency == 8
    assert settings.default_region == "US" and acs.allow_insecure_bearer is False
    if mode == "managed-identity":
        assert acs.endpoint == DEPLOYMENT_OUTPUTS["communication.outputs.endpoint"]
    else:
        assert acs.key_vault_url == DEPLOYMENT_OUTPUTS["keyVault.outputs.uri"]
        assert acs.connection_string_secret_name == "acs-connection-string"


def test_key_vault_reference_mode_resolves_to_connection_string_mode() -> None:
    env = environment_for("key-vault-reference")
    reference = env["ACS_CONNECTION_STRING"]
    assert reference == f"@Microsoft.KeyVault(SecretUri={DEPLOYMENT_OUTPUTS['acsSecret.outputs.secretUri']})"
    with pytest.raises(SettingsError):  # unresolved, as the code would see a broken reference
        AcsSettings.from_environ(env)
    resolved = {**env, "ACS_CONNECTION_STRING": RESOLVED_CONNECTION_STRING}  # what the platform injects
    assert AcsSettings.from_environ(resolved).auth_mode is AuthMode.CONNECTION_STRING


def test_queue_settings_match_the_created_queues() -> None:
    queues = QueueSettings.from_environ(environment_for("managed-identity"))
    main_vars = _main()["vars"]
    assert queues.requests_queue == main_vars["requestsQueueName"]
    assert queues.results_queue == main_vars["resultsQueueName"]
    assert queues.results_container == main_vars["resultsContainerName"]


def test_job_settings_match_the_created_resources() -> None:
    jobs = JobSettings.from_environ(environment_for("managed-identity"))
    main_vars = _main()["vars"]
    assert (jobs.queue, jobs.table, jobs.container, jobs.uploads_container) == (
        main_vars["jobsQueueName"], main_vars["jobsTableName"], main_vars["jobsContainerName"],
        main_vars["uploadsContainerName"])
def test_event_settings_match_the_created_queue() -> None:
    events = EventSettings.from_environ(environment_for("managed-identity"))
    assert events.sinks == ("queue",) and events.topic_endpoint is None
    assert events.queue == _main()["vars"]["eventsQueueName"]
    storage = bicep.file("modules/storage.bicep")
    assert "eventsQueueName" in {p.name for p in storage.declarations("param")}


def test_audit_settings_match_the_created_resources() -> None:
    audit = AuditStorageSettings.from_environ(environment_for("managed-identity"))
    main_vars = _main()["vars"]
    assert (audit.table, audit.container, audit.index_queue) == (
        main_vars["auditTableName"], main_vars["auditContainerName"], main_vars["auditIndexQueueName"])
    assert audit.reconcile_seconds == 300
