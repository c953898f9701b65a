"""The README stays true: every app setting the code reads is in its configuration table."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETTING_READ = re.compile(r"_(?:text|number|flag|csv)\(\s*env,\s*\"([A-Z][A-Z0-9_]+)\"", re.S)


def settings_read_by_the_code() -> set[str]:
    """Every setting read anywhere in the package: the gateway's (optouts/config.py) and each
    provider's (optouts/providers/*/settings.py)."""
    return {name for path in (REPO / "optouts").rglob("*.py")
            for name in SETTING_READ.findall(path.read_text(encoding="utf-8"))}


def test_the_code_reads_the_settings_we_expect() -> None:
    assert {"ACS_CONNECTION_STRING", "OPTOUT_QUEUE_TIME_BUDGET_SECONDS", "OPTOUT_MAX_NUMBERS"} <= settings_read_by_the_code()


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration"):]
    missing = sorted(name for name in settings_read_by_the_code() if f"`{name}`" not in table)
    assert missing == []
