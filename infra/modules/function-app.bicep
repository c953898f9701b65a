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

@description('Put App Service authentication (Entra ID) in front of the app: every call but the contract then needs an Entra access token for the gateway app registration, besides the function key.')
param appServiceAuthEnabled bool = false

@description('Application (client) id of the gateway app registration whose tokens are accepted; required with appServiceAuthEnabled.')
param authClientId string = ''

@description('Tenant whose tokens are accepted.')
param authTenantId string = tenant().tenantId

@description('Client ids of the applications allowed to call (the connector registration, internal services); empty allows any application holding a token for the gateway audience.')
param authAllowedApplications array = []

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

// App Service authentication (Easy Auth): the platform checks the Entra token before the
// request reaches the worker, and sets X-MS-CLIENT-PRINCIPAL-* itself (stripping any the
// caller sent). API callers get 401, never a login redirect. The contract stays anonymous
// so a connector can still be created from its URL.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (appServiceAuthEnabled) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    // checkov reads every sites/config resource as the site's web configuration; this one is
    // authsettingsV2, which holds none of those properties (they are set on the site itself):
    // checkov:skip=CKV_AZURE_13: This is authsettingsV2, which checkov reads as the V1 schema: it is enabled by platform.enabled below, which the V1 check does not look for.
    // checkov:skip=CKV_AZURE_63: HTTP logging is a web config property, not one of the authentication settings in this resource.
    // checkov:skip=CKV_AZURE_65: Detailed error messages are a web config property, not one of the authentication settings here.
    // checkov:skip=CKV_AZURE_66: Failed request tracing is a web config property, not one of the authentication settings here.
    // checkov:skip=CKV_AZURE_80: The .NET Framework version is a web config property, and the app runs Python anyway.
    // checkov:skip=CKV_AZURE_88: Azure Files mounts are a web config property; a Flex Consumption Python app mounts none.
    // checkov:skip=CKV_AZURE_222: Public network access is a site property, skipped with its reason on the site above.
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/openapi.json'
      ]
    }
    httpSettings: {
      requireHttps: true
      routes: {
        apiPrefix: '/.auth'
      }
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          // v2.0 issuer; the platform accepts the tenant's v1 tokens for the same audience too.
          openIdIssuer: '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
          clientId: authClientId
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
          defaultAuthorizationPolicy: {
            allowedApplications: authAllowedApplications
          }
        }
      }
    }
    login: {
      // API callers send bearer tokens; no session cookies or stored tokens are needed.
      tokenStore: {
        enabled: false
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
