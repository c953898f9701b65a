"""Shared fixtures: a real ACS emulator on 127.0.0.1 and clients pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import settings

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.mutation import SHARED_AZURITE
from optouts.providers.acs import OptOutsClient

# `make mutation` runs the property tests once per mutant: fewer examples, the same each time.
settings.register_profile("mutation", max_examples=10, derandomize=True, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE"):  # otherwise whatever profile is active stays (schemathesis sets its own)
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

SENDER = "+18005550100"
OTHER_SENDER = "+18005550111"


@pytest.fixture
def emulator() -> Iterator[AcsEmulator]:
    with AcsEmulator(owned_senders={SENDER, OTHER_SENDER}) as running:
        yield running


@contextmanager
def azurite_for_module() -> Iterator[Any]:
    """An Azurite for one test module: its own, or, under `make mutation`, the one shared by every
    mutant's run (starting Azurite costs seconds; the tests use queues, containers and tables of
    their own, so none sees another's data)."""
    shared = os.environ.get(SHARED_AZURITE)
    if shared:
        yield SimpleNamespace(connection_string=shared)
        return
    with Azurite() as running:
        yield running


def fast_client(connection_string: str, **options: object) -> OptOutsClient:
    """A client with retry pauses shrunk so fault tests stay quick."""
    settings: dict[str, object] = {
        "retry_backoff_factor": 0.01,
        "retry_backoff_max": 0.05,
        "recipient_retry_backoff": 0.01,
        "time_budget": 30.0,
    }
    settings.update(options)
    return OptOutsClient.from_connection_string(connection_string, **settings)  # type: ignore[arg-type]


@pytest.fixture
def client(emulator: AcsEmulator) -> Iterator[OptOutsClient]:
    with fast_client(emulator.connection_string) as opened:
        yield opened


# -- suite-wide log scan ------------------------------------------------------------
# Every log record emitted anywhere in the suite is kept and, when the session ends,
# scanned for secrets and unmasked phone numbers: any hit fails the run.

import logging  # noqa: E402
import re  # noqa: E402

_SENDERS = {SENDER, OTHER_SENDER, "+18005559999", "+18005550199"}
_LEAK_PATTERNS = {
    # Tokens are long; a WWW-Authenticate challenge ("Bearer authorization=...") is not one.
    "access key or token": re.compile(
        r"accesskey=[A-Za-z0-9+/=]{8,}|Bearer\s+[A-Za-z0-9._~+/-]{20,}|Signature=[A-Za-z0-9+/=]{20,}", re.I
    ),
    "base64 key material": re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{42,}={0,2}(?![A-Za-z0-9+/])"),
    # Bounded so that request ids, versions and addresses do not look like numbers.
    "phone number": re.compile(r"(?<![\w\-.:/])\+?\d{10,15}(?![\w\-.:])"),
}


class _KeepAll(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        #: Records whose message could not be formatted: a bug in the log call, and text the
        #: scan would otherwise never see. Their raw parts are scanned, and each fails the run.
        self.unformattable: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception as error:
            where = f"{record.pathname}:{record.lineno}"
            self.unformattable.append(f"{record.name} at {where}: {type(error).__name__}")
            text = f"{record.msg!r} % {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]}"
        self.lines.append(f"{record.name}: {text}")


_all_logs = _KeepAll()


def _looks_random(text: str) -> bool:
    """Key material mixes cases and digits; URL paths and identifiers do not."""
    has_mix = any(c.isdigit() for c in text) and any(c.isupper() for c in text) and any(c.islower() for c in text)
    return has_mix and text.count("/") < len(text) / 10


#: urllib3's DEBUG lines for requests the tests themselves send to the gateway under test
#: (fuzzers put arbitrary digits in those URLs); the gateway's own outgoing calls carry none.
_TEST_CLIENT_REQUEST = re.compile(r'^urllib3\.connectionpool: http://127\.0\.0\.1:\d+ "[A-Z]+ /api/')


def find_leaks(lines: list[str]) -> list[str]:
    leaks = []
    for line in lines:
        if _TEST_CLIENT_REQUEST.match(line):
            continue
        for what, pattern in _LEAK_PATTERNS.items():
            for match in pattern.finditer(line):
                found = match.group(0)
                if what == "phone number" and ("+" + found.lstrip("+") in _SENDERS or found in _SENDERS):
                    continue
                if what == "base64 key material" and not _looks_random(found):
                    continue
                leaks.append(f"{what}: {line[:300]}")
    return leaks


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_all_logs)
    root.setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = find_leaks(_all_logs.lines)
    broken = _all_logs.unformattable
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"log scan: {len(_all_logs.lines)} log records scanned, {len(leaks)} leaks, "
                            f"{len(broken)} that could not be formatted")
    if leaks or broken:
        if reporter is not None:
            for leak in leaks[:20]:
                reporter.write_line(f"LEAK {leak}")
            for record in broken[:20]:
                reporter.write_line(f"UNFORMATTABLE LOG RECORD {record}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
