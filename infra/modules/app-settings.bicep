// Every app setting the gateway reads (optouts/config.py, optouts/storage.py), in one
// place. tests/infra checks this file against the code, so a new setting in the code
// without a value here fails the build.
//
// This module deploys nothing: it only computes the settings, which function-app.bicep
// sets on the site in the same request that creates it (no window in which the host
// runs without its storage settings). Nothing here is a secret: in the Key Vault modes
// the settings carry the vault and secret names, or a reference URI, never the value.
//
// Deliberately absent on Flex Consumption: FUNCTIONS_WORKER_RUNTIME,
// FUNCTIONS_EXTENSION_VERSION and WEBSITE_RUN_FROM_PACKAGE, which that plan rejects
// (functionAppConfig carries the runtime and the package location instead).

@description('How the gateway reaches ACS.')
@allowed(['managed-identity', 'key-vault', 'key-vault-reference'])
param acsAuthMode string

@description('Client id of the user-assigned identity the app runs as.')
param identityClientId string

param storageAccountName string
param applicationInsightsConnectionString string

@description('ACS endpoint, https://<name>.communication.azure.com.')
param acsEndpoint string

@description('Key Vault URI, used in key-vault mode.')
param keyVaultUri string

@description('Name of the secret holding the ACS connection string; empty in managed-identity mode.')
param acsSecretName string

@description('Versionless URI of that secret; empty in managed-identity mode.')
param acsSecretUri string

param requestsQueueName string
param resultsQueueName string
param resultsContainerName string
param auditTableName string
param auditContainerName string
param auditIndexQueueName string
param jobsQueueName string
param jobsTableName string
param jobsContainerName string
param uploadsContainerName string
param auditReconcileSeconds int

@description('Where change events go: none, queue, eventgrid, or queue,eventgrid.')
param eventSinks string
param eventsQueueName string
@description('The custom topic\'s endpoint; empty without the eventgrid sink.')
param eventsTopicEndpoint string

param defaultSender string
param allowedSenders string
param defaultRegion string
param maxNumbers int
param maxConcurrency int
param maxBodyBytes int
param timeBudgetSeconds int
param queueTimeBudgetSeconds int
param secretCacheSeconds int
param acsApiVersion string
param auditChecks bool

@description('AWS senders (sender=optOutListName or a bare E.164 sender); empty: no AWS.')
param awsSenders string
param awsRegion string
param awsRoleArn string
param awsWebIdentityAudience string
param awsAccessKeySecretName string
param awsPutOptedOutNumberRps string
param awsDeleteOptedOutNumberRps string
param awsDescribeOptedOutNumbersRps string
param awsDescribePhoneNumbersRps string
@description('Instances that may call AWS at once: each paces itself to 1/awsMaxInstances of the quotas.')
param awsMaxInstances int
@description('IPs or CIDR ranges of the proxies (Front Door, Application Gateway, API Management) whose X-Forwarded-Host/-Proto the gateway believes; empty believes none.')
param trustedForwarders string = ''

