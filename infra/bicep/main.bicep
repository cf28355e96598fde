// imagepipe: serverless image-processing pipeline on Azure Functions (Flex Consumption, Python).
// Deployed by `azd up` (azure.yaml at the repo root points here). Subscription scope, like the azd Functions
// templates: it creates the resource group, then everything in it through local modules.
//
// The names below (queues, containers, app settings) are the ones shared/config.py uses;
// tests/infra/test_drift.py fails when the two disagree.
targetScope = 'subscription'

// --- environment -------------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('azd environment name; hashed into every resource name.')
param environmentName string

@minLength(1)
@description('Region for all resources (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of the developer running azd (AZURE_PRINCIPAL_ID); given the same data roles for debugging. Empty: none.')
param principalId string = ''

@description('Principal type of principalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

// --- Function App (Flex Consumption) -----------------------------------------------------------------------------

@description('Memory per instance in MB (2048 is about one vCPU, 4096 about two).')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Most instances the app scales out to: caps the load on Cosmos DB and on the image hosts.')
@minValue(1)
@maxValue(1000)
param functionMaximumInstanceCount int = 40

@description('Always-ready instances, e.g. [{"name": "http", "instanceCount": 1}] or {"name": "function:<name>", ...}. Empty: scale to zero.')
param functionAlwaysReady array = []

@description('Python worker processes per instance (image work is CPU-bound: processes, not threads).')
@minValue(1)
@maxValue(10)
param workerProcessCount int = 2

// --- pipeline tuning (app settings) ------------------------------------------------------------------------------

@description('Images per chunk message (CHUNK_SIZE).')
@minValue(1)
@maxValue(5000)
param chunkSize int = 500

@description('Per-job concurrency cap (session shards) per tier (TIER_JOB_CONCURRENCY).')
param tierJobConcurrency string = 'new=4,enterprise=8,free=2'

@description('Tier to lane mapping (TIER_LANES).')
param tierLanes string = 'new=high,enterprise=standard,free=bulk'

@description('API requests per second per tenant, by tier; 0 = no limit (TIER_API_RATE).')
param tierApiRate string = 'new=10,enterprise=50,free=2'

@description('API burst (token bucket size) per tenant, by tier (TIER_API_BURST).')
param tierApiBurst string = 'new=30,enterprise=100,free=10'

@description('Most unfinished jobs per tenant, by tier; 0 = no limit (TIER_MAX_ACTIVE_JOBS).')
param tierMaxActiveJobs string = 'new=10,enterprise=100,free=3'

@description('Most images submitted per tenant per UTC day, by tier; 0 = no limit (TIER_MAX_IMAGES_PER_DAY).')
param tierMaxImagesPerDay string = 'new=100000,enterprise=10000000,free=10000'

@description('NCRONTAB schedule of the status roll-up timer (STATUS_TIMER_SCHEDULE). Every run is billed: see docs/deploy.md.')
param statusTimerSchedule string = '*/5 * * * * *'

@description('Send OpenTelemetry traces and metrics to Application Insights (OTEL_ENABLED).')
param otelEnabled bool = true

@description('SHA-256 (64 hex digits) of the operator key that opens the dashboard\'s operator view and GET /api/operator/overview (ADMIN_API_KEY_SHA256). A digest, not the key: no secret in the app settings. Empty: the operator view is disabled.')
param adminApiKeySha256 string = ''

@description('Accept only Entra ID (managed identity) telemetry in Application Insights. The Python exporter must then be given the identity as its credential.')
param applicationInsightsDisableLocalAuth bool = true

// --- data services -----------------------------------------------------------------------------------------------

@description('Service Bus tier: Standard (pay per operation) or Premium (dedicated messaging units).')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Messaging units when serviceBusSku is Premium.')
@allowed([
  1
  2
  4
  8
  16
])
param serviceBusPremiumCapacity int = 1

@description('Also grant the app Azure Service Bus Data Owner: the status timer reads lane depths and dead-letter counts through the administration API (get_queue_runtime_properties), which needs Manage rights. False leaves only Data Sender + Data Receiver.')
param serviceBusQueueMetricsAccess bool = true

@description('Cosmos DB capacity mode: Serverless (no idle cost) or Provisioned (autoscale on the database).')
@allowed([
  'Serverless'
  'Provisioned'
])
param cosmosCapacityMode string = 'Serverless'

@description('Autoscale maximum RU/s when cosmosCapacityMode is Provisioned.')
@minValue(1000)
param cosmosAutoscaleMaxThroughput int = 4000

@description('Storage replication.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_LRS'

@description('Days job results live: blobs in the job containers are deleted this long after their last write, and job/dedup documents expire (Cosmos TTL) after the same time.')
@minValue(1)
@maxValue(3650)
param jobRetentionDays int = 30

@description('Days Log Analytics keeps logs and telemetry.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// --- names -------------------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}'
var cosmosDatabaseName = 'imagepipe'

// --- what the code uses (names from shared/config.py) ------------------------------------------------------------

// Service Bus queues: the expansion and job-finish queues (no sessions), and per lane one session-enabled queue
// (Lane.queue_name, jobs of several chunks) and one express queue without sessions (Lane.express_queue_name).
// lockDuration: the host renews locks (host.json maxAutoLockRenewalDuration = functionTimeout), so one minute
// bounds how long a crashed worker holds a session before another instance takes it over.
var serviceBusQueues = [
  {
    name: 'jobs-expand'
    lane: ''
    requiresSession: false
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
  {
    name: 'jobs-finish'
    lane: ''
    requiresSession: false
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
  {
    name: 'chunks-high'
    lane: 'high'
    requiresSession: true
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
  {
    name: 'express-high'
    lane: 'high'
    requiresSession: false
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
  {
    name: 'chunks-standard'
    lane: 'standard'
    requiresSession: true
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
  {
    name: 'express-standard'
    lane: 'standard'
    requiresSession: false
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
  {
    name: 'chunks-bulk'
    lane: 'bulk'
    requiresSession: true
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
  {
    name: 'express-bulk'
    lane: 'bulk'
    requiresSession: false
    lockDuration: 'PT1M'
    maxDeliveryCount: 5
  }
]

// Blob containers (ALL_CONTAINERS); all of them hold per-job data and expire after jobRetentionDays.
var blobContainerNames = [
  'originals'
  'thumbnails'
  'manifests'
  'exports'
]

var jobTtlSeconds = jobRetentionDays * 86400

// jobs holds job, chunk, expansion, dead-letter and image-result documents (partition /jobId). Queries filter on
// type, jobId, state, active, chunk, ok, finished_epoch and order by index: everything stays indexed except the large
// subtrees no query touches (image results, thumbnails, bitmaps, dead-lettered message bodies), which keeps every
// upsert cheap. tests/infra/test_drift.py fails if a query in shared/ filters or sorts on an excluded path.
var jobsIndexingPolicy = {
  indexingMode: 'consistent'
  automatic: true
  includedPaths: [
    {
      path: '/*'
    }
  ]
  excludedPaths: [
    {
      path: '/"_etag"/?'
    }
    {
      path: '/result/*'
    }
    {
      path: '/thumbnails/*'
    }
    {
      path: '/duplicate_of/*'
    }
    {
      path: '/members/*'
    }
    {
      path: '/seen/*'
    }
    {
      path: '/running/*'
    }
    {
      path: '/dead_lettered/*'
    }
    {
      path: '/finished_chunks/?'
    }
    {
      path: '/error_codes/*'
    }
    {
      path: '/finished_error_codes/*'
    }
    {
      path: '/options/*'
    }
    {
      path: '/ref/?'
    }
    {
      path: '/body/?'
    }
    {
      path: '/error/*'
    }
  ]
}

var defaultIndexingPolicy = {
  indexingMode: 'consistent'
  automatic: true
  includedPaths: [
    {
      path: '/*'
    }
  ]
  excludedPaths: [
    {
      path: '/"_etag"/?'
    }
  ]
}

// Cosmos containers (COSMOS_CONTAINERS) and partition keys. Tenants never expire.
var cosmosContainers = [
  {
    name: 'jobs'
    // Hierarchical: by job, then by bucket (job-wide documents in 0, image results in buckets of a million), so
    // no logical partition of a 10-million-image job nears 20 GB (IMAGES_PER_BUCKET in shared/config.py).
    partitionKeys: [
      '/jobId'
      '/bucket'
    ]
    defaultTtl: jobTtlSeconds
    indexingPolicy: jobsIndexingPolicy
  }
  {
    // Tenants never expire; a job's entry in its tenant's list carries a per-item ttl (JOB_RETENTION_SECONDS).
    name: 'tenants'
    partitionKeys: [
      '/tenantId'
    ]
    defaultTtl: -1
    indexingPolicy: defaultIndexingPolicy
  }
  {
    name: 'dedup'
    partitionKeys: [
      '/tenantId'
    ]
    defaultTtl: jobTtlSeconds
    indexingPolicy: defaultIndexingPolicy
  }
  {
    // Shared rate-limit buckets (per tenant, per image host) and quota usage: one small document per key, read and
    // written by point operations only. Buckets carry a per-item ttl; usage documents never expire.
    name: 'limits'
    partitionKeys: [
      '/key'
    ]
    defaultTtl: -1
    indexingPolicy: defaultIndexingPolicy
  }
]

// --- resources ---------------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
    disableLocalAuth: applicationInsightsDisableLocalAuth
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSku
    containerNames: blobContainerNames
    deploymentContainerName: deploymentContainerName
    expiringContainerNames: blobContainerNames
    retentionDays: jobRetentionDays
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-${resourceToken}'
    location: location
    tags: tags
    sku: serviceBusSku
    premiumCapacity: serviceBusPremiumCapacity
    queues: serviceBusQueues
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: 'cosmos-${resourceToken}'
    location: location
    tags: tags
    capacityMode: cosmosCapacityMode
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
    databaseName: cosmosDatabaseName
    containers: cosmosContainers
    dataContributorPrincipalIds: concat([
      identity.outputs.principalId
    ], empty(principalId) ? [] : [
      principalId
    ])
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    grantServiceBusDataOwner: serviceBusQueueMetricsAccess
    developerPrincipalId: principalId
    developerPrincipalType: principalType
  }
}

// Every setting in local.settings.example.json, in its cloud form: identity-based connections through the
// user-assigned identity, no keys, no connection strings. Local-only settings (COSMOS_KEY,
// COSMOS_EMULATOR_INSECURE_TLS, SERVICEBUS_ADMIN_ENDPOINT, FETCH_ALLOW_LOOPBACK_FOR_TESTS) are deliberately absent,
// and FUNCTIONS_WORKER_RUNTIME is functionAppConfig.runtime on Flex Consumption.
var appSettings = {
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
  AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identity.outputs.clientId
  COSMOS_ENDPOINT: cosmos.outputs.endpoint
  COSMOS_CLIENT_ID: identity.outputs.clientId
  COSMOS_DATABASE: cosmosDatabaseName
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  OTEL_ENABLED: otelEnabled ? 'true' : 'false'
  ADMIN_API_KEY_SHA256: adminApiKeySha256
  FUNCTIONS_WORKER_PROCESS_COUNT: string(workerProcessCount)
  CHUNK_SIZE: string(chunkSize)
  MAX_INLINE_IMAGES: '10000'
  MAX_MANIFEST_IMAGES: '10000000'
  EXPAND_BATCH_CHUNKS: '200'
  TIER_JOB_CONCURRENCY: tierJobConcurrency
  TIER_LANES: tierLanes
  STATUS_TIMER_SCHEDULE: statusTimerSchedule
  CALLBACK_MAX_ATTEMPTS: '5'
  STATUS_ROLLUP_CONCURRENCY: '8'
  STATUS_ROLLUP_MAX_JOBS: '2000'
  REPLAY_BATCH_CHUNKS: '500'
  JOB_RETENTION_SECONDS: string(jobTtlSeconds)
  TIER_API_RATE: tierApiRate
  TIER_API_BURST: tierApiBurst
  TIER_MAX_ACTIVE_JOBS: tierMaxActiveJobs
  TIER_MAX_IMAGES_PER_DAY: tierMaxImagesPerDay
  FETCH_MAX_BYTES: '52428800'
  FETCH_CONNECT_TIMEOUT_SECONDS: '5'
  FETCH_READ_TIMEOUT_SECONDS: '20'
  FETCH_MAX_REDIRECTS: '5'
  FETCH_HOST_CONCURRENCY: '4'
  FETCH_HOST_RATE_PER_SECOND: '50'
  FETCH_HOST_BURST: '50'
  FETCH_HOST_RATE_LEASE: '10'
  FETCH_MAX_ATTEMPTS: '4'
  FETCH_RETRY_BASE_SECONDS: '0.5'
  FETCH_RETRY_MAX_DELAY_SECONDS: '10'
  THUMBNAIL_SIZES: '150,300,600'
  IMAGE_MAX_BYTES: '52428800'
  IMAGE_MAX_PIXELS: '100000000'
  IMAGE_TIME_BUDGET_SECONDS: '20'
  CHUNK_TIME_BUDGET_SECONDS: '240'
  UPLOAD_URL_TTL_SECONDS: '3600'
  DOWNLOAD_URL_TTL_SECONDS: '900'
  MAX_MANIFEST_BYTES: '67108864'
  // The host refuses a larger request body with 413 before reading it: the largest body is an image (IMAGE_MAX_BYTES)
  // or a manifest (MAX_MANIFEST_BYTES) sent to POST /api/images or /api/manifests.
  FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '67108864'
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    azdServiceName: 'api'
    identityId: identity.outputs.resourceId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    pythonVersion: '3.11'
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionMaximumInstanceCount
    alwaysReady: functionAlwaysReady
    appSettings: appSettings
  }
  dependsOn: [
    rbac
  ]
}

// --- outputs (azd stores them in .azure/<env>/.env) --------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.uri
output AZURE_USER_ASSIGNED_IDENTITY_NAME string = identity.outputs.name
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_SERVICEBUS_NAMESPACE string = serviceBus.outputs.name
output AZURE_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output AZURE_COSMOS_ACCOUNT_NAME string = cosmos.outputs.name
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmosDatabaseName
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_NAME string = monitoring.outputs.logAnalyticsName
