"""The official JS SDK (@azure/communication-sms, pinned in package.json) against the emulator:
a real SDK's HMAC signatures are accepted and its parser reads every answer. The SDK refuses
plain http, so the emulator serves TLS with a throwaway certificate Node is told to trust."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.acs_emulator import AcsEmulator

from .conftest import SENDER

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "js" / "optouts_sdk.mjs"
NUMBER, OTHER, INVALID = "+14255550100", "+14255550101", "+123"


@pytest.fixture
def tls_emulator() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER}, tls=True) as running:
        yield running


def run_sdk(emulator: AcsEmulator, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is required (make test installs the npm tools)"
    assert (ROOT / "node_modules" / "@azure" / "communication-sms").is_dir(), "run `make node_modules/.ready`"
    assert emulator.certificate is not None
    plan = {"connectionString": emulator.connection_string, "steps": steps}
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": emulator.certificate.ca_bundle}
    done = subprocess.run([node, str(SCRIPT)], input=json.dumps(plan), capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120, check=True)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_add_check_and_remove_through_the_official_sdk(tls_emulator: AcsEmulator) -> None:
    outputs = run_sdk(tls_emulator, [
        {"call": "add", "from": SENDER, "to": [NUMBER, INVALID]},
        {"call": "check", "from": SENDER, "to": [NUMBER, OTHER, INVALID]},
        {"call": "remove", "from": SENDER, "to": [NUMBER, INVALID]},
        {"call": "check", "from": SENDER, "to": [NUMBER]},
    ])
    assert [o.get("error") for o in outputs] == [None] * 4
    add, check, remove, check_again = (o["results"] for o in outputs)
    invalid = {"to": INVALID, "httpStatusCode": 400, "errorMessage": "Invalid recipient phone number format"}
    assert add == [{"to": NUMBER, "httpStatusCode": 200, "errorMessage": ""}, invalid]
    assert check == [
        {"to": NUMBER, "isOptedOut": True, "httpStatusCode": 200, "errorMessage": ""},
        {"to": OTHER, "isOptedOut": False, "httpStatusCode": 200, "errorMessage": ""},
        {**invalid, "isOptedOut": False},
    ]
    assert remove == [{"to": NUMBER, "httpStatusCode": 200, "errorMessage": ""}, invalid]
    assert check_again == [{"to": NUMBER, "isOptedOut": False, "httpStatusCode": 200, "errorMessage": ""}]
    assert tls_emulator.opted_out(SENDER) == set()
    assert tls_emulator.stats["by_status"] == {200: 4}  # every signature accepted


def test_the_sdk_reads_the_emulators_errors(tls_emulator: AcsEmulator) -> None:
    outputs = run_sdk(tls_emulator, [
        {"call": "check", "from": "not-a-sender", "to": [NUMBER]},
        {"call": "check", "from": "+18005559999", "to": [NUMBER]},
        {"call": "add", "from": SENDER, "to": [NUMBER] * 101},
    ])
    bad_sender, not_owned, too_many = (o["error"] for o in outputs)
    assert bad_sender["name"] == "RestError" and bad_sender["statusCode"] == 400
    assert "Invalid From phone number format" in bad_sender["message"]
    assert (not_owned["statusCode"], not_owned["code"]) == (401, "Denied")
    assert too_many["statusCode"] == 400 and "maximum length of '100'" in too_many["message"]
    assert tls_emulator.opted_out(SENDER) == set()
