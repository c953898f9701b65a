// Writes the ACS connection string into Key Vault. The key is read from the ACS resource
// here, inside the deployment, so it never travels through a parameter, an output or a
// deployment log: only the secret's URI leaves this module.

param keyVaultName string
param communicationServiceName string

@description('Name of the secret that holds the whole ACS connection string.')
param secretName string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    // checkov:skip=CKV_AZURE_41: No expiry on purpose: the gateway re-reads the secret when ACS rejects a rotated key, and an expired secret would take it down with no key change at all. Rotation is the control (docs/deploy.md).
    contentType: 'text/plain; acs-connection-string'
    value: communication.listKeys().primaryConnectionString
  }
}

output secretName string = secret.name
// The versionless URI, so a Key Vault reference follows rotations.
output secretUri string = '${vault.properties.vaultUri}secrets/${secret.name}'
