"""The installed `optouts` console script, as an operator's shell or a script runs it, against
the gateway on the local host: exit codes, JSON, and the live progress bar a terminal shows."""

from __future__ import annotations

import json
from pathlib import Path

from devtools.localhost import LocalHost

from ..hardening.gateway import KEY
from .conftest import CONSOLE_SCRIPT, connection, run_script


def test_the_console_script_is_installed() -> None:
    assert CONSOLE_SCRIPT.is_file(), "run `make` set-up: requirements-dev.txt installs ./cli"
    ran = run_script(["--help"], env={})
    assert ran.exit_code == 0
    for command in ("check", "add", "remove", "history", "job"):
        assert command in ran.stdout


def test_scripts_get_json_and_exit_codes(gateway: LocalHost, tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+14255550300\n+14255550301\nnonsense\n", encoding="utf-8")
    ran = run_script(["add", "--file", str(numbers), "--json", "--reason", "script"], env=connection(gateway))
    assert ran.exit_code == 1, ran.stderr  # one invalid number
    report = json.loads(ran.stdout)
    assert report["summary"] == {"total": 3, "succeeded": 2, "invalid": 1, "failed": 0, "notSent": 0}
    assert [r["status"] for r in report["results"]] == ["succeeded", "succeeded", "invalid"]

    checked = run_script(["check", "+14255550300", "-o", str(tmp_path / "out.csv")], env=connection(gateway))
    assert checked.exit_code == 0 and checked.stdout == ""
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines() == [
        "input,e164,status,code,message,optedOut", "+14255550300,+14255550300,succeeded,,,true"]

    refused = run_script(["check", "+14255550300"], env={"OPTOUTS_URL": gateway.base_url, "OPTOUTS_KEY": "nope"})
    assert refused.exit_code == 3 and "401" in refused.stderr
    assert run_script(["check"], env=connection(gateway)).exit_code == 2


def test_a_terminal_gets_a_live_progress_bar(gateway: LocalHost) -> None:
    """Rich draws its live bar when it believes it writes to a terminal (TTY_COMPATIBLE=1 makes it
    so for a pipe): the bar's frames are captured, from the first call to the last."""
    numbers = [f"+1425555{n:04d}" for n in range(310, 316)]
    ran = run_script(["check", *numbers, "--batch-size", "2", "-o", "-"],
                     env={**connection(gateway), "TTY_COMPATIBLE": "1", "COLUMNS": "100"})
    assert ran.exit_code == 0, ran.stderr
    assert "━" in ran.stderr  # the bar itself
    assert "6/6" in ran.stderr and "100%" in ran.stderr
    assert "check: 6 numbers: 6 succeeded" in ran.stderr
    assert KEY not in ran.stderr + ran.stdout
