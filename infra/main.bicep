// SMS opt-out gateway: everything it needs in one resource group.
//
// Resource-group scope so the same file serves `azd up` (azd asks for, or creates, the
// group: AZURE_RESOURCE_GROUP) and `az deployment group create`.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(40)
@description('Name of the environment (azd: AZURE_ENV_NAME); part of every resource name.')
param environmentName string

@description('Region for everything except ACS, which is global. Must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Object id of the deploying user, to grant the same data access for local runs and debugging. Empty: no user access.')
param principalId string = ''

@description('How the gateway reaches ACS: its managed identity (no key anywhere), the connection string read from Key Vault at run time, or a Key Vault reference resolved by the platform.')
@allowed(['managed-identity', 'key-vault', 'key-vault-reference'])
param acsAuthMode string = 'managed-identity'

@description('Where ACS stores data at rest.')
param acsDataLocation string = 'United States'

@description('Sender (toll-free number, E.164) used when a request names none. Usually empty on the first deployment: numbers are bought after ACS exists.')
param defaultSender string = ''

@description('Comma-separated senders callers may act for; empty means just the default sender.')
param allowedSenders string = ''

@description('Region used for numbers written without a leading +.')
@minLength(2)
@maxLength(2)
param defaultRegion string = 'US'

@description('Most numbers in one request or queue message.')
@minValue(1)
param maxNumbers int = 10000

@description('ACS calls in flight at once for one operation.')
@minValue(1)
@maxValue(64)
param maxConcurrency int = 8

@description('Largest accepted request body, in bytes.')
@minValue(1024)
param maxBodyBytes int = 1048576

@description('Time budget of one HTTP operation, retries included, in seconds.')
@minValue(1)
param timeBudgetSeconds int = 60

@description('Time budget of one queue delivery, in seconds.')
@minValue(1)
param queueTimeBudgetSeconds int = 20

@description('How long the connection string read from Key Vault is cached (key-vault mode), in seconds.')
@minValue(0)
param secretCacheSeconds int = 300

@description('ACS REST api-version for the opt-out API.')
param acsApiVersion string = '2026-01-23'

@description('Write an audit record for check operations too, not only for add and remove.')
param auditChecks bool = false

@description('Seconds after which an operation whose outcome was never written is indexed as unknown.')
@minValue(1)
@maxValue(604800)
param auditReconcileSeconds int = 300

@description('Where change events go (docs/change-events.md): the optout-events queue, an Event Grid custom topic deployed here (the app may publish to it with its identity), both, or none.')
@allowed(['none', 'queue', 'eventgrid', 'queue,eventgrid'])
param eventSinks string = 'queue'

@description('Most Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

// AWS End User Messaging SMS as a second provider (docs/aws.md). Empty awsSenders: every
// sender is on ACS and nothing AWS-related is used.
@description('AWS senders: comma-separated sender=optOutListName, or a bare E.164 sender whose opt-out list is looked up. Empty: no AWS.')
param awsSenders string = ''

@description('AWS region of the opt-out lists, e.g. us-east-1 (AWS_REGION). Required with awsSenders.')
param awsRegion string = ''

@description('IAM role the gateway assumes with its managed identity\'s Entra ID token (STS AssumeRoleWithWebIdentity). Empty: the Key Vault key pair fallback.')
param awsRoleArn string = ''

@description('Audience of the Entra ID token exchanged with STS; the IAM OIDC provider lists it as its client id.')
param awsWebIdentityAudience string = 'api://AzureADTokenExchange'

@description('Fallback without federation: Key Vault secret holding {"accessKeyId": ..., "secretAccessKey": ...}. Ignored when awsRoleArn is set.')
param awsAccessKeySecretName string = ''

@description('AWS account quotas in requests per second (AWS\'s defaults); each instance takes 1/maximumInstanceCount of them.')
param awsPutOptedOutNumberRps string = '1'
param awsDeleteOptedOutNumberRps string = '10'
param awsDescribeOptedOutNumbersRps string = '1'
param awsDescribePhoneNumbersRps string = '1'

@description('Put App Service authentication (Entra ID) in front of the gateway (docs/deploy.md): callers need an Entra token besides the function key.')
param appServiceAuthEnabled bool = false

@description('Application (client) id of the gateway app registration; required with appServiceAuthEnabled.')
param authClientId string = ''

@description('Comma-separated client ids of the applications allowed to call (connector registration, services); empty allows any with a token for the gateway.')
param authAllowedApplications string = ''

@description('Subscribe the gateway\'s RecordEndUserKeyword function to ACS\'s SMSReceived events. Event Grid checks that the function exists, so turn it on once the code is deployed (docs/end-user-keywords.md): azd env set SMS_EVENTS_SUBSCRIPTION true && azd provision.')
param smsEventsSubscription bool = false

@description('Schema the SMSReceived events are delivered in; the function reads both.')
@allowed(['EventGridSchema', 'CloudEventSchemaV1_0'])
param smsEventsSchema string = 'EventGridSchema'

@description('IPs or CIDR ranges of proxies in front of the gateway whose X-Forwarded-Host/-Proto are believed (OPTOUT_TRUSTED_FORWARDERS); empty believes none.')
param trustedForwarders string = ''

// Queue, container and table names match the code's defaults (optouts/config.py).
var requestsQueueName = 'optout-requests'
var resultsQueueName = 'optout-results'
var resultsContainerName = 'optout-results'
var auditTableName = 'optoutaudit'
var auditContainerName = 'optout-operations'
var auditIndexQueueName = 'optout-audit-index'
var jobsQueueName = 'optout-jobs'
var jobsTableName = 'optoutjobs'
var jobsContainerName = 'optout-jobs'
var uploadsContainerName = 'optout-uploads'
var eventsQueueName = 'optout-events'
var deploymentContainerName = 'app-package'
var eventDeadLetterContainerName = 'optout-events-deadletter'
var acsSecretName = 'acs-connection-string'

var usesKeyVault = acsAuthMode != 'managed-identity'
var usesEventTopic = contains(eventSinks, 'eventgrid')
// The AWS key pair fallback reads its secret from the same vault.
var usesAwsKeyVault = !empty(awsSenders) && empty(awsRoleArn) && !empty(awsAccessKeySecretName)

// Short, stable, unique per subscription + group + environment, so redeploys update
// in place and two environments never collide on globally unique names.
var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName }

