"""The OpenAPI contract and the Power Automate connector files, checked without a network:
a valid Swagger 2.0 document, the connector conventions (a small linter), schemas equal to the
code's rules, committed files equal to the generated ones, and /api/openapi.json in-process."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

import function_app
from blueprints.openapi_api import public_origin
from devtools.indexing import indexed_functions
from optouts import config
from optouts.contract import openapi
from optouts.domain import commands

REPO = Path(__file__).resolve().parent.parent
CONNECTOR = REPO / "connector"
OPERATION_IDS = {"RemoveOptOutNumbers", "AddOptOutNumbers", "CheckOptOutNumbers", "GetOptOutStatus",
                 "GetAuditOperation", "GetOptOutHistory", "GetGatewayReadiness", "ListOptOutNumbers"}
ERRORS_EVERY_OPERATION_DECLARES = {"400", "401", "403", "502", "503"}
# Readiness acts for no sender and calls ACS only to check it: no 403 or 502, a 503 that says why.
# Reading the gateway's own audit records involves neither a sender's list nor ACS.
ERRORS_DECLARED_BY = {"GetGatewayReadiness": {"400", "401", "503"}, "GetAuditOperation": {"400", "401", "404", "503"}}
# Only a request with a body can be too large or of the wrong media type.
ERRORS_ONLY_BODIES_CAUSE = {"413", "415"}
# Words Title Case leaves in lower case unless they open the summary.
MINOR_WORDS = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with"}


# -- a small linter for the connector conventions --------------------------------------------

def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        *_, section, name = node["$ref"].split("/")
        node = document[section][name]
    return node


def is_title_case(text: str) -> bool:
    words = re.split(r"[\s]+", text)
    for index, word in enumerate(words):
        for part in word.split("-"):
            if index > 0 and part.lower() in MINOR_WORDS and part == part.lower():
                continue
            if not part[:1].isupper():
                return False
    return True


def schema_properties_missing_summary(document: dict[str, Any], schema: dict[str, Any], where: str,
                                      seen: set[str]) -> list[str]:
    """Every property, at any depth and through $refs, must carry x-ms-summary."""
    problems: list[str] = []
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return problems
        seen = seen | {schema["$ref"]}
    schema = resolve(document, schema)
    for name, prop in schema.get("properties", {}).items():
        if "x-ms-summary" not in resolve(document, prop):
            problems.append(f"{where}.{name}: no x-ms-summary")
        problems += schema_properties_missing_summary(document, prop, f"{where}.{name}", seen)
    if isinstance(schema.get("items"), dict):
        problems += schema_properties_missing_summary(document, schema["items"], f"{where}[]", seen)
    return problems


def lint(document: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    # Problem answers are application/problem+json, so it may follow application/json in produces.
    if document.get("consumes") != ["application/json"] or document.get("produces", [None])[0] != "application/json":
        problems.append("document: consumes/produces must be application/json")
    descriptions: set[str] = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            operation_id = operation.get("operationId", "")
            if not re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", operation_id):
                problems.append(f"{where}: operationId {operation_id!r} is not PascalCase")
            summary, description = operation.get("summary", ""), operation.get("description", "")
            if not summary or len(summary) > 80 or not is_title_case(summary) or summary.endswith("."):
                problems.append(f"{where}: summary {summary!r} must be Title Case, at most 80 characters, no period")
            if not description.endswith(".") or description.count(". ") or description.rstrip(".") == summary:
                problems.append(f"{where}: description must be one sentence ending with a period, unlike the summary")
            if description in descriptions:
                problems.append(f"{where}: description repeats another operation's")
            descriptions.add(description)
            for parameter in map(lambda p: resolve(document, p), operation.get("parameters", [])):
                label = f"{where} parameter {parameter['name']}"
                if "x-ms-summary" not in parameter:
                    problems.append(f"{label}: no x-ms-summary")
                if "schema" in parameter:
                    problems += schema_properties_missing_summary(document, parameter["schema"], label, set())
            problems += lint_responses(document, where, method, operation["responses"],
                                       ERRORS_DECLARED_BY.get(operation_id, ERRORS_EVERY_OPERATION_DECLARES))
    return problems


def lint_responses(document: dict[str, Any], where: str, method: str, responses: dict[str, Any],
                   errors_declared: set[str] = ERRORS_EVERY_OPERATION_DECLARES) -> list[str]:
    problems = []
    successes = [code for code in responses if code.startswith("2")]
    if successes != ["200"]:
        problems.append(f"{where}: exactly one success response, 200, expected; got {successes}")
    elif resolve(document, resolve(document, responses["200"]).get("schema", {})).get("type") != "object":
        problems.append(f"{where}: the 200 schema must be an object (Power Automate reads its properties)")
    else:
        problems += schema_properties_missing_summary(document, resolve(document, responses["200"])["schema"],
                                                      f"{where} 200", set())
    expected_errors = errors_declared | (ERRORS_ONLY_BODIES_CAUSE if method == "post" else set())
    if missing := expected_errors - set(responses):
        problems.append(f"{where}: undeclared error responses {sorted(missing)}")
    for code in expected_errors & set(responses) - {"401"}:
        if resolve(document, responses[code]).get("schema") != {"$ref": "#/definitions/Problem"}:
            problems.append(f"{where}: {code} must use the Problem schema")
    return problems


def visibility(document: dict[str, Any]) -> dict[str, str | None]:
    body = document["definitions"]["OptOutRequest"]["properties"]
    single = {p["name"]: p for p in map(lambda p: resolve(document, p),
                                         document["paths"]["/optouts/{phoneNumber}"]["get"]["parameters"])}
    return {
        "body.phoneNumbers": body["phoneNumbers"].get("x-ms-visibility"),
        "body.region": body["region"].get("x-ms-visibility"),
        "body.reason": body["reason"].get("x-ms-visibility"),
        "query.region": single["region"].get("x-ms-visibility"),
        "path.phoneNumber": single["phoneNumber"].get("x-ms-visibility"),
    }


# -- the document --------------------------------------------------------------------------------

@pytest.mark.parametrize("auth", ["function-key", "entra-id"])
def test_document_is_valid_swagger_2(auth: str) -> None:
    validate(openapi.build_document(auth=auth), cls=OpenAPIV2SpecValidator)  # type: ignore[arg-type]


def test_the_validator_rejects_a_broken_document() -> None:
    broken = openapi.build_document()
    del broken["paths"]["/optouts/remove"]["post"]["responses"]
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV2SpecValidator)


@pytest.mark.parametrize("auth", ["function-key", "entra-id"])
def test_document_follows_the_connector_conventions(auth: str) -> None:
    document = openapi.build_document(auth=auth)  # type: ignore[arg-type]
    assert lint(document) == []
    operation_ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    assert operation_ids == OPERATION_IDS
    assert visibility(document) == {
        "body.phoneNumbers": "important", "body.region": "advanced", "body.reason": "advanced",
        "query.region": "advanced", "path.phoneNumber": "important",
    }


def test_the_linter_catches_each_convention() -> None:
    document = openapi.build_document()
    operation = document["paths"]["/optouts/add"]["post"]
    operation["operationId"] = "addOptOuts"
    operation["summary"] = "add numbers to the list"
    operation["description"] = document["paths"]["/optouts/remove"]["post"]["description"]
    operation["responses"]["201"] = operation["responses"]["200"]
    del operation["responses"]["415"]
    del document["definitions"]["NumberError"]["properties"]["code"]["x-ms-summary"]
    del resolve(document, document["paths"]["/optouts/{phoneNumber}"]["get"]["parameters"][1])["x-ms-summary"]
    found = "\n".join(lint(document))
    for expected in ("not PascalCase", "must be Title Case", "repeats another operation's",
                     "exactly one success response", "undeclared error responses ['415']",
                     "results[].error.code: no x-ms-summary", "parameter sender: no x-ms-summary"):
        assert expected in found


def test_request_schema_is_the_code_rules() -> None:
    document = openapi.build_document()
    body = document["definitions"]["OptOutRequest"]
    assert body["required"] == ["phoneNumbers"] and body["additionalProperties"] is False
    properties = body["properties"]
    assert set(properties) == set(commands._BODY_FIELDS)
    assert {k: properties["phoneNumbers"][k] for k in ("type", "minItems", "maxItems")} == {
        "type": "array", "minItems": 1, "maxItems": config.DEFAULT_MAX_NUMBERS}
    assert properties["phoneNumbers"]["items"]["type"] == "string"
    assert properties["region"]["pattern"] == "^([A-Za-z]{2})?$"
    assert properties["reason"]["maxLength"] == commands.MAX_REASON_LENGTH == openapi.MAX_REASON_LENGTH  # type: ignore[attr-defined]
    assert properties["sender"]["maxLength"] == commands.MAX_SENDER_LENGTH == openapi.MAX_SENDER_LENGTH  # type: ignore[attr-defined]
    assert document["securityDefinitions"] == {
        "functionKey": {"type": "apiKey", "name": "x-functions-key", "in": "header"}}
    assert document["definitions"]["NumberResult"]["properties"]["phoneNumber"]["x-nullable"] is True


def test_response_schemas_accept_what_the_service_reports() -> None:
    # The 200 report's keys come from optouts.usecases.service; a renamed key there must show up here.
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    from optouts.domain.operations import Operation
    from optouts.domain.reports import NumberError, NumberResult, OperationReport

    document = openapi.build_document()
    report = OperationReport(Operation.CHECK, "+18005550100", [
        NumberResult("+14255550100", "+14255550100", "succeeded", opted_out=True),
        NumberResult("garbage", None, "invalid", error=NumberError("UnexpectedCharacters", "letters")),
    ]).to_dict()
    schema = as_json_schema(document, "OptOutReport")
    assert list(Draft4Validator(schema).iter_errors(report)) == []
    report["results"][0]["phone"] = report["results"][0].pop("phoneNumber")
    assert list(Draft4Validator(schema).iter_errors(report)) != []


def as_json_schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    """A definition as plain JSON Schema: x-nullable spelled as a null type, refs kept resolvable."""
    text = json.dumps({**document["definitions"][name], "definitions": document["definitions"]})

    def nullable(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: nullable(v) for k, v in node.items()}
            if node.pop("x-nullable", False):
                node["type"] = [node["type"], "null"]
        elif isinstance(node, list):
            node = [nullable(v) for v in node]
        return node

    return nullable(json.loads(text))


# -- the committed connector files ---------------------------------------------------------------

@pytest.mark.parametrize(("path", "auth"), [("apiDefinition.swagger.json", "function-key"),
                                            ("aad/apiDefinition.swagger.json", "entra-id")])
def test_committed_definition_is_the_generated_one(path: str, auth: str) -> None:
    generated = openapi.render(openapi.build_document(openapi.PLACEHOLDER_HOST, auth=auth))  # type: ignore[arg-type]
    regenerate = f"python -m optouts.contract.openapi --auth {auth} > connector/{path}"
    assert (CONNECTOR / path).read_text(encoding="utf-8") == generated, f"stale: run {regenerate}"


def test_module_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert openapi.main(["--host", "gw.example.net", "--auth", "entra-id"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == openapi.build_document("gw.example.net", auth="entra-id")
    assert (printed["host"], printed["schemes"], printed["basePath"]) == ("gw.example.net", ["https"], "/api")


def test_api_key_connector_properties() -> None:
    properties = json.loads((CONNECTOR / "apiProperties.json").read_text())["properties"]
    assert properties["connectionParameters"]["api_key"]["type"] == "securestring"
    assert properties["connectionParameters"]["api_key"]["uiDefinition"]["constraints"]["required"] == "true"
    assert re.fullmatch(r"#[0-9A-Fa-f]{6}", properties["iconBrandColor"])
    assert isinstance(properties["capabilities"], list)


def test_entra_id_connector_properties_send_the_function_key_too() -> None:
    properties = json.loads((CONNECTOR / "aad" / "apiProperties.json").read_text())["properties"]
    parameters = properties["connectionParameters"]
    oauth = parameters["token"]["oAuthSettings"]
    assert (parameters["token"]["type"], oauth["identityProvider"]) == ("oauthSetting", "aad")
    assert oauth["properties"]["AzureActiveDirectoryResourceId"] == oauth["customParameters"]["resourceUri"]["value"]
    # Routes are FUNCTION level: with App Service authentication in front, the key is still needed.
    (policy,) = properties["policyTemplateInstances"]
    assert policy["templateId"] == "setheader"
    assert policy["parameters"]["x-ms-apimTemplateParameter.name"] == "x-functions-key"
    referenced = re.fullmatch(r"@connectionParameters\('(\w+)'\)", policy["parameters"]["x-ms-apimTemplateParameter.value"])
    assert referenced and parameters[referenced.group(1)]["type"] == "securestring"
    assert properties["iconBrandColor"] == json.loads((CONNECTOR / "apiProperties.json").read_text())[
        "properties"]["iconBrandColor"]


def test_icon_is_a_square_png_in_the_brand_colour() -> None:
    data = (CONNECTOR / "icon.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert width == height and 100 <= width <= 500 and (depth, colour_type) == (8, 2)
    first_row = zlib.decompress(chunks[b"IDAT"])[: 1 + 3 * width]
    brand = json.loads((CONNECTOR / "apiProperties.json").read_text())["properties"]["iconBrandColor"]
    assert first_row[0] == 0 and first_row[1:4] == bytes.fromhex(brand[1:])  # unfiltered corner pixel


# -- /api/openapi.json in-process ----------------------------------------------------------------

def call_openapi(url: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    function = indexed_functions(function_app.app)["OpenApiDocument"]
    request = func.HttpRequest(method="GET", url=url, headers=headers or {}, params={}, route_params={}, body=b"")
    return function.get_user_function()(request)  # type: ignore[attr-defined]


def test_openapi_function_is_anonymous_get() -> None:
    trigger = indexed_functions(function_app.app)["OpenApiDocument"].get_trigger()  # type: ignore[attr-defined]
    assert trigger.route == "openapi.json"
    assert [str(getattr(m, "value", m)) for m in trigger.methods] == ["GET"]
    assert str(getattr(trigger.auth_level, "value", trigger.auth_level)).upper() == "ANONYMOUS"


def test_openapi_function_fills_in_the_callers_host() -> None:
    response = call_openapi("https://sms-optout.azurewebsites.net/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = json.loads(response.get_body())
    assert (document["host"], document["schemes"], document["basePath"]) == (
        "sms-optout.azurewebsites.net", ["https"], "/api")
    assert document == openapi.build_document("sms-optout.azurewebsites.net")


def test_openapi_function_prefers_forwarded_host_and_scheme_from_a_trusted_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPTOUT_TRUSTED_FORWARDERS", "10.0.0.0/8")
    headers = {"x-forwarded-host": "api.contoso.com, internal-proxy", "x-forwarded-proto": "https"}
    response = call_openapi("http://10.0.0.4:8080/api/openapi.json", {**headers, "x-forwarded-for": "10.0.0.9:1234"})
    document = json.loads(response.get_body())
    assert (document["host"], document["schemes"]) == ("api.contoso.com", ["https"])
    assert response.headers["Vary"] == "X-Forwarded-Host, X-Forwarded-Proto"
    untrusted = json.loads(call_openapi("http://10.0.0.4:8080/api/openapi.json", headers).get_body())
    assert (untrusted["host"], untrusted["schemes"]) == ("10.0.0.4:8080", ["http"])


@pytest.mark.parametrize("forwarded", ['evil.com/"><script>', "a b", "", "host:99999999", "user@evil.com"])
def test_a_forwarded_host_that_is_not_a_host_name_is_ignored(forwarded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_TRUSTED_FORWARDERS", "127.0.0.1")
    assert public_origin("http://127.0.0.1:7071/api/openapi.json",
                         {"x-forwarded-host": forwarded, "x-forwarded-proto": "gopher",
                          "x-forwarded-for": "127.0.0.1"}) == ("http", "127.0.0.1:7071")


def test_ipv6_and_port_hosts_are_kept() -> None:
    assert public_origin("http://[::1]:7071/api/openapi.json", {}) == ("http", "[::1]:7071")


def test_the_guide_names_the_actions_as_the_flow_designer_shows_them() -> None:
    guide = (REPO / "docs" / "power-automate.md").read_text(encoding="utf-8")
    document = openapi.build_document()
    for item in document["paths"].values():
        for operation in item.values():
            assert f"| {operation['summary']} |" in guide, operation["operationId"]
    for auth in ("", " --auth entra-id"):  # the regeneration commands it gives must be the real ones
        assert f"python -m optouts.contract.openapi{auth} > connector/" in guide
