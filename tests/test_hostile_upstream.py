"""A hostile or broken ACS, end to end through the registered functions: absurd Retry-After
values, error bodies that are huge, deeply nested or carry line breaks, and 200 answers whose
`value` is malformed, mistyped, missing recipients or naming others. Every request answers a
definite per-number result or 502/503 problem+json (never a 500), no log line carries the
upstream's line breaks, and a queued request under the same answers gets its result."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator

import azure.functions as func
import pytest
from azure.functions import queue as func_queue
from azure.storage.queue import QueueClient

import function_app
from blueprints.queue_api import Redelivery
from devtools.azurite import Azurite
from devtools.indexing import indexed_functions
from optouts import runtime
from optouts.providers.acs.policies import MAX_RETRY_AFTER_SECONDS

from .conftest import SENDER
from .upstream import ScriptedUpstream, Seen, answer, echo_value

NUMBER = "+14255550100"
OTHER = "+14255550101"
MAX_DEQUEUE_COUNT = 5
RESULTS = "optout-results"

Reply = Callable[[Seen], bytes]


def recipients(seen: Seen) -> list[str]:
    return [r["to"] for r in seen.json()["recipients"]]


def error_body(status: int, body: bytes | dict, *headers: str) -> Reply:
    return lambda seen: answer(status, body, *headers)


NESTED = b"[" * 100_000 + b"]" * 100_000
NESTED_ERROR = b'{"error":' * 50_000 + b"1" + b"}" * 50_000

#: (name, reply, the problem's status and code): answers the whole call must not survive.
WHOLE_CALL_FAILURES: list[tuple[str, Reply, int, str]] = [
    ("retry-after 1e400 on 503", error_body(503, {"error": {"code": "x", "message": "y"}}, "Retry-After: 1e400"),
     503, "AcsUnavailable"),
    ("retry-after 1e400 on 429", error_body(429, {}, "Retry-After: 1e400"), 503, "AcsThrottled"),
    ("retry-after negative", error_body(503, {}, "Retry-After: -30"), 503, "AcsUnavailable"),
    ("retry-after nan", error_body(503, {}, "Retry-After: nan"), 503, "AcsUnavailable"),
    ("retry-after huge", error_body(429, {}, "Retry-After: 86400000"), 503, "AcsThrottled"),
    ("retry-after bad date", error_body(503, {}, "Retry-After: Mon, 99 Foo 2026 99:99:99 GMT"), 503, "AcsUnavailable"),
    ("retry-after-ms inf", error_body(503, {}, "retry-after-ms: inf", "x-ms-retry-after-ms: -inf"), 503,
     "AcsUnavailable"),
    ("nested 400 body", error_body(400, NESTED), 502, "AcsRejectedRequest"),
    ("nested error object", error_body(400, NESTED_ERROR), 502, "AcsRejectedRequest"),
    ("nested 503 body", error_body(503, NESTED), 503, "AcsUnavailable"),
    ("huge 400 body", error_body(400, b'{"error":{"message":"' + b"a" * 3_000_000 + b'"}}'), 502,
     "AcsRejectedRequest"),
    ("bogus charset", error_body(400, b"\xff\xfe{}", "Content-Type: text/plain; charset=no-such-codec"), 502,
     "AcsRejectedRequest"),
    ("crlf in 400 message", error_body(400, {"error": {"code": "Bad\r\nFORGED", "message": "x\nFORGED record\r"}}),
     502, "AcsRejectedRequest"),
    ("crlf in 401 message", error_body(401, {"error": {"code": "Denied", "message": "no\r\nFORGED record"}}),
     502, "AcsAuthenticationFailed"),
    ("errors of a validation answer", error_body(400, {"title": "t\nFORGED", "errors": {"From\n": [NESTED.decode()[:5000]]}}),
     502, "AcsRejectedRequest"),
]

#: (name, reply, what each asked number's result must be) for 200 answers.
PER_NUMBER: list[tuple[str, Reply, dict[str, str]]] = [
    ("value is a string", lambda seen: answer(200, {"value": "nope"}), {NUMBER: "failed", OTHER: "failed"}),
    ("value of wrong types", lambda seen: answer(200, {"value": [1, "x", None, [], {"to": 5}]}),
     {NUMBER: "failed", OTHER: "failed"}),
    ("body is a list", lambda seen: answer(200, [{"to": NUMBER}]), {NUMBER: "failed", OTHER: "failed"}),
    ("body is not JSON", lambda seen: answer(200, b"<html>\r\nhello"), {NUMBER: "failed", OTHER: "failed"}),
    ("body nested", lambda seen: answer(200, NESTED), {NUMBER: "failed", OTHER: "failed"}),
    ("body huge", lambda seen: answer(200, {"value": [{"to": NUMBER, "httpStatusCode": 200, "isOptedOut": False,
                                                        "pad": "p" * 2_000_000}]}),
     {NUMBER: "failed", OTHER: "failed"}),
    ("a recipient missing", lambda seen: answer(200, {"value": [
        item for item in echo_value(seen, isOptedOut=False)["value"] if item["to"] == NUMBER]}),
     {NUMBER: "succeeded", OTHER: "failed"}),
    ("extra recipients", lambda seen: answer(200, {"value": echo_value(seen, isOptedOut=True)["value"] + [
        {"to": "+14255550199", "httpStatusCode": 200, "isOptedOut": True}, {"to": NUMBER, "httpStatusCode": 400}]}),
     {NUMBER: "succeeded", OTHER: "succeeded"}),
    ("status codes of wrong types", lambda seen: answer(200, {"value": [
        {"to": NUMBER, "httpStatusCode": "200", "isOptedOut": False},
        {"to": OTHER, "httpStatusCode": True, "isOptedOut": False}]}), {NUMBER: "failed", OTHER: "failed"}),
    ("status codes out of range", lambda seen: answer(200, {"value": [
        {"to": NUMBER, "httpStatusCode": 99999, "isOptedOut": False},
        {"to": OTHER, "httpStatusCode": -1}]}), {NUMBER: "failed", OTHER: "failed"}),
    ("isOptedOut of a wrong type", lambda seen: answer(200, echo_value(seen, isOptedOut="yes")),
     {NUMBER: "failed", OTHER: "failed"}),
    ("messages with line breaks and wrong types", lambda seen: answer(200, {"value": [
        {"to": NUMBER, "httpStatusCode": 400, "errorMessage": "bad\r\nFORGED record " + "z" * 5000},
        {"to": OTHER, "httpStatusCode": 500, "errorMessage": {"nested": ["x"]}}]}),
     {NUMBER: "invalid", OTHER: "failed"}),
]


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    running = ScriptedUpstream(lambda seen: (answer(500, {}), False))
    yield running
    running.close()


@pytest.fixture
def gateway(upstream: ScriptedUpstream, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedUpstream]:
    monkeypatch.setenv("ACS_CONNECTION_STRING", upstream.connection_string())
    monkeypatch.setenv("OPTOUT_DEFAULT_SENDER", SENDER)
    monkeypatch.setenv("OPTOUT_TIME_BUDGET_SECONDS", "5")
    monkeypatch.setenv("OPTOUT_AUDIT_WRITES", "false")
    runtime.reset()
    yield upstream
    runtime.reset()


def script(upstream: ScriptedUpstream, reply: Reply) -> None:
    upstream.script = lambda seen: (reply(seen), False)


def call(name: str, body: object) -> func.HttpResponse:
    function = indexed_functions(function_app.app)[name]
    request = func.HttpRequest(method="POST", url="http://127.0.0.1:7071/api/optouts/x",
                               headers={"content-type": "application/json"}, params={}, route_params={},
                               body=json.dumps(body).encode())
    return function.get_user_function()(request)  # type: ignore[attr-defined,no-any-return]


def assert_one_line_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The gateway's own records are one line each; in no record (azure-core's request logs
    are multi-line by design, with upstream header values redacted) does upstream text start a line."""
    for record in caplog.records:
        text = record.getMessage()
        assert not re.search(r"[\r\n\u2028\u2029\x85]\s*FORGED", text), text[:300]
        if record.name.startswith("optouts"):
            assert "\n" not in text and "\r" not in text, text[:300]


