"""What is deployed: the app and its logic, never the dev tools, tests or secrets."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NEVER_DEPLOYED = ["devtools", "cli", "tests", "bench", "infra", "docs", "node_modules", "local.settings.json",
                  ".venv", ".venv-infra", "requirements-dev.txt", "package.json"]
DEPLOYED = ["function_app.py", "host.json", "requirements.txt", "blueprints", "optouts"]


def ignored(name: str) -> bool:
    patterns = [line.strip() for line in (REPO / ".funcignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return any(fnmatch.fnmatch(name, pattern.rstrip("/")) for pattern in patterns)


def test_funcignore_keeps_dev_tools_out_and_the_app_in() -> None:
    assert [name for name in NEVER_DEPLOYED if not ignored(name)] == []
    assert [name for name in DEPLOYED if ignored(name)] == []


def test_deployed_code_never_imports_dev_tools() -> None:
    for path in [REPO / "function_app.py", *(REPO / "blueprints").rglob("*.py"), *(REPO / "optouts").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("devtools", "tests", "bench") for n in names), path


def test_optouts_knows_nothing_of_azure_functions() -> None:
    for path in (REPO / "optouts").rglob("*.py"):
        assert "azure.functions" not in path.read_text(encoding="utf-8"), path
