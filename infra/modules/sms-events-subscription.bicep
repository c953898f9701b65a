// The subscription that delivers ACS's SMSReceived events to the gateway's Event Grid
// function (RecordEndUserKeyword), which records an end user's STOP or START in the audit
// trail. Nothing else is delivered: the filter keeps delivery reports and the like out.
//
// Events the function refuses or cannot take within the retry policy are dead-lettered, as
// blobs, to a private container of the app's storage account, written with the topic's own
// identity: an end user's opt-out is never dropped.

param systemTopicName string

@description('Resource id of the function app; the function is {id}/functions/{functionName}.')
param functionAppId string

param functionName string = 'RecordEndUserKeyword'

param storageAccountId string
param deadLetterContainerName string

@description('Event Grid (EventGridSchema) or CloudEvents 1.0 (CloudEventSchemaV1_0): the function reads both.')
@allowed(['EventGridSchema', 'CloudEventSchemaV1_0'])
param eventDeliverySchema string = 'EventGridSchema'

@description('Deliveries of one event before it is dead-lettered (Event Grid retries with back-off).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('How long Event Grid keeps trying one event, in minutes (at most one day).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'sms-received-to-gateway'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        // One event per call: a failed event is retried (and dead-lettered) alone, never with others.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: eventDeliverySchema
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.SMSReceived'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = subscription.name