@pytest.mark.parametrize(("name", "reply", "status", "code"), WHOLE_CALL_FAILURES, ids=[c[0] for c in WHOLE_CALL_FAILURES])
def test_a_hostile_whole_call_answer_is_a_bounded_problem(
    gateway: ScriptedUpstream, caplog: pytest.LogCaptureFixture, name: str, reply: Reply, status: int, code: str
) -> None:
    script(gateway, reply)
    caplog.set_level(logging.DEBUG)
    response = call("CheckOptOuts", {"phoneNumbers": [NUMBER, OTHER]})
    assert response.status_code == status, response.get_body()[:300]
    assert response.mimetype == "application/problem+json"
    problem = json.loads(response.get_body())
    assert problem["code"] == code and problem["status"] == status
    if status == 503:
        assert 1 <= int(response.headers["Retry-After"]) <= MAX_RETRY_AFTER_SECONDS
    assert 1 <= len(gateway.requests) <= 5  # retried within bounds, never slept on forever
    assert_one_line_logs(caplog)


@pytest.mark.parametrize(("name", "reply", "expected"), PER_NUMBER, ids=[c[0] for c in PER_NUMBER])
def test_a_malformed_answer_gives_every_number_a_definite_result(
    gateway: ScriptedUpstream, caplog: pytest.LogCaptureFixture, name: str, reply: Reply, expected: dict[str, str]
) -> None:
    script(gateway, reply)
    caplog.set_level(logging.DEBUG)
    response = call("CheckOptOuts", {"phoneNumbers": [NUMBER, OTHER]})
    assert response.status_code == 200, response.get_body()[:300]
    results = json.loads(response.get_body())["results"]
    assert {r["phoneNumber"]: r["status"] for r in results} == expected
    for result in results:
        if result["status"] == "succeeded":
            assert isinstance(result["optedOut"], bool)
        else:
            message = result["error"]["message"]
            assert len(message) <= 400 and "\n" not in message and "\r" not in message
    assert_one_line_logs(caplog)


