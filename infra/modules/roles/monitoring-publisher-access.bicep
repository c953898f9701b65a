// Lets the app's identity send telemetry to an Application Insights resource that
// refuses instrumentation-key ingestion (DisableLocalAuth). Scoped to that one resource.

param applicationInsightsName string

@description('Who gets access: [{ principalId, principalType }].')
param principals array

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in principals: {
    name: guid(applicationInsights.id, p.principalId, monitoringMetricsPublisherRoleId)
    scope: applicationInsights
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
      principalId: p.principalId
      principalType: p.principalType
    }
  }
]
