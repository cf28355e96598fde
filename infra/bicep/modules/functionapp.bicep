// Flex Consumption plan + Python Function App. All connections are identity-based through the user-assigned
// identity; the deployment package is pulled from a blob container with the same identity.

@description('Function App name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan and the app (the app additionally gets azd-service-name).')
param tags object = {}

@description('azd service name in azure.yaml; azd finds the app to deploy to by this tag.')
param azdServiceName string

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Blob endpoint of the storage account holding the deployment package container.')
param storageBlobEndpoint string

@description('Container holding the deployment package.')
param deploymentContainerName string

@description('Python version (Flex Consumption runtime).')
@allowed([
  '3.10'
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances: objects { name: \'http\' | \'function:<FunctionName>\', instanceCount: n }.')
param alwaysReady array = []

@description('App settings (name -> value). Must not contain keys or connection strings.')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy is available only in some regions and raises the cost floor; a lost zone costs redeliveries (Service Bus keeps the messages), not data, so the default plan is not zone redundant.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the HTTP API is public by design (tenants call it from the internet) and this template has no VNet; put Front Door/APIM in front to restrict it (docs/deploy.md).
  // checkov:skip=CKV_AZURE_17: callers authenticate with tenant API keys (and optionally function keys/APIM); mutual TLS would need client certificates issued to every tenant.
  // checkov:skip=CKV_AZURE_212: Flex Consumption has no per-site minimum instance count; warm capacity is the functionAlwaysReady parameter, and scale to zero is intended.
  // checkov:skip=CKV_AZURE_213: Flex Consumption instances are created per trigger by the scale controller, not kept in a load-balancer pool that health check could evict from; failures surface in Application Insights.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: alwaysReady
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Basic (publishing-credential) auth off for FTP and SCM: deployments use Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
output defaultHostName string = app.properties.defaultHostName
output uri string = 'https://${app.properties.defaultHostName}'
output planName string = plan.name
