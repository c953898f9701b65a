// The gateway's host: a Linux Function App on the Flex Consumption plan (FC1), running
// as the user-assigned identity. App settings are computed by app-settings.bicep so that
// the list of settings the code reads lives in one file.

param planName string
param appName string
param location string
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Python version of the Flex Consumption runtime.')
@allowed(['3.10', '3.11', '3.12'])
param pythonVersion string = '3.11'

@description('Most instances the app may scale out to; bounds cost and ACS load.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('App settings, name to value (from app-settings.bicep).')
param appSettings object

@description('Set the Key Vault reference identity to the user-assigned identity (key-vault-reference mode).')
param useKeyVaultReferenceIdentity bool = false

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: Zone redundancy is not a property of an FC1 plan in this API version; scale-out across instances is managed by the platform.
    // Linux: required by Flex Consumption.
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  // azd finds the app to deploy the 'api' service to by this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222: Internal systems call the gateway over the internet with a function key; private networking (VNet integration, private endpoints) is future work, see docs/deploy.md.
    // checkov:skip=CKV_AZURE_17: Callers authenticate with function keys, not client certificates; requiring certificates would break every existing caller.
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales instances on demand (maximumInstanceCount); there is no fixed minimum worker count to set on this plan.
    // checkov:skip=CKV_AZURE_213: GET /api/health needs a function key (authLevel FUNCTION), so the platform's anonymous health probe would get 401 and evict healthy instances.
    serverFarmId: plan.id
    httpsOnly: true
    // Without this, @Microsoft.KeyVault(...) references would be resolved with a
    // system-assigned identity this app does not have.
    keyVaultReferenceIdentity: useKeyVaultReferenceIdentity ? identityId : null
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            // The package is fetched with the app's identity: no storage key or SAS.
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Basic (user name and password) publishing is off for both FTP and the SCM site:
// deployments authenticate with Entra ID (azd, az functionapp deploy).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output url string = 'https://${site.properties.defaultHostName}'
