"""App Service authentication (Entra ID) is an option of the deployment: off by default, and
when on, it refuses unauthenticated API calls with 401 (never a login page), accepts tokens for
the gateway's registration only, leaves the contract anonymous and stores no tokens."""

from __future__ import annotations

from tests.infra import bicep
from tests.infra.bicep import Expr

AUTH_TYPE = "Microsoft.Web/sites/config"


def auth_resource() -> bicep.Declaration:
    (resource,) = [r for r in bicep.file("modules/function-app.bicep").resources(AUTH_TYPE)
                   if isinstance(r.value(), dict) and r.value().get("name") == "authsettingsV2"]
    return resource


def params(relative: str) -> dict[str, bicep.Declaration]:
    return {p.name: p for p in bicep.file(relative).declarations("param")}


def test_it_is_deployed_only_when_the_option_is_on_and_the_option_defaults_to_off() -> None:
    resource = auth_resource()
    header = bicep.text(resource.node).split("{", 1)[0]
    assert "if (appServiceAuthEnabled)" in header, header
    for relative in ("main.bicep", "modules/function-app.bicep"):
        option = params(relative)["appServiceAuthEnabled"]
        assert option.value() is False, f"{relative}: appServiceAuthEnabled must default to false"


def test_unauthenticated_api_calls_get_401_and_only_the_contract_is_excluded() -> None:
    properties = bicep.dig(auth_resource().value(), "properties")
    assert bicep.dig(properties, "platform", "enabled") is True
    validation = bicep.dig(properties, "globalValidation")
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == ["/api/openapi.json"]
    assert bicep.dig(properties, "httpSettings", "requireHttps") is True
    assert bicep.dig(properties, "login", "tokenStore", "enabled") is False


def test_entra_id_accepts_the_gateway_audience_of_the_chosen_tenant() -> None:
    aad = bicep.dig(auth_resource().value(), "properties", "identityProviders", "azureActiveDirectory")
    assert aad["enabled"] is True
    registration = bicep.dig(aad, "registration")
    assert registration["clientId"] == Expr("authClientId")
    issuer = registration["openIdIssuer"]
    assert isinstance(issuer, Expr) and "authTenantId" in issuer.text and issuer.text.endswith("/v2.0'")
    assert "environment().authentication.loginEndpoint" in issuer.text  # sovereign clouds too
    audiences = bicep.dig(aad, "validation", "allowedAudiences")
    assert Expr("'api://${authClientId}'") in audiences and Expr("authClientId") in audiences
    allowed = bicep.dig(aad, "validation", "defaultAuthorizationPolicy", "allowedApplications")
    assert allowed == Expr("authAllowedApplications")


def test_main_passes_the_option_through() -> None:
    (module,) = [m for m in bicep.file("main.bicep").declarations("module") if m.name == "functionApp"]
    passed = bicep.dig(module.value(), "params")
    assert passed["appServiceAuthEnabled"] == Expr("appServiceAuthEnabled")
    assert passed["authClientId"] == Expr("authClientId")
    assert "authAllowedApplications" in passed
    for name in ("appServiceAuthEnabled", "authClientId", "authAllowedApplications"):
        assert name in params("main.bicep"), name


def test_trusted_forwarders_reach_the_app_setting_and_default_to_none() -> None:
    groups = {v.name: v.value() for v in bicep.file("modules/app-settings.bicep").declarations("var")}
    assert groups["commonSettings"]["OPTOUT_TRUSTED_FORWARDERS"] == Expr("trustedForwarders")
    assert params("main.bicep")["trustedForwarders"].value() == ""
    assert params("modules/app-settings.bicep")["trustedForwarders"].value() == ""
