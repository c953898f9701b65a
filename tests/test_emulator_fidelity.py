"""The emulator answers as ACS does where the REST spec, its examples and the official SDKs'
recorded answers show it (docs/emulator.md cites each): every opt-out api-version, the
sender's format, the service's messages, chunked answers with the service's headers, JSON
for a malformed request line, and the 401 shape."""

from __future__ import annotations

import json
import re
import socket
import uuid

import pytest

from devtools.acs_emulator import SUPPORTED_API_VERSIONS, AcsEmulator

from .conftest import SENDER
from .test_acs_emulator import acs, post, recipients  # noqa: F401 - the shared fixture

NUMBER = "+14255550100"
SPEC_VERSIONS = {"2024-12-10-preview", "2025-05-29-preview", "2025-08-01-preview", "2025-09-17", "2026-01-23"}


def test_every_opt_out_api_version_of_the_spec_is_accepted(acs: AcsEmulator) -> None:
    assert set(SUPPORTED_API_VERSIONS) == SPEC_VERSIONS
    for version in sorted(SPEC_VERSIONS):
        status, _, body = post(acs, "add", recipients(NUMBER), api_version=version)
        assert (status, body) == (200, {"value": [{"to": NUMBER, "httpStatusCode": 200}]}), version


def test_api_version_errors_use_the_service_messages(acs: AcsEmulator) -> None:
    assert post(acs, "check", recipients(NUMBER), api_version=None)[::2] == (400, {"error": {
        "code": "ApiVersionUnspecified", "message": "An API version is required, but was not specified.",
        "innerError": None}})
    status, _, body = post(acs, "check", recipients(NUMBER), api_version="2021-03-07")
    assert status == 400 and body["error"]["code"] == "UnsupportedApiVersion"
    assert "'2021-03-07'" in body["error"]["message"] and body["error"]["innerError"] is None


@pytest.mark.parametrize("sender", ["not-a-sender", "+0123", "18005550100", "+1800555010012345", "TOOLONGSENDER1", ""])
def test_a_malformed_sender_is_a_validation_error_on_from(acs: AcsEmulator, sender: str) -> None:
    status, headers, body = post(acs, "add", recipients(NUMBER, sender=sender))
    assert status == 400
    assert body["title"] == "One or more validation errors occurred." and body["status"] == 400
    expected = "The From field is required." if not sender else "Invalid From phone number format"
    assert body["errors"] == {"From": [expected]}
    assert acs.opted_out(sender) == set()


@pytest.mark.parametrize("sender", ["+18005550100", "262966", "CONTOSO", "Contoso 1"])
def test_well_formed_senders_pass_format_validation(sender: str) -> None:
    with AcsEmulator(owned_senders=None) as running:
        status, _, body = post(running, "add", recipients(NUMBER, sender=sender))
    assert status == 200 and body["value"][0]["httpStatusCode"] == 200


def test_recipient_count_errors_use_the_service_messages(acs: AcsEmulator) -> None:
    status, _, body = post(acs, "add", {"from": SENDER, "recipients": []})
    assert status == 400 and body["errors"] == {
        "Recipients": ["The field Recipients must be a string or array type with a minimum length of '1'."]}
    status, _, body = post(acs, "add", recipients(*[NUMBER] * 101))
    assert status == 400 and body["errors"] == {
        "Recipients": ["The field Recipients must be a string or array type with a maximum length of '100'."]}


def test_answers_are_chunked_and_carry_the_service_headers(acs: AcsEmulator) -> None:
    request_id = str(uuid.uuid4())
    status, headers, body = post(acs, "check", recipients(NUMBER), extra_headers={"x-ms-client-request-id": request_id})
    assert status == 200 and body["value"][0]["isOptedOut"] is False
    assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert re.fullmatch(r"[A-Za-z0-9+/]{22}\.0", headers["MS-CV"])
    assert headers["Request-Context"] == "appId="
    assert re.fullmatch(r"\d+ms", headers["X-Processing-Time"])
    assert headers["x-ms-client-request-id"] == request_id
    assert set(headers["api-supported-versions"].split(", ")) == SPEC_VERSIONS
    assert "Date" in headers and "X-Azure-Ref" in headers


def test_a_client_request_id_that_is_not_a_token_is_not_echoed(acs: AcsEmulator) -> None:
    _, headers, _ = post(acs, "check", recipients(NUMBER), extra_headers={"x-ms-client-request-id": "a b;c"})
    assert "x-ms-client-request-id" not in headers


@pytest.mark.parametrize("line", [b"GARBAGE\r\n\r\n", b"POST /sms/optouts:add HTTP/9.9\r\n\r\n",
                                  b"POST /x HTTP/1.1 extra\r\n\r\n"])
def test_a_malformed_request_line_is_answered_with_json(acs: AcsEmulator, line: bytes) -> None:
    with socket.create_connection(("127.0.0.1", acs.port), timeout=10) as sock:
        sock.sendall(line)
        received = b""
        while b"\r\n0\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0]
    assert re.fullmatch(rb"HTTP/1\.1 (400|505) .*", status_line), status_line
    assert b"application/json" in head and b"chunked" in head.lower()
    size, _, chunk = rest.partition(b"\r\n")
    body = json.loads(chunk[: int(size, 16)])
    assert body["error"]["code"] == "BadRequest" and body["error"]["message"]


def test_a_bad_signature_gets_the_401_shape(acs: AcsEmulator) -> None:
    status, headers, body = post(acs, "add", recipients(NUMBER), tamper_body=json.dumps(recipients("+14255550199")).encode())
    assert status == 401
    assert set(body) == {"error"} and body["error"]["code"] == "Denied" and isinstance(body["error"]["message"], str)
    assert headers["Transfer-Encoding"] == "chunked"