# -- the same answers under a queued request ---------------------------------------------------


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture
def queue_gateway(gateway: ScriptedUpstream, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> ScriptedUpstream:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxDequeueCount", str(MAX_DEQUEUE_COUNT))
    monkeypatch.setenv("OPTOUT_QUEUE_TIME_BUDGET_SECONDS", "5")
    runtime.reset()
    return gateway


def results_queue(azurite: Azurite) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.connection_string, RESULTS)
    try:
        client.create_queue()
    except Exception:
        pass
    return client


def process_last_delivery(correlation_id: str) -> None:
    """The queue function on the message's last delivery, as the host would call it."""
    body = json.dumps({"action": "check", "phoneNumbers": [NUMBER, OTHER], "correlationId": correlation_id})
    message = func_queue.QueueMessage(id=f"m-{correlation_id}", body=body.encode(), dequeue_count=MAX_DEQUEUE_COUNT)
    function = indexed_functions(function_app.app)["ProcessOptOutRequest"]
    try:
        function.get_user_function()(message)  # type: ignore[attr-defined]
    except Redelivery:
        pass  # on its last delivery the host moves it to the poison queue; its result is already published


QUEUE_CASES = [c for c in WHOLE_CALL_FAILURES if c[0] in {"retry-after 1e400 on 503", "nested 400 body",
                                                           "crlf in 400 message", "huge 400 body"}]
QUEUE_PER_NUMBER = [c for c in PER_NUMBER if c[0] in {"value is a string", "body nested", "extra recipients"}]


@pytest.mark.parametrize(("name", "reply"), [(c[0], c[1]) for c in QUEUE_CASES + QUEUE_PER_NUMBER],
                         ids=[c[0] for c in QUEUE_CASES + QUEUE_PER_NUMBER])
def test_a_queued_request_gets_its_result_whatever_acs_answers(
    queue_gateway: ScriptedUpstream, azurite: Azurite, caplog: pytest.LogCaptureFixture, name: str, reply: Reply
) -> None:
    script(queue_gateway, reply)
    caplog.set_level(logging.DEBUG)
    results = results_queue(azurite)
    correlation_id = name.replace(" ", "-")
    process_last_delivery(correlation_id)
    published = [json.loads(m.content) for m in results.receive_messages(messages_per_page=32, max_messages=32)]
    mine = [r for r in published if r.get("correlationId") == correlation_id]
    assert len(mine) == 1, published
    assert mine[0]["status"] in {"completed", "failed"}
    if name == "extra recipients":
        assert mine[0]["status"] == "completed"
    assert_one_line_logs(caplog)