var names = {
  identity: 'id-optout-${token}'
  logAnalytics: 'log-optout-${token}'
  applicationInsights: 'appi-optout-${token}'
  storage: take('stoptout${token}', 24)
  keyVault: take('kv-optout-${token}', 24)
  communication: 'acs-optout-${token}'
  plan: 'plan-optout-${token}'
  functionApp: 'func-optout-${token}'
  smsEventsTopic: 'evgt-optout-${token}'
  eventTopic: 'evgt-optout-${token}'
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    requestsQueueName: requestsQueueName
    resultsQueueName: resultsQueueName
    resultsContainerName: resultsContainerName
    deploymentContainerName: deploymentContainerName
    auditTableName: auditTableName
    auditContainerName: auditContainerName
    auditIndexQueueName: auditIndexQueueName
    jobsQueueName: jobsQueueName
    jobsTableName: jobsTableName
    jobsContainerName: jobsContainerName
    uploadsContainerName: uploadsContainerName
    eventDeadLetterContainerName: eventDeadLetterContainerName
    eventsQueueName: eventsQueueName
  }
}

module eventTopic 'modules/event-topic.bicep' = if (usesEventTopic) {
  name: 'event-topic'
  params: {
    name: names.eventTopic
    location: location
    tags: tags
  }
}

module communication 'modules/communication.bicep' = {
  name: 'communication'
  params: {
    name: names.communication
    dataLocation: acsDataLocation
    tags: tags
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
  }
}

// Only the Key Vault modes need the key in the vault; in managed-identity mode no copy
// of the ACS key is made at all.
module acsSecret 'modules/acs-secret.bicep' = if (usesKeyVault) {
  name: 'acs-secret'
  params: {
    keyVaultName: keyVault.outputs.name
    communicationServiceName: communication.outputs.name
    secretName: acsSecretName
  }
}

// Who gets data access: always the app's identity; the deploying user if given.
var appPrincipal = [{ principalId: identity.outputs.principalId, principalType: 'ServicePrincipal' }]
var userPrincipal = empty(principalId) ? [] : [{ principalId: principalId, principalType: 'User' }]
var principals = concat(appPrincipal, userPrincipal)

module storageAccess 'modules/roles/storage-data-access.bicep' = {
  name: 'storage-data-access'
  params: {
    storageAccountName: storage.outputs.name
    principals: principals
  }
}

module monitoringAccess 'modules/roles/monitoring-publisher-access.bicep' = {
  name: 'monitoring-publisher-access'
  params: {
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principals: principals
  }
}

// Each ACS path is granted only in the mode that uses it.
module keyVaultAccess 'modules/roles/key-vault-secrets-access.bicep' = if (usesKeyVault) {
  name: 'key-vault-secrets-access'
  params: {
    keyVaultName: keyVault.outputs.name
    principals: principals
  }
}

module awsKeyVaultAccess 'modules/roles/key-vault-secrets-access.bicep' = if (usesAwsKeyVault && !usesKeyVault) {
  name: 'key-vault-secrets-access-aws'
  params: {
    keyVaultName: keyVault.outputs.name
    principals: appPrincipal
  }
}

// Only the app publishes change events; people subscribe with their own roles.
module eventTopicAccess 'modules/roles/event-grid-sender-access.bicep' = if (usesEventTopic) {
  name: 'event-grid-sender-access'
  params: {
    topicName: eventTopic.outputs.name
    principals: appPrincipal
  }
}

module communicationAccess 'modules/roles/communication-access.bicep' = if (!usesKeyVault) {
  name: 'communication-access'
  params: {
    communicationServiceName: communication.outputs.name
    principals: principals
  }
}

