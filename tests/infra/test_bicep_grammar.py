"""Every .bicep file under infra/ parses with the tree-sitter Bicep grammar."""

from __future__ import annotations

import pytest

from tests.infra import bicep

PATHS = bicep.bicep_paths()


def test_infra_has_the_expected_bicep_files() -> None:
    names = {str(p.relative_to(bicep.INFRA)) for p in PATHS}
    expected = {
        "main.bicep",
        "modules/identity.bicep",
        "modules/monitoring.bicep",
        "modules/storage.bicep",
        "modules/communication.bicep",
        "modules/key-vault.bicep",
        "modules/acs-secret.bicep",
        "modules/app-settings.bicep",
        "modules/function-app.bicep",
        "modules/roles/storage-data-access.bicep",
        "modules/roles/key-vault-secrets-access.bicep",
        "modules/roles/monitoring-publisher-access.bicep",
        "modules/roles/communication-access.bicep",
        "modules/roles/dead-letter-access.bicep",
        "modules/sms-events-topic.bicep",
        "modules/sms-events-subscription.bicep",
    }
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("path", PATHS, ids=[str(p.relative_to(bicep.INFRA)) for p in PATHS])
def test_file_parses_without_error_or_missing_nodes(path) -> None:
    parsed = bicep.load(path)
    assert parsed.syntax_errors() == []
    assert parsed.declarations(), f"{parsed.relative} declares nothing"


def test_the_checker_reports_a_broken_file_with_its_line(tmp_path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("param ok string\nresource r 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'x'\n  properties: {\n")
    problems = bicep.load(broken).syntax_errors()
    assert problems, "an unterminated object must be reported"
    assert all(":" in p for p in problems)


def test_every_module_path_in_main_exists() -> None:
    main = bicep.file("main.bicep")
    for module in main.declarations("module"):
        assert (bicep.INFRA / module.type_text).is_file(), f"main.bicep:{module.line} {module.type_text}"
