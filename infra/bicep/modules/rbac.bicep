// Azure RBAC role assignments, each scoped to the one resource it is needed on (never the resource group).
// The Cosmos DB data-plane assignment lives in cosmos.bicep (sqlRoleAssignments).

@description('Storage account the identity needs for AzureWebJobsStorage, the deployment package and the app blobs/queues.')
param storageAccountName string

@description('Service Bus namespace the identity sends to and receives from.')
param serviceBusNamespaceName string

@description('Application Insights component the identity publishes telemetry to (Entra ID ingestion).')
param applicationInsightsName string

@description('Principal id of the Function App\'s user-assigned identity.')
param appPrincipalId string

@description('Also grant Azure Service Bus Data Owner (needed only to read queue runtime properties - depths and dead-letter counts - through the administration API).')
param grantServiceBusDataOwner bool = false

@description('Optional principal id of a developer (azd: AZURE_PRINCIPAL_ID) given the same data roles for debugging. Empty: none.')
param developerPrincipalId string = ''

@description('Principal type of developerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param developerPrincipalType string = 'User'

// Built-in role definition ids (stable across tenants).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var storageRoles = [
  roles.storageBlobDataOwner // the Functions host manages blob leases/containers for AzureWebJobsStorage
  roles.storageQueueDataContributor
]
var serviceBusRoles = concat([
  roles.serviceBusDataSender
  roles.serviceBusDataReceiver
], grantServiceBusDataOwner ? [
  roles.serviceBusDataOwner
] : [])

// Roles for the optional developer principal: none when developerPrincipalId is empty.
var developerStorageRoles = empty(developerPrincipalId) ? [] : storageRoles
var developerServiceBusRoles = empty(developerPrincipalId) ? [] : serviceBusRoles

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in storageRoles: {
  name: guid(storageAccount.id, appPrincipalId, roleId)
  scope: storageAccount
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
  }
}]

resource appServiceBusRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in serviceBusRoles: {
  name: guid(serviceBus.id, appPrincipalId, roleId)
  scope: serviceBus
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
  }
}]

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

resource devStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in developerStorageRoles: {
  name: guid(storageAccount.id, developerPrincipalId, roleId)
  scope: storageAccount
  properties: {
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
  }
}]

resource devServiceBusRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in developerServiceBusRoles: {
  name: guid(serviceBus.id, developerPrincipalId, roleId)
  scope: serviceBus
  properties: {
    principalId: developerPrincipalId
    principalType: developerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
  }
}]
