"""The running gateway held to its contract: schemathesis generates requests from the document
that /api/openapi.json serves (through the local Functions host, with the ACS emulator and
Azurite behind it) and every answer must be documented, match its schema, and never be a 5xx."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devtools.acs_emulator import AcsEmulator
from devtools.aws_emulator import AwsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from optouts import runtime
from optouts.contract import openapi

from .conftest import OTHER_SENDER, SENDER

KEY = "contract-test-key"
AUTH = {"x-functions-key": KEY}
EXAMPLES_PER_OPERATION = 50
TIMEOUT = 30
#: The gateway refuses a list of more than OPTOUT_MAX_NUMBERS numbers (which a negative case may
#: generate) with 413, a documented answer: a refusal, as schemathesis' default 4xx list means.
CONTRACT_CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429",
    # Listing an ACS sender's list (the default sender's here), whatever else is wrong with the request:
    # a documented refusal too (only that route answers 501).
    "501"]}}})
CONFORMANCE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                      response_headers_conformance, response_schema_conformance]
#: Listing an ACS sender's opt-out list is a documented 501 (ACS has no listing API): the other
#: checks still hold it to the contract.
LISTING_CHECKS = [check for check in CONFORMANCE_CHECKS if check is not not_a_server_error]
LISTING = "GET /optouts"
#: The sender the contract's listing example names: served by the AWS emulator here.
AWS_SENDER = OTHER_SENDER


def checks_for(label: str) -> list[Any]:
    return LISTING_CHECKS if label == LISTING else CONFORMANCE_CHECKS


@pytest.fixture(scope="module")
def gateway() -> Iterator[LocalHost]:
    with Azurite() as azurite, AcsEmulator(owned_senders={SENDER, OTHER_SENDER}) as acs, \
            AwsEmulator(rates={}) as aws:
        aws.store.create_list("ContractList")
        aws.store.seed("ContractList", ["+14255550100", "+14255550101"])
        settings_ = {
            "AzureWebJobsStorage": azurite.connection_string,
            "ACS_CONNECTION_STRING": acs.connection_string,
            **aws.environ(),
            "OPTOUT_AWS_SENDERS": f"{AWS_SENDER}=ContractList",
            "OPTOUT_AWS_RPS_DESCRIBE_OPTED_OUT_NUMBERS": "1000",
            "OPTOUT_DEFAULT_SENDER": SENDER,
            "OPTOUT_TIME_BUDGET_SECONDS": "10",
            # The local host appends the loopback peer to X-Forwarded-For: it plays the proxy here.
            "OPTOUT_TRUSTED_FORWARDERS": "127.0.0.1, ::1",
        }
        runtime.reset()
        try:
            with LocalHost(app_dir=".", app_module="function_app", port=0, function_keys={"default": KEY},
                           settings=settings_) as host:
                yield host
        finally:
            runtime.reset()


@pytest.fixture(scope="module")
def served_document(gateway: LocalHost) -> dict[str, Any]:
    response = requests.get(f"{gateway.base_url}/api/openapi.json", timeout=TIMEOUT)  # no key on purpose
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="module")
def contract(served_document: dict[str, Any]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(served_document, config=CONTRACT_CONFIG)


def base_url(gateway: LocalHost) -> str:
    return f"{gateway.base_url}/api"


def operations(contract: schemathesis.BaseSchema) -> list[Any]:
    found = [result.ok() for result in contract.get_all_operations()]  # type: ignore[union-attr]
    assert {op.definition.raw["operationId"] for op in found} == {
        "RemoveOptOutNumbers", "AddOptOutNumbers", "CheckOptOutNumbers", "GetOptOutStatus", "GetOptOutHistory",
        "GetAuditOperation", "GetGatewayReadiness", "ListOptOutNumbers"}
    return found


def run_bounded(strategy: st.SearchStrategy[Case], examples: int, body: Callable[[Case], None]) -> None:
    # Failures are collected by `body` rather than raised: Hypothesis would otherwise spend the
    # time budget shrinking each one. Derandomized so a run is reproducible on any machine.
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case: Case) -> None:
        body(case)

    run()


def exercise(gateway: LocalHost, contract: schemathesis.BaseSchema, mode: GenerationMode,
             extra_checks: list[Any], examples: int) -> tuple[dict[str, dict[int, int]], list[str]]:
    statuses: dict[str, dict[int, int]] = {}
    failures: list[str] = []
    for operation in operations(contract):
        if mode is GenerationMode.NEGATIVE and not operation.definition.raw.get("parameters"):
            continue  # an operation that takes nothing has nothing to violate

        def call(case: Case, label: str = operation.label) -> None:
            response = case.call(base_url=base_url(gateway), headers=AUTH, timeout=TIMEOUT)
            counts = statuses.setdefault(label, {})
            counts[response.status_code] = counts.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=checks_for(label) + extra_checks, headers=AUTH)
            except FailureGroup as failure:  # its message ends with a curl line that reproduces it
                failures.append(f"{label} -> {response.status_code}: {failure.message[:1500]}")

        run_bounded(operation.as_strategy(generation_mode=mode, headers=AUTH), examples, call)
    return statuses, failures


# -- the document served through the host -----------------------------------------------------

def test_openapi_json_needs_no_key_and_names_the_callers_host(gateway: LocalHost,
                                                               served_document: dict[str, Any]) -> None:
    host = gateway.base_url.removeprefix("http://")
    assert (served_document["host"], served_document["schemes"]) == (host, ["http"])
    assert served_document == openapi.build_document(host, schemes=["http"])
    # The same host demands a key everywhere else: the document is open on purpose, not by accident.
    protected = requests.post(f"{gateway.base_url}/api/optouts/check", json={"phoneNumbers": ["+14255550100"]},
                              timeout=TIMEOUT)
    assert (protected.status_code, protected.content) == (401, b"")


def test_openapi_json_behind_a_proxy_names_the_public_host(gateway: LocalHost) -> None:
    response = requests.get(f"{gateway.base_url}/api/openapi.json", timeout=TIMEOUT,
                            headers={"X-Forwarded-Host": "optouts.contoso.com", "X-Forwarded-Proto": "https"})
    document = response.json()
    assert (document["host"], document["schemes"], document["basePath"]) == ("optouts.contoso.com", ["https"], "/api")


# -- conformance -----------------------------------------------------------------------------------

def test_documented_examples_succeed_and_conform(gateway: LocalHost, contract: schemathesis.BaseSchema) -> None:
    statuses: dict[str, int] = {}
    failures: list[str] = []
    for operation in operations(contract):
        strategies = operation.get_strategies_from_examples()
        if not strategies and not operation.definition.raw.get("parameters"):
            strategies = [operation.as_strategy()]  # nothing to exemplify: the one request it takes
        assert strategies, f"{operation.label} documents no example"

        def call(case: Case, label: str = operation.label) -> None:
            response = case.call(base_url=base_url(gateway), headers=AUTH, timeout=TIMEOUT)
            statuses[label] = response.status_code
            try:
                case.validate_response(response, checks=checks_for(label), headers=AUTH)
            except FailureGroup as failure:
                failures.append(f"{label}: {failure.message[:1500]}")

        run_bounded(st.one_of(strategies), 3, call)
    assert failures == []
    # The examples are real requests: each one must succeed against the emulator, except the operation
    # record's, which names an operation this gateway never accepted (a conforming 404 OperationNotFound).
    assert statuses.pop("GET /operations/{operationId}") == 404
    assert set(statuses.values()) == {200}, statuses


def test_generated_requests_get_documented_answers(gateway: LocalHost, contract: schemathesis.BaseSchema) -> None:
    # ignored_auth sends each case again without the key: the host must refuse it (401).
    statuses, failures = exercise(gateway, contract, GenerationMode.POSITIVE, [ignored_auth], EXAMPLES_PER_OPERATION)
    assert failures == [], "\n".join(failures[:5])
    # Generation reached the success path, not only validation errors.
    for label in ("POST /optouts/remove", "POST /optouts/add", "POST /optouts/check"):
        assert statuses[label].get(200, 0) > 0, statuses


def test_schema_violating_requests_are_refused_with_a_4xx(gateway: LocalHost,
                                                           contract: schemathesis.BaseSchema) -> None:
    statuses, failures = exercise(gateway, contract, GenerationMode.NEGATIVE, [negative_data_rejection],
                                  EXAMPLES_PER_OPERATION)
    assert failures == [], "\n".join(failures[:5])
    # A body that breaks the schema is always refused. A GET may still succeed: not every case
    # schemathesis calls negative must be refused (negative_data_rejection above judges which answers
    # had to be 4xx); undeclared query parameters are refused with a 400, as unknown body fields are.
    for label in ("POST /optouts/remove", "POST /optouts/add", "POST /optouts/check"):
        assert statuses[label] and all(400 <= status < 500 for status in statuses[label]), statuses
    assert all(status < 500 or (label, status) == (LISTING, 501)
               for label, counts in statuses.items() for status in counts), statuses


# -- the checks can fail ---------------------------------------------------------------------------

def fabricated(status: int, body: object, content_type: str = "application/json") -> schemathesis.Response:
    request = requests.Request("POST", "http://127.0.0.1/api/optouts/check").prepare()
    headers = {"Content-Type": [content_type], "x-trace-id": ["00-" + "1" * 32 + "-" + "2" * 16 + "-00"]}
    return schemathesis.Response(status_code=status, headers=headers, content=json.dumps(body).encode(),
                                 request=request, elapsed=0.0, verify=True, encoding="utf-8")


def test_the_checks_reject_what_the_contract_forbids(contract: schemathesis.BaseSchema) -> None:
    case = contract["/optouts/check"]["POST"].Case(body={"phoneNumbers": ["+14255550100"]}, media_type="application/json")
    result = {"input": "garbage", "phoneNumber": None, "status": "invalid",
              "error": {"code": "UnexpectedCharacters", "message": "letters"}}
    report = {"action": "check", "sender": SENDER, "results": [result],
              "summary": {"total": 1, "succeeded": 0, "invalid": 1, "failed": 0}}
    case.validate_response(fabricated(200, report), checks=CONFORMANCE_CHECKS)  # x-nullable: null is fine

    wrong_type = {**report, "results": [{**result, "phoneNumber": 14255550100}]}
    renamed = {**report, "results": [{**{k: v for k, v in result.items() if k != "status"}, "state": "invalid"}]}
    problem = {"type": "about:blank", "title": "t", "status": 400, "detail": "d", "code": "ValidationFailed",
               "traceId": "x"}
    for response in (fabricated(200, wrong_type), fabricated(200, renamed), fabricated(500, problem),
                     fabricated(404, problem), fabricated(400, {**problem, "code": None}, "application/problem+json")):
        with pytest.raises(FailureGroup):
            case.validate_response(response, checks=CONFORMANCE_CHECKS)
