// The Azure Communication Services resource whose SMS opt-out list the gateway manages.
// Phone numbers cannot be bought from a template; see docs/deploy.md for that step.

param name string

@description('Where ACS keeps data at rest. Fixed at creation; changing it recreates the resource.')
param dataLocation string

param tags object = {}

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: name
  // ACS is a global resource; only dataLocation decides where data lives.
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

output name string = communication.name
output id string = communication.id
output endpoint string = 'https://${communication.properties.hostName}'