// Settings that do not depend on how ACS is reached.
var commonSettings = {
  // Identity-based connection for the Functions host and for optouts/storage.py:
  // no connection string, no account key.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId

  // Entra-authenticated telemetry; the resource refuses the instrumentation key alone.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

  // DefaultAzureCredential picks the user-assigned identity by this id.
  AZURE_CLIENT_ID: identityClientId

  ACS_API_VERSION: acsApiVersion
  // Bearer tokens over plain http are for the local emulator only; pinned off in Azure.
  ACS_ALLOW_INSECURE_BEARER: 'false'
  // Opt-out bodies are personal data: a plain-http ACS endpoint is refused in Azure.
  ACS_ALLOW_INSECURE_HTTP: 'false'

  OPTOUT_DEFAULT_SENDER: defaultSender
  OPTOUT_ALLOWED_SENDERS: allowedSenders
  OPTOUT_DEFAULT_REGION: defaultRegion
  OPTOUT_MAX_NUMBERS: string(maxNumbers)
  OPTOUT_MAX_CONCURRENCY: string(maxConcurrency)
  OPTOUT_MAX_BODY_BYTES: string(maxBodyBytes)
  OPTOUT_TIME_BUDGET_SECONDS: string(timeBudgetSeconds)
  OPTOUT_QUEUE_TIME_BUDGET_SECONDS: string(queueTimeBudgetSeconds)
  OPTOUT_REQUESTS_QUEUE: requestsQueueName
  OPTOUT_RESULTS_QUEUE: resultsQueueName
  OPTOUT_RESULTS_CONTAINER: resultsContainerName
  OPTOUT_AUDIT_TABLE: auditTableName
  OPTOUT_AUDIT_CHECKS: auditChecks ? 'true' : 'false'
  OPTOUT_AUDIT_WRITES: 'true'
  OPTOUT_AUDIT_CONTAINER: auditContainerName
  OPTOUT_AUDIT_INDEX_QUEUE: auditIndexQueueName
  OPTOUT_AUDIT_RECONCILE_SECONDS: string(auditReconcileSeconds)
  // Jobs (docs/jobs.md), with the code's defaults.
  OPTOUT_JOBS_QUEUE: jobsQueueName
  OPTOUT_JOBS_TABLE: jobsTableName
  OPTOUT_JOBS_CONTAINER: jobsContainerName
  OPTOUT_UPLOADS_CONTAINER: uploadsContainerName
  OPTOUT_JOB_MAX_BODY_BYTES: '16777216'
  OPTOUT_JOB_MAX_ROWS: '1000000'
  OPTOUT_JOB_MAX_BLOB_BYTES: '268435456'
  OPTOUT_JOB_ITEM_SIZE: '1000'
  OPTOUT_JOB_REPORT_SAS_MINUTES: '15'
  OPTOUT_JOB_MAX_STREAMED_REPORT_BYTES: '67108864'
  // Change events (docs/change-events.md), sent by the audit indexer: they need the audit trail.
  OPTOUT_EVENTS_SINKS: eventSinks
  OPTOUT_EVENTS_QUEUE: eventsQueueName
  OPTOUT_EVENTS_TOPIC_ENDPOINT: eventsTopicEndpoint
  // WEBSITE_AUTH_ENABLED is not set here: App Service sets it when its authentication runs,
  // and only then does the audit trail treat X-MS-CLIENT-PRINCIPAL-* as verified.

  // AWS End User Messaging SMS (optouts/providers/aws/settings.py). Empty values leave AWS
  // off; AWS_REGION is AWS's own variable, read by the gateway and by boto3.
  OPTOUT_AWS_SENDERS: awsSenders
  AWS_REGION: awsRegion
  OPTOUT_AWS_ROLE_ARN: awsRoleArn
  OPTOUT_AWS_WEB_IDENTITY_AUDIENCE: awsWebIdentityAudience
  OPTOUT_AWS_ACCESS_KEY_SECRET_NAME: awsAccessKeySecretName
  OPTOUT_AWS_KEY_VAULT_URL: keyVaultUri
  OPTOUT_AWS_RPS_PUT_OPTED_OUT_NUMBER: awsPutOptedOutNumberRps
  OPTOUT_AWS_RPS_DELETE_OPTED_OUT_NUMBER: awsDeleteOptedOutNumberRps
  OPTOUT_AWS_RPS_DESCRIBE_OPTED_OUT_NUMBERS: awsDescribeOptedOutNumbersRps
  OPTOUT_AWS_RPS_DESCRIBE_PHONE_NUMBERS: awsDescribePhoneNumbersRps
  OPTOUT_AWS_MAX_INSTANCES: string(awsMaxInstances)
  // The code's defaults, set so that every setting the code reads is visible on the app.
  AWS_DEFAULT_REGION: awsRegion
  OPTOUT_AWS_ROLE_SESSION_NAME: 'sms-optout-gateway'
  OPTOUT_AWS_SESSION_SECONDS: '3600'
  OPTOUT_AWS_MAX_ATTEMPTS: '4'
  OPTOUT_AWS_MAX_CONCURRENCY: '4'
  OPTOUT_AWS_SECRET_CACHE_SECONDS: string(secretCacheSeconds)
  OPTOUT_AWS_LIST_CACHE_SECONDS: '3600'
  // Within host.json's functionTimeout (5 min): a queued AWS request has 4 of them.
  OPTOUT_AWS_QUEUE_TIME_BUDGET_SECONDS: '240'
  OPTOUT_TRUSTED_FORWARDERS: trustedForwarders
}

// Exactly one way to reach ACS per mode; the code picks its mode from which of these
// settings are present (optouts/config.py), so the others must stay unset.
var managedIdentitySettings = {
  ACS_ENDPOINT: acsEndpoint
}

var keyVaultSettings = {
  KEY_VAULT_URL: keyVaultUri
  ACS_CONNECTION_STRING_SECRET_NAME: acsSecretName
  ACS_SECRET_CACHE_SECONDS: string(secretCacheSeconds)
}

var keyVaultReferenceSettings = {
  // Resolved by the platform with the site's keyVaultReferenceIdentity.
  ACS_CONNECTION_STRING: '@Microsoft.KeyVault(SecretUri=${acsSecretUri})'
}

var nonManagedIdentitySettings = acsAuthMode == 'key-vault' ? keyVaultSettings : keyVaultReferenceSettings
var modeSettings = acsAuthMode == 'managed-identity' ? managedIdentitySettings : nonManagedIdentitySettings

output settings object = union(commonSettings, modeSettings)
