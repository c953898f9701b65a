// The gateway's own identity. User-assigned rather than system-assigned so that role
// assignments can be granted before the function app exists (no chicken-and-egg on the
// first deployment) and survive the app being recreated.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
