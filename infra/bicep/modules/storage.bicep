// Storage account for the Functions host (AzureWebJobsStorage), the Flex Consumption deployment package and the
// pipeline's blobs. Identity-only: shared keys are disabled, so no connection string can work against it.

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Replication SKU.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Blob containers the application uses.')
param containerNames array

@description('Container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Containers (by name) whose blobs are job results/inputs and expire after retentionDays.')
param expiringContainerNames array

@description('Days after the last modification before a job blob is deleted by the lifecycle policy.')
@minValue(1)
param retentionDays int

@description('Days soft-deleted blobs and containers are kept.')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the Flex Consumption app has no VNet integration here and no fixed outbound IPs, so the network must allow it; access is Entra-ID only (allowSharedKeyAccess false), blobs are never public.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public endpoint, identity-only access; add a VNet + private endpoints to close it.
  // checkov:skip=CKV_AZURE_206: job blobs are derived data that expire after jobRetentionDays; LRS is the cost default and the storageSku parameter selects ZRS/GRS/GZRS.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for containerName in concat(containerNames, [deploymentContainerName]): {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// Job results expire: thumbnails, manifests and originals are deleted N days after they were last written.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'expire-job-blobs'
          type: 'Lifecycle'
          definition: {
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: retentionDays
                }
              }
            }
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [for containerName in expiringContainerNames: '${containerName}/']
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    containers
  ]
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
