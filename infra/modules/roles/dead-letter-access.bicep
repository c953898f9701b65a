// Event Grid's dead-letter writes: Storage Blob Data Contributor on the dead-letter container
// only (not the account), for the system topic's identity.

param storageAccountName string
param containerName string

@description('Who gets access: [{ principalId, principalType }], the system topic\'s identity (ServicePrincipal).')
param principals array

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/${containerName}'
}

// Built-in role id (the same in every tenant).
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource blobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(container.id, p.principalId, storageBlobDataContributorRoleId)
    scope: container
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]
