"""GET routes refuse query parameters they do not take (as unknown body fields are refused),
and `GET /api/optouts/check` (and add, remove) is 405, not a check of the number "check"."""

from __future__ import annotations

import pytest

from devtools.acs_emulator import AcsEmulator

from .test_http_api import assert_problem, body_of, call, gateway_env  # noqa: F401 - the fixture


@pytest.mark.parametrize(("function", "route_params", "params", "unknown"), [
    ("GetOptOutStatus", {"phoneNumber": "+14255550100"}, {"sendr": "+18005550111"}, "sendr"),
    ("GetOptOutStatus", {"phoneNumber": "+14255550100"}, {"region": "US", "top": "5"}, "top"),
    ("GetOptOutHistory", {"phoneNumber": "+14255550100"}, {"page": "2"}, "page"),
    ("Health", {}, {"verbose": "1"}, "verbose"),
    ("Readiness", {}, {"refresh": "true"}, "refresh"),
    ("GetOperation", {"operationId": "0" * 32}, {"verbose": "1"}, "verbose"),
])
def test_unknown_query_parameters_are_400(gateway_env: AcsEmulator, function: str, route_params: dict[str, str],
                                          params: dict[str, str], unknown: str) -> None:
    response = call(function, method="GET", route_params=route_params, params=params)
    problem = assert_problem(response, 400, "ValidationFailed")
    assert list(problem["errors"]) == [unknown]
    assert "unknown query parameter" in problem["errors"][unknown][0]
    assert gateway_env.stats["total_calls"] == 0


def test_known_parameters_and_the_function_key_pass(gateway_env: AcsEmulator) -> None:
    response = call("GetOptOutStatus", method="GET", route_params={"phoneNumber": "+14255550100"},
                    params={"sender": "+18005550100", "region": "US", "code": "the-function-key"})
    assert response.status_code == 200
    assert body_of(response)["optedOut"] is False


@pytest.mark.parametrize("action", ["check", "add", "remove", "CHECK"])
def test_get_on_a_post_route_is_405(gateway_env: AcsEmulator, action: str) -> None:
    response = call("GetOptOutStatus", method="GET", route_params={"phoneNumber": action})
    assert_problem(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == "POST"
    assert gateway_env.stats["total_calls"] == 0
