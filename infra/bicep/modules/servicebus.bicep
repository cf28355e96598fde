// Service Bus namespace with one session-enabled queue per priority lane and the (non-session) expansion queue.
// SAS keys are disabled: the app connects with its managed identity only.

@description('Namespace name.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the namespace.')
param tags object = {}

@description('Standard (default, pay per operation) or Premium (dedicated messaging units).')
@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@description('Messaging units when sku is Premium.')
@allowed([
  1
  2
  4
  8
  16
])
param premiumCapacity int = 1

@description('Queues: objects with name, requiresSession, lockDuration, maxDeliveryCount.')
param queues array

@description('Time to live of a message before it is dead-lettered (ISO 8601).')
param defaultMessageTimeToLive string = 'P14D'

@description('Window in which a repeated MessageId is dropped (ISO 8601).')
param duplicateDetectionHistoryTimeWindow string = 'PT10M'

@description('Maximum queue size in megabytes.')
param maxSizeInMegabytes int = 5120

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
    capacity: sku == 'Premium' ? premiumCapacity : null
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queueResources 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [for queue in queues: {
  parent: namespace
  name: queue.name
  properties: {
    requiresSession: queue.requiresSession
    lockDuration: queue.lockDuration
    maxDeliveryCount: queue.maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionHistoryTimeWindow
    defaultMessageTimeToLive: defaultMessageTimeToLive
    maxSizeInMegabytes: maxSizeInMegabytes
    enableBatchedOperations: true
    enablePartitioning: false
  }
}]

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
