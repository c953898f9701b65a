"""docs/aws.md stays true: every setting the AWS provider reads is in its configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from optouts.providers.aws.settings import RATE_SETTINGS

REPO = Path(__file__).resolve().parent.parent.parent
SOURCE = (REPO / "optouts" / "providers" / "aws" / "settings.py").read_text(encoding="utf-8")


def settings_read() -> set[str]:
    names = set(re.findall(r'_(?:text|number|endpoint)\(\s*env,\s*"([A-Z][A-Z0-9_]+)"', SOURCE))
    return names | set(RATE_SETTINGS.values()) | {"OPTOUT_AWS_SENDERS"}


def test_every_aws_setting_is_in_the_docs_configuration_table() -> None:
    docs = (REPO / "docs" / "aws.md").read_text(encoding="utf-8")
    table = docs[docs.index("## Configuration"):docs.index("## Setting up the AWS side")]
    assert len(settings_read()) >= 20
    assert sorted(name for name in settings_read() if f"`{name}`" not in table) == []


def test_the_readme_points_to_the_aws_docs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/aws.md" in readme and "docs/aws-emulator.md" in readme
    assert "`OPTOUT_AWS_SENDERS`" in readme[readme.index("## AWS End User Messaging SMS senders"):]
