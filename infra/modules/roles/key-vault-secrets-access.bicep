// Read access to secret values in the vault, nothing more: no listing of keys or
// certificates, no writes. Scoped to the vault (not the resource group).

param keyVaultName string

@description('Who gets access: [{ principalId, principalType }].')
param principals array

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(vault.id, p.principalId, keyVaultSecretsUserRoleId)
    scope: vault
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]
