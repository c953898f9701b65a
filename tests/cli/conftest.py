"""Fixtures of the CLI's tests: a gateway on the local host (Azurite, the ACS emulator), and the
CLI run in-process (typer's CliRunner) or as the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devtools.acs_emulator import AcsEmulator
from devtools.azurite import Azurite
from devtools.localhost import LocalHost
from optouts_cli.app import app

from ..conftest import OTHER_SENDER, SENDER
from ..hardening.gateway import KEY, running_gateway

#: The console script `make` installs into the virtual environment (requirements-dev.txt: -e ./cli).
CONSOLE_SCRIPT = Path(sys.executable).parent / "optouts"
#: Every subprocess run is bounded.
RUN_TIMEOUT_SECONDS = 120
MAX_NUMBERS = 50


@pytest.fixture(scope="package")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture(scope="package")
def gateway(azurite: Azurite) -> Iterator[LocalHost]:
    with AcsEmulator(owned_senders={SENDER, OTHER_SENDER}) as acs, running_gateway(
            acs.connection_string, azurite.connection_string, OPTOUT_MAX_NUMBERS=str(MAX_NUMBERS),
            OPTOUT_TIME_BUDGET_SECONDS="20",
            # Jobs' work items picked up quickly (the host.json way), so a job ends within seconds.
            AzureFunctionsJobHost__extensions__queues__visibilityTimeout="00:00:01",
            AzureFunctionsJobHost__extensions__queues__maxPollingInterval="00:00:00.200") as host:
        yield host


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str


def invoke(args: list[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None) -> Ran:
    """The CLI in this process, with standard output and standard error apart."""
    result = CliRunner().invoke(app, args, env=dict(env or {}), input=stdin, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def connection(host: LocalHost) -> dict[str, str]:
    return {"OPTOUTS_URL": host.base_url, "OPTOUTS_KEY": KEY}


def run_script(args: list[str], *, env: Mapping[str, str], cwd: Path | None = None) -> Ran:
    """The installed console script in a child process, as an operator or a script runs it."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("OPTOUTS_")}
    environment.update(env)
    completed = subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, env=environment,
                               cwd=cwd, timeout=RUN_TIMEOUT_SECONDS, check=False)
    return Ran(completed.returncode, completed.stdout, completed.stderr)
