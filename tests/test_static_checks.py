"""Lint and types are part of the suite (so `make test`, and CI, run them): ruff with the
rule sets in pyproject.toml, and mypy --strict over what is deployed (optouts/, blueprints/,
function_app.py), less strictly over devtools/, bench/ and tests/ (see pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_finds_nothing() -> None:
    completed = run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]


def test_mypy_strict_finds_nothing() -> None:
    # The files and the strictness per package come from [tool.mypy] in pyproject.toml.
    completed = run(sys.executable, "-m", "mypy")
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert "Success: no issues found" in completed.stdout


def test_the_deployed_code_is_checked_strictly() -> None:
    """A relaxed override for the deployed packages would make the test above meaningless."""
    config = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    mypy = config[config.index("[tool.mypy]"):]
    assert "strict = true" in mypy
    for line in mypy.splitlines():
        if line.startswith("module = ") and "disallow_untyped_defs" in mypy[mypy.index(line):][:400]:
            assert "optouts" not in line and "blueprints" not in line and "function_app" not in line, line
