// Holds the ACS connection string for the key-vault and key-vault-reference modes.
// Access is by Azure RBAC only (no access policies), and deleted secrets stay
// recoverable: soft delete with purge protection, so nobody can destroy the secret's
// history, not even an owner, before the retention period ends.

param name string
param location string
param tags object = {}

@description('Days a deleted vault or secret stays recoverable (7 to 90).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration reaches the vault over its public endpoint; every read still needs an Entra token and the Key Vault Secrets User role.
    // checkov:skip=CKV_AZURE_189: Same reason as CKV_AZURE_109; a private-endpoint variant is future work (docs/deploy.md).
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
