import json

import pytest

from optouts.config import Settings
from optouts.domain.commands import decode_json, is_valid_identifier, parse_command
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


# -- exact answers: the wording is part of the API, so it is pinned here -------------------------

VALIDATION_TITLE = "One or more validation errors occurred."


@pytest.mark.parametrize(
    ("payload", "action", "errors"),
    [
        ([1], Operation.ADD, {"$": ["the body must be a JSON object"]}),
        ({"phoneNumbers": ["1"], "x": 1}, Operation.ADD,
         {"x": ["unknown field; expected one of phoneNumbers, reason, region, sender"]}),
        ({"phoneNumbers": ["1"], "x": 1}, None,
         {"x": ["unknown field; expected one of action, correlationId, phoneNumbers, reason, region, sender, "
                "traceparent"],
          "action": ["is required: one of add, remove, check"]}),
        ({"phoneNumbers": ["1"], "y" * 100: 1}, Operation.ADD,
         {"y" * 64: ["unknown field; expected one of phoneNumbers, reason, region, sender"]}),
        ({"phoneNumbers": None}, Operation.ADD, {"phoneNumbers": ["is required: a list of phone numbers"]}),
        ({}, None, {"action": ["is required: one of add, remove, check"],
                    "phoneNumbers": ["is required: a list of phone numbers"]}),
        ({"action": 5, "phoneNumbers": ["1"]}, None, {"action": ["must be one of add, remove, check"]}),
        ({"action": "delete", "phoneNumbers": ["1"]}, None, {"action": ["must be one of add, remove, check"]}),
        ({"phoneNumbers": ["1"], "region": "zz"}, Operation.ADD,
         {"region": ["must be a two-letter ISO 3166 region code such as US or GB"]}),
        ({"phoneNumbers": ["1"], "region": "USA"}, Operation.ADD, {"region": ["must be at most 2 characters"]}),
        ({"phoneNumbers": ["1"], "reason": "x" * 501}, Operation.ADD, {"reason": ["must be at most 500 characters"]}),
        ({"phoneNumbers": ["1"], "sender": "+" + "1" * 32}, Operation.ADD,
         {"sender": ["must be at most 32 characters"]}),
        ({"phoneNumbers": ["1"], "correlationId": "c" * 129, "action": "add"}, None,
         {"correlationId": ["must be 1 to 128 characters: letters, digits, '.', '_', ':' or '-'"]}),
        ({"phoneNumbers": [1, "2", None]}, Operation.ADD,
         {"phoneNumbers[0]": ["must be a string"], "phoneNumbers[2]": ["must be a string"]}),
        ({"phoneNumbers": []}, Operation.ADD, {"phoneNumbers": ["must contain at least one phone number"]}),
        ({"phoneNumbers": "1"}, Operation.ADD, {"phoneNumbers": ["must be a list of strings"]}),
        ({"phoneNumbers": ["1"], "reason": 5}, Operation.ADD, {"reason": ["must be a string"]}),
        ({"phoneNumbers": ["1"], "reason": "ticket 7\r\nforged: entry"}, Operation.ADD,
         {"reason": ["must be at most 500 printable characters, no line breaks or control characters"]}),
        ({"phoneNumbers": ["1"], "correlationId": 42, "action": "add"}, None, {"correlationId": ["must be a string"]}),
    ],
)
def test_validation_problems_say_exactly_what_is_wrong(payload: object, action: Operation | None, errors: dict) -> None:
    problem = problem_of(payload, action=action)
    assert (problem.status, problem.code, problem.title) == (400, "ValidationFailed", VALIDATION_TITLE)
    assert problem.errors == errors


def test_too_many_numbers_says_the_limit() -> None:
    problem = problem_of({"phoneNumbers": ["1"] * 6}, action=Operation.ADD)
    assert (problem.status, problem.code) == (413, "TooManyPhoneNumbers")
    assert problem.errors == {"phoneNumbers": ["at most 5 phone numbers per request"]}
    assert parse_command({"phoneNumbers": ["1"] * 5}, SETTINGS, action=Operation.ADD).phone_numbers == ("1",) * 5


def test_a_sender_not_allowed_is_403_with_its_wording() -> None:
    problem = problem_of({"phoneNumbers": ["1"], "sender": "+18005550199"}, action=Operation.ADD)
    assert (problem.status, problem.code, problem.title, problem.detail) == (
        403, "SenderNotAllowed", "Sender not allowed", "this gateway may not manage the opt-out list of that sender")


