// Entra ID (managed-identity) access to the ACS data plane, for the SMS opt-out API.
//
// Why this role: Azure has no SMS-only or data-only built-in role for Communication
// Services. ACS authorizes Entra callers by role assignments on the resource, and the
// built-in roles that grant it are Owner, Contributor and "Communication and Email
// Service Owner". The last is the narrowest of the three: it is limited to
// Microsoft.Communication resources (plus read-only monitoring), whereas Contributor
// covers every resource type. It is assigned on this one ACS resource only, never on the
// resource group. A custom role can narrow it further where policy demands it.

param communicationServiceName string

@description('Who gets access: [{ principalId, principalType }].')
param principals array

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

var communicationAndEmailServiceOwnerRoleId = '09976791-48a7-449e-bb21-39d1a415f350'

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(communication.id, p.principalId, communicationAndEmailServiceOwnerRoleId)
    scope: communication
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', communicationAndEmailServiceOwnerRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]
