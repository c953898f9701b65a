"""The ACS emulator over raw HTTP (`http.client`), independent of the project's client."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import sys
import threading
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devtools.acs_emulator import AcsEmulator, FaultConfig
from optouts.acs import signing

SENDER = "+18005550100"


def post(
    emulator: Any,  # an AcsEmulator, or anything with .port and .access_key
    operation: str,
    payload: Any,
    *,
    key: str | None = None,
    api_version: str | None = "2026-01-23",
    date: str | None = None,
    tamper_body: bytes | None = None,
    authorization: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    path = f"/sms/optouts:{operation}" + (f"?api-version={api_version}" if api_version else "")
    host = f"127.0.0.1:{emulator.port}"
    date = date or formatdate(usegmt=True)
    body_hash = signing.content_sha256(body)
    text = signing.string_to_sign("POST", path, date, host, body_hash)
    signature = signing.signature(base64.b64decode(key or emulator.access_key), text)
    headers = {
        "Content-Type": "application/json",
        "x-ms-date": date,
        "x-ms-content-sha256": body_hash,
        "Authorization": authorization or signing.authorization_header(signature),
    }
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=30)
    try:
        connection.request("POST", path, body=tamper_body if tamper_body is not None else body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def recipients(*numbers: str) -> dict[str, Any]:
    return {"from": SENDER, "recipients": [{"to": n} for n in numbers]}


@pytest.fixture
def acs() -> Any:
    with AcsEmulator(owned_senders={SENDER}) as emulator:
        yield emulator


def test_add_check_remove_change_state(acs: AcsEmulator) -> None:
    status, _, body = post(acs, "add", recipients("+14255550100", "+14255550101"))
    assert status == 200
    assert body == {"value": [{"to": "+14255550100", "httpStatusCode": 200}, {"to": "+14255550101", "httpStatusCode": 200}]}
    assert acs.opted_out(SENDER) == {"+14255550100", "+14255550101"}
    post(acs, "remove", recipients("+14255550100"))
    _, _, body = post(acs, "check", recipients("+14255550100", "+14255550101"))
    assert [item["isOptedOut"] for item in body["value"]] == [False, True]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"key": base64.b64encode(b"wrong" * 8).decode()}, "signature"),
        ({"date": "Wed, 13 Apr 2022 18:09:12 GMT"}, "time"),
        ({"tamper_body": json.dumps(recipients("+14255550199")).encode()}, "body"),
        ({"authorization": "HMAC-SHA256 SignedHeaders=host&Signature=abc"}, "SignedHeaders"),
        ({"authorization": "Basic abc"}, "Authorization"),
    ],
)
def test_authentication_failures_are_401_denied(acs: AcsEmulator, change: dict[str, Any], reason: str) -> None:
    status, _, body = post(acs, "add", recipients("+14255550100"), **change)
    assert status == 401
    assert body["error"]["code"] == "Denied"
    assert reason in body["error"]["message"]
    assert acs.opted_out(SENDER) == set()


def test_bearer_tokens(acs: AcsEmulator) -> None:
    acs.bearer_tokens.add("good-token")
    assert post(acs, "check", recipients("+14255550100"), authorization="Bearer good-token")[0] == 200
    assert post(acs, "check", recipients("+14255550100"), authorization="Bearer bad-token")[0] == 401


@pytest.mark.parametrize(("version", "code"), [(None, "ApiVersionUnspecified"), ("2020-01-01", "InvalidApiVersion")])
def test_api_version_errors(acs: AcsEmulator, version: str | None, code: str) -> None:
    status, _, body = post(acs, "add", recipients("+14255550100"), api_version=version)
    assert (status, body["error"]["code"]) == (400, code)


@pytest.mark.parametrize(
    "payload",
    [recipients(), recipients(*[f"+1425555{n:04d}" for n in range(101)]), b"{not json", {"recipients": [{"to": "+14255550100"}]}],
)
def test_body_validation_is_400_problem(acs: AcsEmulator, payload: Any) -> None:
    status, _, body = post(acs, "add", payload)
    assert status == 400
    assert {"type", "title", "status", "errors", "traceId"} <= set(body)


def test_non_e164_recipient_gets_per_recipient_400(acs: AcsEmulator) -> None:
    _, _, body = post(acs, "add", recipients("4255550100", "+14255550100"))
    assert body["value"][0] == {"to": "4255550100", "httpStatusCode": 400,
                                "errorMessage": "Invalid recipient phone number format"}
    assert body["value"][1]["httpStatusCode"] == 200


def test_unknown_sender_is_401(acs: AcsEmulator) -> None:
    payload = {"from": "+18005559999", "recipients": [{"to": "+14255550100"}]}
    status, _, body = post(acs, "add", payload)
    assert (status, body["error"]["code"]) == (401, "Denied")


def test_throttling_and_server_errors(acs: AcsEmulator) -> None:
    acs.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=2.5)
    status, headers, body = post(acs, "add", recipients("+14255550100"))
    assert (status, headers["Retry-After"], headers["retry-after-ms"]) == (429, "3", "2500")
    assert body["error"]["code"] == "TooManyRequests"
    acs.faults = FaultConfig(server_error_rate=1.0, server_error_status=502)
    assert post(acs, "add", recipients("+14255550100"))[0] == 502
    assert acs.opted_out(SENDER) == set()


def test_per_recipient_errors_do_not_change_state(acs: AcsEmulator) -> None:
    acs.faults = FaultConfig(recipient_error_rate=1.0)
    _, _, body = post(acs, "add", recipients("+14255550100", "+14255550101"))
    assert {item["httpStatusCode"] for item in body["value"]} == {500}
    assert acs.opted_out(SENDER) == set()


def test_faults_are_deterministic_for_a_seed() -> None:
    def outcomes() -> list[int]:
        with AcsEmulator(faults=FaultConfig(throttle_rate=0.5, seed=42)) as emulator:
            return [post(emulator, "check", recipients("+14255550100"))[0] for _ in range(20)]

    first = outcomes()
    assert first == outcomes()
    assert {200, 429} == set(first)


def test_rotated_key_replaces_the_old_one(acs: AcsEmulator) -> None:
    old = acs.access_key
    new = acs.rotate_access_key()
    assert new != old
    assert post(acs, "check", recipients("+14255550100"), key=old)[0] == 401
    assert post(acs, "check", recipients("+14255550100"), key=new)[0] == 200


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "optouts.json"
    with AcsEmulator(state_file=state) as emulator:
        post(emulator, "add", recipients("+14255550100"))
    with AcsEmulator(state_file=state) as emulator:
        assert emulator.opted_out(SENDER) == {"+14255550100"}


def test_stats_and_concurrency(acs: AcsEmulator) -> None:
    acs.faults = FaultConfig(latency_seconds=0.05)
    statuses: list[int] = []

    def caller() -> None:
        for _ in range(5):
            statuses.append(post(acs, "check", recipients("+14255550100", "+14255550101"))[0])

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stats = acs.stats
    assert statuses == [200] * 80
    assert stats["total_calls"] == 80 and stats["by_status"] == {200: 80}
    assert stats["recipients"]["check"] == 160
    assert stats["max_concurrent"] > 1


def test_cli_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.acs_emulator", "--port", "0", "--owned-sender", SENDER],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("ACS emulator listening on http://127.0.0.1:")
        connection_string = process.stdout.readline().strip().split("=", 1)[1]
        remote = SimpleNamespace(port=int(first.rsplit(":", 1)[1]),
                                 access_key=connection_string.split("accesskey=")[1])
        status, _, _ = post(remote, "add", recipients("+14255550100"))  # type: ignore[arg-type]
        assert status == 200
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_cli_refuses_remote_binding() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devtools.acs_emulator", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "loopback" in result.stderr
