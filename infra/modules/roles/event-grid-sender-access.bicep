// Lets the app's identity publish change events to the custom topic, nothing more: no
// management of the topic or of its subscriptions. Scoped to that one topic.

param topicName string

@description('Who gets access: [{ principalId, principalType }].')
param principals array

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(topic.id, p.principalId, eventGridDataSenderRoleId)
    scope: topic
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]
