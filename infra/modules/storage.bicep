// The storage account behind AzureWebJobsStorage, the gateway's queues, its results
// container, its audit trail (operations container, index queue, history table) and the
// Flex Consumption deployment package.
// Shared keys are switched off: every client (Functions host, the app's own SDK calls,
// the deployment) authenticates with Entra ID, so there is no account key to leak.

param name string
param location string
param tags object = {}

@description('Queue the gateway reads opt-out requests from.')
param requestsQueueName string

@description('Queue the gateway publishes results to.')
param resultsQueueName string

@description('Blob container for results too large for a queue message.')
param resultsContainerName string

@description('Blob container holding the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Table of the audit trail\'s per-number history, written by the indexer.')
param auditTableName string

@description('Blob container of the audit trail\'s operation records (intent and outcome, one blob each).')
param auditContainerName string

@description('Queue that feeds the audit trail\'s indexer.')
param auditIndexQueueName string

@description('Queue of the jobs\' work items.')
param jobsQueueName string

@description('Table of the jobs and their counters.')
param jobsTableName string

@description('Blob container of the jobs\' inputs, report parts and reports.')
param jobsContainerName string

@description('Blob container operators upload large lists to (jobs\' blobUrl, queued requests\' phoneNumbersBlob).')
param uploadsContainerName string

@description('Blob container where Event Grid dead-letters SMS events the gateway could not take.')
param eventDeadLetterContainerName string
@description('Queue of change events (CloudEvents JSON, one per message); created whatever the sinks, so that turning the queue sink on needs no redeploy.')
param eventsQueueName string

@description('Days deleted blobs and containers stay recoverable.')
@minValue(1)
param deleteRetentionDays int = 7

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_206: LRS is deliberate; queue messages are transient and the deployment package is rebuilt by every deploy, so geo-replication buys nothing here.
    // checkov:skip=CKV_AZURE_59: Flex Consumption without VNet integration reaches its storage over the public endpoint; access is by Entra ID only (shared keys disabled).
    // checkov:skip=CKV_AZURE_35: Same reason as CKV_AZURE_59: the default network rule must allow the Functions host; a private-endpoint variant is future work (docs/deploy.md).
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

// Both containers are private; publicAccess 'None' also holds if blob public access is
// ever re-enabled on the account.
resource resultsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: resultsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The audit trail's operation records: compliance data, so private and never public.
resource auditContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: auditContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Jobs' inputs and reports, and the lists operators upload: personal data, private.
resource jobsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: jobsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource uploadsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: uploadsContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Dead-lettered SMSReceived events: an end user's STOP the function could not record in time.
resource eventDeadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: eventDeadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The poison queue is created up front too: the Functions host would create it lazily,
// but monitoring and alerting on it should not depend on a first failure.
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in [
    requestsQueueName
    resultsQueueName
    '${requestsQueueName}-poison'
    auditIndexQueueName
    '${auditIndexQueueName}-poison'
    jobsQueueName
    '${jobsQueueName}-poison'
    eventsQueueName
  ]: {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: auditTableName
}

resource jobsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: jobsTableName
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
output queueNames array = [
  requestsQueueName
  resultsQueueName
  '${requestsQueueName}-poison'
  auditIndexQueueName
  '${auditIndexQueueName}-poison'
  jobsQueueName
  '${jobsQueueName}-poison'
  eventsQueueName
]
output auditContainerName string = auditContainer.name
output auditTableName string = auditTable.name
output resultsContainerName string = resultsContainer.name
output eventDeadLetterContainerName string = eventDeadLetterContainer.name
