"""Secure-by-default properties, read from the parsed Bicep."""

from __future__ import annotations

import re

from tests.infra import bicep
from tests.infra.bicep import Expr, dig

# Resource type -> API versions known to exist and to carry the properties used here
# (e.g. functionAppConfig needs Microsoft.Web 2023-12-01 or later).
KNOWN_API_VERSIONS = {
    "Microsoft.Web/sites": {"2023-12-01", "2024-04-01"},
    "Microsoft.Web/serverfarms": {"2023-12-01", "2024-04-01"},
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": {"2023-12-01", "2024-04-01"},
    "Microsoft.Web/sites/config": {"2024-04-01"},
    "Microsoft.Storage/storageAccounts": {"2023-01-01", "2023-05-01"},
    "Microsoft.Storage/storageAccounts/blobServices": {"2023-01-01", "2023-05-01"},
    "Microsoft.Storage/storageAccounts/blobServices/containers": {"2023-01-01", "2023-05-01"},
    "Microsoft.Storage/storageAccounts/queueServices": {"2023-01-01", "2023-05-01"},
    "Microsoft.Storage/storageAccounts/queueServices/queues": {"2023-01-01", "2023-05-01"},
    "Microsoft.Storage/storageAccounts/tableServices": {"2023-01-01", "2023-05-01"},
    "Microsoft.Storage/storageAccounts/tableServices/tables": {"2023-01-01", "2023-05-01"},
    "Microsoft.KeyVault/vaults": {"2023-07-01"},
    "Microsoft.KeyVault/vaults/secrets": {"2023-07-01"},
    "Microsoft.Communication/communicationServices": {"2023-04-01"},
    "Microsoft.OperationalInsights/workspaces": {"2023-09-01"},
    "Microsoft.Insights/components": {"2020-02-02"},
    "Microsoft.ManagedIdentity/userAssignedIdentities": {"2023-01-31"},
    "Microsoft.Authorization/roleAssignments": {"2022-04-01"},
    "Microsoft.EventGrid/systemTopics": {"2022-06-15"},
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": {"2022-06-15"},
    "Microsoft.EventGrid/topics": {"2022-06-15"},
}


def only(resource_type: str) -> bicep.Declaration:
    found = [r for r in bicep.all_resources(resource_type) if not r.is_existing]
    assert len(found) == 1, f"expected one deployed {resource_type}, found {[(r.file.name, r.name) for r in found]}"
    return found[0]


def test_every_required_resource_type_is_deployed() -> None:
    deployed = {
        r.type_text.split("@")[0]
        for f in bicep.all_files()
        for r in f.resources()
        if not r.is_existing
    }
    assert set(KNOWN_API_VERSIONS) <= deployed, sorted(set(KNOWN_API_VERSIONS) - deployed)


def test_api_versions_are_known_ones() -> None:
    for f in bicep.all_files():
        for r in f.resources():
            resource_type, _, version = r.type_text.partition("@")
            assert resource_type in KNOWN_API_VERSIONS, f"{f.relative}:{r.line} unexpected type {resource_type}"
            assert version in KNOWN_API_VERSIONS[resource_type], f"{f.relative}:{r.line} {r.type_text}"


def test_storage_refuses_shared_keys_public_blobs_and_old_tls() -> None:
    props = dig(only("Microsoft.Storage/storageAccounts").value(), "properties")
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    for container in bicep.all_resources("Microsoft.Storage/storageAccounts/blobServices/containers"):
        if container.is_existing:  # a reference (a role's scope) deploys nothing
            continue
        assert dig(container.value(), "properties", "publicAccess") == "None", container.name


def test_storage_creates_queues_container_and_table_up_front() -> None:
    main = {d.name: d.value() for d in bicep.file("main.bicep").declarations("var")}
    assert main["requestsQueueName"] == "optout-requests"
    assert main["resultsQueueName"] == "optout-results"
    assert main["resultsContainerName"] == "optout-results"
    assert main["auditTableName"] == "optoutaudit"
    assert main["auditContainerName"] == "optout-operations"
    assert main["auditIndexQueueName"] == "optout-audit-index"
    storage = bicep.file("modules/storage.bicep")
    queues = storage.resources("Microsoft.Storage/storageAccounts/queueServices/queues")
    assert len(queues) == 1
    loop = bicep.text(queues[0].node)
    assert "requestsQueueName" in loop and "resultsQueueName" in loop and "'${requestsQueueName}-poison'" in loop
    assert "auditIndexQueueName" in loop and "'${auditIndexQueueName}-poison'" in loop
    assert "jobsQueueName" in loop and "'${jobsQueueName}-poison'" in loop
    containers = {bicep.text(c.node) for c in storage.resources("Microsoft.Storage/storageAccounts/blobServices/containers")}
    assert any("name: resultsContainerName" in c for c in containers)
    assert any("name: deploymentContainerName" in c for c in containers)
    assert any("name: auditContainerName" in c for c in containers)
    assert any("name: jobsContainerName" in c for c in containers)
    assert any("name: uploadsContainerName" in c for c in containers)
    assert storage.resources("Microsoft.Storage/storageAccounts/tableServices/tables")