def test_no_sender_and_no_default_is_a_validation_problem() -> None:
    settings = Settings.from_environ({"ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:1/;accesskey=cHc=",
                                      "OPTOUT_ALLOWED_SENDERS": "12345"})
    with pytest.raises(Problem) as raised:
        parse_command({"phoneNumbers": ["1"]}, settings, action=Operation.ADD)
    assert raised.value.errors == {"sender": ["is required: no OPTOUT_DEFAULT_SENDER is configured"]}
    # A short code is compared as written (trimmed), not as a phone number.
    command = parse_command({"phoneNumbers": ["1"], "sender": " 12345 "}, settings, action=Operation.ADD)
    assert command.sender == "12345"


def test_optional_text_is_trimmed_and_blank_is_absent() -> None:
    command = parse_command(
        {"action": " ADD ", "phoneNumbers": ["1"], "reason": "  ticket 7  ", "correlationId": "   ",
         "region": " gb "}, SETTINGS)
    assert (command.action, command.reason, command.correlation_id, command.region) == (
        Operation.ADD, "ticket 7", None, "GB")
    exact = parse_command({"phoneNumbers": ["1"], "reason": "r" * 500, "sender": "+1 800 555 0100"},
                          SETTINGS, action=Operation.CHECK)
    assert (exact.reason, exact.sender, exact.action) == ("r" * 500, "+18005550100", Operation.CHECK)


@pytest.mark.parametrize(
    ("body", "status", "code", "title", "detail"),
    [
        (b"", 400, "EmptyBody", "Invalid request body", "the request body is empty; send a JSON object"),
        (b" \n", 400, "EmptyBody", "Invalid request body", "the request body is empty; send a JSON object"),
        (b"\xff", 400, "InvalidEncoding", "Invalid request body", "the body is not valid UTF-8"),
        (b'"\\ud800"', 400, "InvalidEncoding", "Invalid request body",
         "the JSON escapes a lone UTF-16 surrogate, which is not a character"),
        (b'{"a": "\\uDC00"}', 400, "InvalidEncoding", "Invalid request body",
         "the JSON escapes a lone UTF-16 surrogate, which is not a character"),
        (b"x" * 101, 413, "BodyTooLarge", "Payload too large", "the body is larger than 100 bytes"),
        (b"{", 400, "InvalidJson", "Invalid request body",
         "the body is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ],
)
def test_decode_json_problems_are_exact(body: bytes, status: int, code: str, title: str, detail: str) -> None:
    with pytest.raises(Problem) as raised:
        decode_json(body, max_bytes=100)
    assert (raised.value.status, raised.value.code, raised.value.title, raised.value.detail) == (
        status, code, title, detail)


def test_decode_json_limits_are_inclusive_and_pairs_are_text() -> None:
    assert decode_json(b"[" + b"1," * 48 + b"1]", max_bytes=100) == [1] * 49  # exactly 99 bytes
    assert decode_json(b'"' + b"a" * 98 + b'"', max_bytes=100) == "a" * 98  # exactly 100 bytes
    assert decode_json(b'"\\ud83d\\ude00"', max_bytes=100) == "\U0001F600"  # a surrogate pair is a character
    with pytest.raises(Problem) as raised:
        decode_json(b"[" * 3000 + b"]" * 3000, max_bytes=10_000)
    assert (raised.value.status, raised.value.code, raised.value.title, raised.value.detail) == (
        400, "InvalidJson", "Invalid request body", "the JSON is nested too deeply")


@pytest.mark.parametrize(
    ("allowed", "sent", "accepted"),
    [
        ("12345", "12-345", False),  # a short code compares as written, separators and all
        ("12345", " 12345 ", True),
        ("+18005550100", "+1X8005550100", False),  # a letter is not a separator
        ("+18005550100", "+1 (800) 555-0100", True),
    ],
)
def test_senders_compare_as_e164_only_when_they_are_numbers(allowed: str, sent: str, accepted: bool) -> None:
    settings = Settings.from_environ({"ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:1/;accesskey=cHc=",
                                      "OPTOUT_ALLOWED_SENDERS": allowed})
    if accepted:
        assert parse_command({"phoneNumbers": ["1"], "sender": sent}, settings, action=Operation.ADD).sender
    else:
        with pytest.raises(Problem) as raised:
            parse_command({"phoneNumbers": ["1"], "sender": sent}, settings, action=Operation.ADD)
        assert raised.value.code == "SenderNotAllowed"


@pytest.mark.parametrize(("value", "valid"), [
    ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", True), ("ticket:7_a.b", True), ("c" * 128, True),
    ("abc\n", False),  # `$` would match before a final line break
    ("c" * 129, False), ("", False), ("a b", False), (None, False), (7, False),
])
def test_identifiers_echoed_in_results_are_checked_exactly(value: object, valid: bool) -> None:
    assert is_valid_identifier(value) is valid
