// Data-plane access to the storage account, per Functions' identity-based connection
// guidance: blobs (host leases, results container, deployment package), queues
// (trigger, results, poison) and tables (audit). Control-plane roles are not needed:
// nothing lists keys, and keys are disabled anyway.

param storageAccountName string

@description('Who gets access: [{ principalId, principalType }], principalType ServicePrincipal or User.')
param principals array

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// Built-in role ids (the same in every tenant).
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

// Blob Data Owner, not Contributor: the Functions host manages blob leases and the
// deployment container with it, which is the documented requirement for
// AzureWebJobsStorage with an identity.
resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(storage.id, p.principalId, storageBlobDataOwnerRoleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(storage.id, p.principalId, storageQueueDataContributorRoleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(storage.id, p.principalId, storageTableDataContributorRoleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]
