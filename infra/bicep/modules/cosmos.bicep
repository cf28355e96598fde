// Cosmos DB for NoSQL: account (serverless by default), the database and the containers the code uses, and the
// data-plane role assignment for the app's managed identity. Keys are disabled (disableLocalAuth).

@description('Account name.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Serverless (default; pay per RU, no idle cost) or Provisioned (autoscale throughput on the database).')
@allowed([
  'Serverless'
  'Provisioned'
])
param capacityMode string = 'Serverless'

@description('Autoscale maximum RU/s of the database when capacityMode is Provisioned.')
@minValue(1000)
param autoscaleMaxThroughput int = 4000

@description('Database name (COSMOS_DATABASE).')
param databaseName string

@description('Containers: objects with name, partitionKeys (paths; more than one makes a hierarchical key), defaultTtl (-1 = no expiry unless per item, or seconds) and indexingPolicy.')
param containers array

@description('Principal ids granted the Cosmos DB Built-in Data Contributor role on the account.')
param dataContributorPrincipalIds array

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  // checkov:skip=CKV_AZURE_101: the Flex Consumption app reaches Cosmos DB over its public endpoint (no VNet in this template); keys are disabled, so only Entra ID principals with a data-plane role get in.
  // checkov:skip=CKV_AZURE_99: IP filtering cannot name the Flex Consumption app's outbound addresses (not fixed); restriction is by identity (disableLocalAuth) instead.
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: capacityMode == 'Serverless' ? [
      {
        name: 'EnableServerless'
      }
    ] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    enableAutomaticFailover: false
    enableFreeTier: false
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: capacityMode == 'Provisioned' ? {
      autoscaleSettings: {
        maxThroughput: autoscaleMaxThroughput
      }
    } : {}
  }
}

resource containerResources 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [for container in containers: {
  parent: database
  name: container.name
  properties: {
    resource: {
      id: container.name
      partitionKey: {
        paths: container.partitionKeys
        kind: length(container.partitionKeys) > 1 ? 'MultiHash' : 'Hash'
        version: 2
      }
      defaultTtl: container.defaultTtl
      indexingPolicy: container.indexingPolicy
    }
  }
}]

// Built-in role "Cosmos DB Built-in Data Contributor" (data plane; not an Azure RBAC role).
var dataContributorRoleId = '00000000-0000-0000-0000-000000000002'

resource dataContributorAssignments 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = [for principalId in dataContributorPrincipalIds: {
  parent: account
  name: guid(account.id, principalId, dataContributorRoleId)
  properties: {
    principalId: principalId
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    scope: account.id
  }
}]

output name string = account.name
output id string = account.id
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
