// The Event Grid system topic of the ACS resource: where ACS publishes its SMS events
// (SMSReceived among them). Its system-assigned identity writes dead-lettered events to
// storage (modules/roles/dead-letter-access.bicep), so no storage key or SAS is needed.

param name string
param tags object = {}

@description('Resource id of the Azure Communication Services resource whose events the topic carries.')
param communicationServiceId string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  // ACS is a global resource, and so is its system topic.
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: communicationServiceId
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
