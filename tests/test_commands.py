import json

import pytest

from optouts.config import Settings
from optouts.domain.commands import decode_json, parse_command
from optouts.domain.operations import Operation
from optouts.domain.problems import Problem

SETTINGS = Settings.from_environ({
    "ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:1/;accesskey=cHc=",
    "OPTOUT_DEFAULT_SENDER": "+18005550100",
    "OPTOUT_ALLOWED_SENDERS": "+18005550100,+18005550111",
    "OPTOUT_MAX_NUMBERS": "5",
})


def problem_of(payload: object, **kwargs: object) -> Problem:
    with pytest.raises(Problem) as raised:
        parse_command(payload, SETTINGS, **kwargs)  # type: ignore[arg-type]
    return raised.value


def test_valid_body_uses_defaults() -> None:
    command = parse_command({"phoneNumbers": ["+14255550100"]}, SETTINGS, action=Operation.REMOVE)
    assert command.sender == "+18005550100"
    assert command.region == "US"
    assert command.phone_numbers == ("+14255550100",)


def test_sender_is_normalized_before_the_allow_list() -> None:
    command = parse_command(
        {"phoneNumbers": ["1"], "sender": "+1 (800) 555-0111", "region": "gb"}, SETTINGS, action=Operation.ADD
    )
    assert (command.sender, command.region) == ("+18005550111", "GB")


def test_sender_outside_allow_list_is_403() -> None:
    problem = problem_of({"phoneNumbers": ["1"], "sender": "+18005550199"}, action=Operation.ADD)
    assert (problem.status, problem.code) == (403, "SenderNotAllowed")


def test_non_string_numbers_are_listed_by_index() -> None:
    problem = problem_of({"phoneNumbers": ["+14255550100", 42, None]}, action=Operation.ADD)
    assert problem.status == 400
    assert set(problem.errors) == {"phoneNumbers[1]", "phoneNumbers[2]"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "phoneNumbers"),
        ({"phoneNumbers": []}, "phoneNumbers"),
        ({"phoneNumbers": "+14255550100"}, "phoneNumbers"),
        ({"phoneNumbers": ["1"], "region": "USA"}, "region"),
        ({"phoneNumbers": ["1"], "region": "ZZ"}, "region"),
        ({"phoneNumbers": ["1"], "reason": 5}, "reason"),
        ({"phoneNumbers": ["1"], "reason": "x" * 501}, "reason"),
        ({"phoneNumbers": ["1"], "senderr": "+18005550111"}, "senderr"),
    ],
)
def test_field_errors_are_400_with_the_field_named(payload: dict, field: str) -> None:
    problem = problem_of(payload, action=Operation.ADD)
    assert problem.status == 400
    assert field in problem.errors


def test_not_an_object_is_400() -> None:
    assert problem_of([1, 2], action=Operation.ADD).status == 400


def test_too_many_numbers_is_413() -> None:
    problem = problem_of({"phoneNumbers": ["1"] * 6}, action=Operation.ADD)
    assert (problem.status, problem.code) == (413, "TooManyPhoneNumbers")


def test_queue_messages_carry_action_and_correlation_id() -> None:
    command = parse_command({"action": "Remove", "phoneNumbers": ["1"], "correlationId": "abc"}, SETTINGS)
    assert (command.action, command.correlation_id) == (Operation.REMOVE, "abc")
    assert "action" in problem_of({"phoneNumbers": ["1"]}).errors
    assert "action" in problem_of({"action": "delete", "phoneNumbers": ["1"]}).errors


def test_action_field_is_unknown_in_http_bodies() -> None:
    assert "action" in problem_of({"action": "add", "phoneNumbers": ["1"]}, action=Operation.REMOVE).errors


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "EmptyBody"),
        (b"{", 400, "InvalidJson"),
        (b"\xff\xfe{}", 400, "InvalidEncoding"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "BodyTooLarge"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "InvalidJson"),
    ],
)
def test_decode_json_failures(body: bytes, status: int, code: str) -> None:
    with pytest.raises(Problem) as raised:
        decode_json(body, max_bytes=150_000)
    assert (raised.value.status, raised.value.code) == (status, code)


def test_decode_json_accepts_bom() -> None:
    assert decode_json("\ufeff{}".encode("utf-8"), max_bytes=100) == {}


def test_problem_body_shape() -> None:
    body = problem_of({}, action=Operation.ADD).to_dict("00-abc-def-00")
    assert set(body) >= {"type", "title", "status", "detail", "errors", "traceId", "code"}
    json.dumps(body)