module appSettings 'modules/app-settings.bicep' = {
  name: 'app-settings'
  params: {
    acsAuthMode: acsAuthMode
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    acsEndpoint: communication.outputs.endpoint
    keyVaultUri: keyVault.outputs.uri
    acsSecretName: usesKeyVault ? acsSecretName : ''
    acsSecretUri: usesKeyVault ? acsSecret.outputs.secretUri : ''
    requestsQueueName: requestsQueueName
    resultsQueueName: resultsQueueName
    resultsContainerName: resultsContainerName
    auditTableName: auditTableName
    auditContainerName: auditContainerName
    auditIndexQueueName: auditIndexQueueName
    jobsQueueName: jobsQueueName
    jobsTableName: jobsTableName
    jobsContainerName: jobsContainerName
    uploadsContainerName: uploadsContainerName
    auditReconcileSeconds: auditReconcileSeconds
    eventSinks: eventSinks
    eventsQueueName: eventsQueueName
    eventsTopicEndpoint: usesEventTopic ? eventTopic.outputs.endpoint : ''
    defaultSender: defaultSender
    allowedSenders: allowedSenders
    defaultRegion: toUpper(defaultRegion)
    maxNumbers: maxNumbers
    maxConcurrency: maxConcurrency
    maxBodyBytes: maxBodyBytes
    timeBudgetSeconds: timeBudgetSeconds
    queueTimeBudgetSeconds: queueTimeBudgetSeconds
    secretCacheSeconds: secretCacheSeconds
    acsApiVersion: acsApiVersion
    auditChecks: auditChecks
    awsSenders: awsSenders
    awsRegion: awsRegion
    awsRoleArn: awsRoleArn
    awsWebIdentityAudience: awsWebIdentityAudience
    awsAccessKeySecretName: awsAccessKeySecretName
    awsPutOptedOutNumberRps: awsPutOptedOutNumberRps
    awsDeleteOptedOutNumberRps: awsDeleteOptedOutNumberRps
    awsDescribeOptedOutNumbersRps: awsDescribeOptedOutNumbersRps
    awsDescribePhoneNumbersRps: awsDescribePhoneNumbersRps
    awsMaxInstances: maximumInstanceCount

    trustedForwarders: trustedForwarders
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    planName: names.plan
    appName: names.functionApp
    location: location
    tags: tags
    identityId: identity.outputs.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    maximumInstanceCount: maximumInstanceCount
    useKeyVaultReferenceIdentity: acsAuthMode == 'key-vault-reference'
    appSettings: appSettings.outputs.settings
    appServiceAuthEnabled: appServiceAuthEnabled
    authClientId: authClientId
    authAllowedApplications: empty(authAllowedApplications) ? [] : split(authAllowedApplications, ',')
  }
  // The host starts as soon as the site exists: grant its data access first, so the
  // first start does not fail on storage, telemetry, the vault or ACS.
  dependsOn: [
    storageAccess
    monitoringAccess
    keyVaultAccess
    communicationAccess
    eventTopicAccess
  ]
}

// End-user keywords: ACS's SMS events reach the RecordEndUserKeyword function through the
// resource's system topic; what cannot be delivered is dead-lettered to storage.
module smsEventsTopic 'modules/sms-events-topic.bicep' = {
  name: 'sms-events-topic'
  params: {
    name: names.smsEventsTopic
    tags: tags
    communicationServiceId: communication.outputs.id
  }
}

module deadLetterAccess 'modules/roles/dead-letter-access.bicep' = {
  name: 'dead-letter-access'
  params: {
    storageAccountName: storage.outputs.name
    containerName: storage.outputs.eventDeadLetterContainerName
    principals: [{ principalId: smsEventsTopic.outputs.principalId, principalType: 'ServicePrincipal' }]
  }
}

module smsEventsSubscriptionToFunction 'modules/sms-events-subscription.bicep' = if (smsEventsSubscription) {
  name: 'sms-events-subscription'
  params: {
    systemTopicName: smsEventsTopic.outputs.name
    functionAppId: functionApp.outputs.id
    storageAccountId: storage.outputs.id
    deadLetterContainerName: storage.outputs.eventDeadLetterContainerName
    eventDeliverySchema: smsEventsSchema
  }
  // The topic's identity must be able to write dead letters before any event is delivered.
  dependsOn: [
    deadLetterAccess
  ]
}

// Outputs become azd environment values. None of them is a secret.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output AZURE_COMMUNICATION_SERVICE_NAME string = communication.outputs.name
output AZURE_COMMUNICATION_ENDPOINT string = communication.outputs.endpoint
output OPTOUT_REQUESTS_QUEUE string = requestsQueueName
output OPTOUT_RESULTS_QUEUE string = resultsQueueName
output OPTOUT_POISON_QUEUE string = '${requestsQueueName}-poison'
output OPTOUT_RESULTS_CONTAINER string = resultsContainerName
output OPTOUT_EVENTS_QUEUE string = eventsQueueName
output OPTOUT_EVENTS_TOPIC_ENDPOINT string = usesEventTopic ? eventTopic.outputs.endpoint : ''
output ACS_AUTH_MODE string = acsAuthMode
output SMS_EVENTS_TOPIC string = smsEventsTopic.outputs.name
output SMS_EVENTS_DEADLETTER_CONTAINER string = eventDeadLetterContainerName