def test_function_app_is_flex_consumption_python_https_only() -> None:
    plan = only("Microsoft.Web/serverfarms").value()
    assert dig(plan, "sku") == {"name": "FC1", "tier": "FlexConsumption"}
    assert dig(plan, "properties", "reserved") is True

    site = only("Microsoft.Web/sites").value()
    assert site["kind"] == "functionapp,linux"
    assert "'azd-service-name': 'api'" in site["tags"].text
    assert dig(site, "identity", "type") == "UserAssigned"
    props = dig(site, "properties")
    assert props["httpsOnly"] is True
    assert dig(props, "siteConfig", "minTlsVersion") == "1.2"
    assert dig(props, "siteConfig", "ftpsState") == "Disabled"
    assert dig(props, "functionAppConfig", "runtime") == {"name": "python", "version": Expr("pythonVersion")}
    storage = dig(props, "functionAppConfig", "deployment", "storage")
    assert storage["type"] == "blobContainer"
    assert dig(storage, "authentication", "type") == "UserAssignedIdentity"
    assert dig(storage, "authentication", "userAssignedIdentityResourceId") == Expr("identityId")
    assert "useKeyVaultReferenceIdentity ? identityId" in props["keyVaultReferenceIdentity"].text

    params = {d.name: d.value() for d in bicep.file("modules/function-app.bicep").declarations("param")}
    assert params["pythonVersion"] == "3.11"


def test_basic_publishing_credentials_are_off_for_ftp_and_scm() -> None:
    policies = {
        r.value()["name"]: r.value()["properties"]["allow"]
        for r in bicep.all_resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    assert policies == {"ftp": False, "scm": False}


def test_key_vault_uses_rbac_soft_delete_and_purge_protection() -> None:
    props = dig(only("Microsoft.KeyVault/vaults").value(), "properties")
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props


def test_acs_secret_comes_from_list_keys_inside_the_module() -> None:
    module = bicep.file("modules/acs-secret.bicep")
    acs = module.resources("Microsoft.Communication/communicationServices")
    assert len(acs) == 1 and acs[0].is_existing
    secret = dig(module.resources("Microsoft.KeyVault/vaults/secrets")[0].value(), "properties", "value")
    assert secret == Expr(f"{acs[0].name}.listKeys().primaryConnectionString")
    # Nothing about the key enters or leaves the module.
    assert {p.name for p in module.declarations("param")} == {"keyVaultName", "communicationServiceName", "secretName"}
    for output in module.declarations("output"):
        assert "listKeys" not in bicep.text(output.node)


def test_acs_is_global_with_a_data_location_parameter() -> None:
    acs = only("Microsoft.Communication/communicationServices").value()
    assert acs["location"] == "global"
    assert dig(acs, "properties", "dataLocation") == Expr("dataLocation")
    main = {d.name: d.value() for d in bicep.file("main.bicep").declarations("param")}
    assert main["acsDataLocation"] == "United States"
    assert main["acsAuthMode"] == "managed-identity"


def test_application_insights_refuses_local_auth() -> None:
    props = dig(only("Microsoft.Insights/components").value(), "properties")
    assert props["DisableLocalAuth"] is True
    assert props["WorkspaceResourceId"] == Expr("logAnalytics.id")


SECRET_WORDS = re.compile(r"password|accesskey|accountkey|primarykey|secondarykey|sas|token|secret(?!Uri|Name)", re.I)


def test_no_secret_reaches_an_output() -> None:
    for f in bicep.all_files():
        secure = {p.name for p in f.declarations("param") if any(d.startswith("@secure") for d in p.decorators)}
        for output in f.declarations("output"):
            source = bicep.text(output.node)
            where = f"{f.relative}:{output.line}"
            assert not re.search(r"\blist\w*\(", source), f"{where} outputs a list*() result"
            assert not any(re.search(rf"\b{name}\b", source) for name in secure), f"{where} outputs a @secure param"
            assert not SECRET_WORDS.search(output.name), f"{where} output name looks secret: {output.name}"
            if "ConnectionString" in output.name:
                # The only one allowed: App Insights with DisableLocalAuth, whose key cannot
                # authorize ingestion on its own.
                assert output.name == "applicationInsightsConnectionString", where


def test_no_owner_or_contributor_role_anywhere() -> None:
    for f in bicep.all_files():
        source = f.path.read_text()
        assert "b24988ac-6180-42a0-ab88-20f7382dd24c" not in source, f"{f.relative} assigns Contributor"
        assert "8e3af657-a8ff-443c-a75c-2fe8c4bcb635" not in source, f"{f.relative} assigns Owner"
