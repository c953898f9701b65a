"""HTTP functions called the way the host calls them: a `func.HttpRequest` handed to
the registered user function, with the ACS emulator behind it over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator

import azure.functions as func
import pytest

import function_app
from devtools.acs_emulator import AcsEmulator, FaultConfig
from devtools.indexing import indexed_functions
from optouts import runtime

from .conftest import OTHER_SENDER, SENDER

Call = Callable[..., func.HttpResponse]


def registered_functions() -> dict[str, object]:
    return indexed_functions(function_app.app)


@pytest.fixture
def gateway_env(emulator: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[AcsEmulator]:
    for name, value in {
        "ACS_CONNECTION_STRING": emulator.connection_string,
        "OPTOUT_DEFAULT_SENDER": SENDER,
        "OPTOUT_ALLOWED_SENDERS": f"{SENDER},{OTHER_SENDER}",
        "OPTOUT_MAX_NUMBERS": "300",
        "OPTOUT_MAX_BODY_BYTES": "65536",
        "OPTOUT_TIME_BUDGET_SECONDS": "10",
    }.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield emulator
    runtime.reset()


def call(name: str, *, method: str = "POST", body: object = None, raw: bytes | None = None,
         route_params: dict[str, str] | None = None, params: dict[str, str] | None = None,
         headers: dict[str, str] | None = None) -> func.HttpResponse:
    function = registered_functions()[name]
    route = function.get_trigger().route  # type: ignore[attr-defined]
    payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    request = func.HttpRequest(
        method=method,
        url=f"http://127.0.0.1:7071/api/{route}",
        headers={"content-type": "application/json", **(headers or {})},
        params=params or {},
        route_params=route_params or {},
        body=payload,
    )
    return function.get_user_function()(request)  # type: ignore[attr-defined]


def body_of(response: func.HttpResponse) -> dict:
    return json.loads(response.get_body())


def assert_problem(response: func.HttpResponse, status: int, code: str | None = None) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    problem = body_of(response)
    assert problem["status"] == status
    assert {"type", "title", "detail", "traceId"} <= set(problem)
    if code is not None:
        assert problem["code"] == code
    return problem


def test_indexed_function_metadata() -> None:
    expected = {
        "RemoveOptOuts": ("optouts/remove", ["POST"]),
        "AddOptOuts": ("optouts/add", ["POST"]),
        "CheckOptOuts": ("optouts/check", ["POST"]),
        "GetOptOutStatus": ("optouts/{phoneNumber}", ["GET"]),
        "ListOptOuts": ("optouts", ["GET"]),
        "GetOptOutHistory": ("optouts/{phoneNumber}/history", ["GET"]),
        "Health": ("health", ["GET"]),
        "GetOperation": ("operations/{operationId}", ["GET"]),
        "Readiness": ("health/ready", ["GET"]),
        "CreateJob": ("jobs", ["POST"]),
        "GetJob": ("jobs/{jobId}", ["GET"]),
        "CancelJob": ("jobs/{jobId}", ["DELETE"]),
        "GetJobReport": ("jobs/{jobId}/report", ["GET"]),
    }
    functions = registered_functions()
    for name, (route, methods) in expected.items():
        trigger = functions[name].get_trigger()  # type: ignore[attr-defined]
        assert trigger.route == route
        assert [str(m.value if hasattr(m, "value") else m) for m in trigger.methods] == methods
        assert str(trigger.auth_level.value if hasattr(trigger.auth_level, "value") else trigger.auth_level).upper() == "FUNCTION"
    queue_trigger = functions["ProcessOptOutRequest"].get_trigger()  # type: ignore[attr-defined]
    assert (queue_trigger.queue_name, queue_trigger.connection) == ("optout-requests", "AzureWebJobsStorage")
    index_trigger = functions["IndexAuditTrail"].get_trigger()  # type: ignore[attr-defined]
    assert (index_trigger.queue_name, index_trigger.connection) == ("optout-audit-index", "AzureWebJobsStorage")
    job_trigger = functions["ProcessJobMessage"].get_trigger()  # type: ignore[attr-defined]
    assert (job_trigger.queue_name, job_trigger.connection) == ("optout-jobs", "AzureWebJobsStorage")
    assert set(functions) == set(expected) | {"ProcessOptOutRequest", "OpenApiDocument", "IndexAuditTrail",
                                              "ProcessJobMessage"}


def test_remove_reports_every_number_in_order(gateway_env: AcsEmulator) -> None:
    gateway_env.seed_opt_outs(SENDER, ["+14255550100", "+14255550101"])
    response = call("RemoveOptOuts", body={
        "phoneNumbers": ["+14255550100", "(425) 555-0101", "garbage", "", "+14255550100"],
        "reason": "customer asked by phone",
    })
    assert response.status_code == 200
    report = body_of(response)
    assert report["action"] == "remove" and report["sender"] == SENDER
    assert [r["input"] for r in report["results"]] == ["+14255550100", "(425) 555-0101", "garbage", "", "+14255550100"]
    assert [r["status"] for r in report["results"]] == ["succeeded", "succeeded", "invalid", "invalid", "succeeded"]
    assert report["results"][1]["phoneNumber"] == "+14255550101"
    assert report["results"][2]["phoneNumber"] is None and report["results"][2]["error"]["code"]
    assert "error" not in report["results"][0] and "optedOut" not in report["results"][0]
    assert report["summary"] == {"total": 5, "succeeded": 3, "invalid": 2, "failed": 0}
    assert gateway_env.opted_out(SENDER) == set()


def test_add_then_check(gateway_env: AcsEmulator) -> None:
    assert call("AddOptOuts", body={"phoneNumbers": ["425-555-0199"], "sender": OTHER_SENDER}).status_code == 200
    report = body_of(call("CheckOptOuts", body={"phoneNumbers": ["+14255550199", "+14255550198"], "sender": OTHER_SENDER}))
    assert [r["optedOut"] for r in report["results"]] == [True, False]


def test_national_numbers_use_the_region(gateway_env: AcsEmulator) -> None:
    report = body_of(call("CheckOptOuts", body={"phoneNumbers": ["020 7946 0958", "0044 20 7946 0958"], "region": "GB"}))
    assert [r["phoneNumber"] for r in report["results"]] == ["+442079460958", "+442079460958"]


def test_single_number_check(gateway_env: AcsEmulator) -> None:
    gateway_env.seed_opt_outs(SENDER, ["+14255550100"])
    response = call("GetOptOutStatus", method="GET", route_params={"phoneNumber": "+14255550100"})
    assert response.status_code == 200
    assert body_of(response) == {"phoneNumber": "+14255550100", "sender": SENDER, "optedOut": True}
    invalid = call("GetOptOutStatus", method="GET", route_params={"phoneNumber": "abc"})
    assert "phoneNumber" in assert_problem(invalid, 400)["errors"]
    forbidden = call("GetOptOutStatus", method="GET", route_params={"phoneNumber": "+14255550100"},
                     params={"sender": "+18005559999"})
    assert_problem(forbidden, 403, "SenderNotAllowed")


def test_health_shows_configuration_without_secrets(gateway_env: AcsEmulator) -> None:
    response = call("Health", method="GET")
    assert response.status_code == 200
    health = body_of(response)
    assert health["configuration"]["authMode"] == "connection-string"
    assert health["configuration"]["defaultSender"] == SENDER
    assert gateway_env.access_key not in response.get_body().decode()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "InvalidJson"),
        (b"", 400, "EmptyBody"),
        (b"\xff\xfe\x00", 400, "InvalidEncoding"),
        (b"[1,2]", 400, "ValidationFailed"),
        (b'{"phoneNumbers": "+14255550100"}', 400, "ValidationFailed"),
        (b'{"phoneNumbers": [14255550100]}', 400, "ValidationFailed"),
        (b'{"phoneNumbers": ["+14255550100"], "sender": 5}', 400, "ValidationFailed"),
        (b'{"phoneNumbers": ["+14255550100"], "sender": "+18005559999"}', 403, "SenderNotAllowed"),
        (json.dumps({"phoneNumbers": ["+14255550100"] * 301}).encode(), 413, "TooManyPhoneNumbers"),
        (b'{"phoneNumbers": ["' + b"1" * 70_000 + b'"]}', 413, "BodyTooLarge"),
        (b"[" * 30_000 + b"]" * 30_000, 400, "InvalidJson"),
    ],
)
def test_bad_input_gets_a_problem_never_a_500(gateway_env: AcsEmulator, raw: bytes, status: int, code: str) -> None:
    assert_problem(call("RemoveOptOuts", raw=raw), status, code)
    assert gateway_env.stats["total_calls"] == 0


def test_wrong_content_type_is_415(gateway_env: AcsEmulator) -> None:
    response = call("AddOptOuts", body={"phoneNumbers": ["1"]}, headers={"content-type": "text/plain"})
    assert_problem(response, 415, "UnsupportedMediaType")


def test_missing_sender_without_default_is_400(gateway_env: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTOUT_DEFAULT_SENDER")
    runtime.reset()
    problem = assert_problem(call("AddOptOuts", body={"phoneNumbers": ["+14255550100"]}), 400)
    assert "sender" in problem["errors"]


def test_bad_gateway_credentials_are_502(gateway_env: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = base64.b64encode(b"x" * 32).decode()
    monkeypatch.setenv("ACS_CONNECTION_STRING", f"endpoint={gateway_env.endpoint}/;accesskey={wrong}")
    runtime.reset()
    response = call("AddOptOuts", body={"phoneNumbers": ["+14255550100"]})
    problem = assert_problem(response, 502, "AcsAuthenticationFailed")
    assert wrong not in json.dumps(problem)


def test_throttled_everywhere_is_503_with_retry_after(gateway_env: AcsEmulator) -> None:
    gateway_env.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=30)
    response = call("AddOptOuts", body={"phoneNumbers": ["+14255550100"]})
    assert_problem(response, 503, "AcsThrottled")
    assert int(response.headers["Retry-After"]) >= 1


def test_partial_failures_are_reported_per_number(gateway_env: AcsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway_env.faults = FaultConfig(recipient_error_rate=1.0)
    response = call("AddOptOuts", body={"phoneNumbers": ["+14255550100", "bad"]})
    assert response.status_code == 200
    report = body_of(response)
    assert [r["status"] for r in report["results"]] == ["failed", "invalid"]
    assert report["results"][0]["error"]["code"] == "AcsUnavailable"
    assert report["summary"]["failed"] == 1


def test_missing_configuration_is_503_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACS_CONNECTION_STRING", "ACS_ENDPOINT", "KEY_VAULT_URL", "ACS_CONNECTION_STRING_SECRET_NAME"):
        monkeypatch.delenv(name, raising=False)
    runtime.reset()
    try:
        problem = assert_problem(call("Health", method="GET"), 503, "GatewayMisconfigured")
        assert "ACS_CONNECTION_STRING" in problem["detail"]
    finally:
        runtime.reset()


def test_logs_mask_phone_numbers(gateway_env: AcsEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway_env.faults = FaultConfig(recipient_error_rate=1.0)
    call("RemoveOptOuts", body={"phoneNumbers": ["+14255550177"]})
    assert "+1425***0177" in caplog.text
    assert "4255550177" not in caplog.text


@pytest.mark.parametrize("text", ["Zoë +1 (425) 555‑0100 ☎", "+1425555\ud800"])
def test_answers_are_json_that_decodes_to_exactly_what_was_put_in(text: str) -> None:
    """UTF-8 for any text; a lone surrogate, which UTF-8 cannot carry, as an ASCII `\\u` escape."""
    from blueprints.responses import json_response

    response = json_response({"input": text, "n": [1, None, True]}, trace_id="t")
    body = response.get_body()
    assert response.mimetype == "application/json" and response.charset == "utf-8"
    assert json.loads(body.decode("utf-8")) == {"input": text, "n": [1, None, True]}
    assert body.isascii() == ("\ud800" in text)
