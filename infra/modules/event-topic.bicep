// The optional Event Grid custom topic for change events (docs/change-events.md): CloudEvents
// 1.0 in, Entra ID only (no access keys), so the gateway publishes with its managed identity
// and the role EventGrid Data Sender on this topic (roles/event-grid-sender-access.bicep).
// Subscriptions (webhook, Service Bus, Logic Apps...) are the consumers' to create.

param name string
param location string
param tags object = {}

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  // Its own identity, for subscriptions that deliver or dead-letter with managed identity
  // (a Service Bus queue, a dead-letter blob container) instead of keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_193: Flex Consumption without VNet integration publishes over the topic's public endpoint; every publish still needs an Entra token and the EventGrid Data Sender role, local (key) auth is off.
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output name string = topic.name
output id string = topic.id
output endpoint string = topic.properties.endpoint
