"""Role assignments: the right built-in roles, by their real ids, on the narrowest scope."""

from __future__ import annotations

import re

from tests.infra import bicep

# Built-in role definition ids (identical in every tenant), checked against the Azure
# built-in roles reference.
EXPECTED = {
    "modules/roles/storage-data-access.bicep": {
        "storageBlobDataOwnerRoleId": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "storageQueueDataContributorRoleId": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "storageTableDataContributorRoleId": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    },
    "modules/roles/key-vault-secrets-access.bicep": {
        "keyVaultSecretsUserRoleId": "4633458b-17de-408a-b874-0445c86b69e6",
    },
    "modules/roles/monitoring-publisher-access.bicep": {
        "monitoringMetricsPublisherRoleId": "3913510d-42f4-4e42-8a64-420c390055eb",
    },
    "modules/roles/dead-letter-access.bicep": {
        "storageBlobDataContributorRoleId": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    },
    "modules/roles/event-grid-sender-access.bicep": {
        # "EventGrid Data Sender": publish events to the topic, nothing else.
        "eventGridDataSenderRoleId": "d5a91429-5739-47e2-a06b-3470a27159e7",
    },
    "modules/roles/communication-access.bicep": {
        # "Communication and Email Service Owner": no narrower built-in role grants
        # Entra access to the ACS data plane (reason in the module's comment).
        "communicationAndEmailServiceOwnerRoleId": "09976791-48a7-449e-bb21-39d1a415f350",
    },
}

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_role_ids_are_the_built_in_ones() -> None:
    for relative, expected in EXPECTED.items():
        variables = {v.name: v.value() for v in bicep.file(relative).declarations("var")}
        for name, guid in expected.items():
            assert variables.get(name) == guid, f"{relative}: {name} should be {guid}, is {variables.get(name)}"


def test_every_role_assignment_is_guid_named_per_scope_principal_and_role() -> None:
    seen = 0
    for relative, expected in EXPECTED.items():
        module = bicep.file(relative)
        scopes = {r.name for r in module.resources() if r.is_existing}
        assert len(scopes) == 1, f"{relative} should target exactly one existing resource"
        (scope,) = scopes
        used = set()
        for assignment in module.resources("Microsoft.Authorization/roleAssignments"):
            seen += 1
            body = assignment.value()
            role_var = re.fullmatch(
                r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', (\w+)\)",
                body["properties"]["roleDefinitionId"].text,
            )
            assert role_var and role_var.group(1) in expected, f"{relative}:{assignment.line}"
            used.add(role_var.group(1))
            assert body["scope"] == bicep.Expr(scope), f"{relative}:{assignment.line} must be scoped to {scope}"
            assert body["name"] == bicep.Expr(f"guid({scope}.id, p.principalId, {role_var.group(1)})")
            assert body["properties"]["principalId"] == bicep.Expr("p.principalId")
            assert body["properties"]["principalType"] == bicep.Expr("p.principalType")
            assert bicep.text(assignment.node).lstrip().startswith("resource") and "for p in principals" in bicep.text(assignment.node)
        assert used == set(expected), f"{relative}: roles declared but not assigned: {set(expected) - used}"
    assert seen == 8


def test_no_other_file_assigns_roles() -> None:
    for f in bicep.all_files():
        if f.resources("Microsoft.Authorization/roleAssignments"):
            assert str(f.path.relative_to(bicep.INFRA)) in EXPECTED, f.relative
        for guid in re.findall(r"'([0-9a-f-]{36})'", f.path.read_text()):
            if GUID.match(guid):
                assert any(guid in e.values() for e in EXPECTED.values()), f"{f.relative}: unknown id {guid}"


def test_main_grants_the_app_identity_and_optionally_the_user() -> None:
    main = bicep.file("main.bicep")
    variables = {v.name: bicep.text(v.body) for v in main.declarations("var") if v.body is not None}
    assert "principalType: 'ServicePrincipal'" in variables["appPrincipal"]
    assert "identity.outputs.principalId" in variables["appPrincipal"]
    assert "principalType: 'User'" in variables["userPrincipal"]
    assert variables["userPrincipal"].startswith("empty(principalId) ? []")
    modules = {m.name: m for m in main.declarations("module")}
    # Each ACS path is granted only in the mode that uses it.
    assert "if (usesKeyVault)" in bicep.text(modules["keyVaultAccess"].node)
    assert "if (!usesKeyVault)" in bicep.text(modules["communicationAccess"].node)
    for name in ("storageAccess", "monitoringAccess", "keyVaultAccess", "communicationAccess"):
        assert modules[name].value()["params"]["principals"] == bicep.Expr("principals"), name
