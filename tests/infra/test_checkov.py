"""checkov's Bicep checks pass on infra/ with zero failures, and every deliberate skip
is an inline, reasoned `// checkov:skip=ID: reason` inside the resource it silences."""

from __future__ import annotations

import functools
import json
import re
import subprocess

import pytest

from tests.infra import bicep

CHECKOV = bicep.ROOT / ".venv-infra" / "bin" / "checkov"
SKIP = re.compile(r"//\s*checkov:skip=(CKV2?_AZURE_\d+):\s*(.*)")


@functools.cache
def report() -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make test`, which builds .venv-infra from requirements-infra.txt")
    run = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "--skip-download", "-d", "infra", "-o", "json"],
        cwd=bicep.ROOT, capture_output=True, text=True, timeout=240,
    )
    assert run.returncode in (0, 1), f"checkov crashed ({run.returncode}): {run.stderr[-2000:]}"
    data = json.loads(run.stdout)
    reports = data if isinstance(data, list) else [data]
    bicep_reports = [r for r in reports if r.get("check_type") == "bicep"]
    assert len(bicep_reports) == 1, f"no bicep report in checkov output: {run.stdout[:500]}"
    return bicep_reports[0]


def test_checkov_parsed_every_file() -> None:
    result = report()
    # checkov exits 0 on files it cannot parse: read the count and the list.
    assert result["summary"]["parsing_errors"] == 0, result["results"].get("parsing_errors")
    assert result["results"].get("parsing_errors", []) == []
    assert result["summary"]["resource_count"] >= 30
    assert result["summary"]["passed"] > 0


def test_checkov_reports_no_failed_check() -> None:
    result = report()
    failed = [
        f"{c['check_id']} {c['check_name']} at {c['file_path']}:{c['file_line_range']} ({c['resource']})"
        for c in result["results"]["failed_checks"]
    ]
    assert failed == []
    assert result["summary"]["failed"] == 0


def inline_skips() -> dict[tuple[str, str], str]:
    """(file, check id) -> reason, for every skip comment, asserting it sits in a resource body."""
    skips: dict[tuple[str, str], str] = {}
    for f in bicep.all_files():
        for comment in f.comments():
            match = SKIP.match(bicep.text(comment))
            if not match:
                continue
            parent = comment.parent
            while parent is not None and parent.type != "resource_declaration":
                parent = parent.parent
            where = f"{f.relative}:{comment.start_point[0] + 1}"
            assert parent is not None, f"{where}: skip outside a resource body"
            skips[("/" + str(f.path.relative_to(bicep.INFRA)), match.group(1))] = match.group(2)
    return skips


def test_every_skip_is_inline_with_a_reason_and_honoured_by_checkov() -> None:
    skips = inline_skips()
    assert skips, "expected the documented skips (see docs/deploy.md)"
    for key, reason in skips.items():
        assert len(reason.split()) >= 6, f"{key}: give a real reason, not {reason!r}"
    skipped = {(c["file_path"], c["check_id"]) for c in report()["results"]["skipped_checks"]}
    assert skipped == set(skips), (
        f"skipped by checkov but not by a reasoned comment: {sorted(skipped - set(skips))}; "
        f"skip comments checkov did not apply (wrong id or place): {sorted(set(skips) - skipped)}"
    )
