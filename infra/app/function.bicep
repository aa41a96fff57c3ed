// The function app on a Flex Consumption plan (FC1), Python 3.11: the version `make test`
// runs on. The deployment package lives in a blob container that the host reads with the
// user-assigned identity; every storage and telemetry setting is identity-based, and no
// key or connection string with a key is set anywhere.

@description('Name of the function app (the azd service `api`).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Region of the plan and the app.')
param location string

@description('Tags for every resource (azd-env-name).')
param tags object

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID and the host\'s storage and telemetry settings).')
param identityClientId string

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights component the host sends telemetry to.')
param applicationInsightsName string

@description('snapcopy\'s own settings (README "Settings") as name/value pairs, set beside the host\'s.')
param snapcopySettings array

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the plan scales out to (40 is the Flex minimum).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption exists only in some regions and is opt-in; snapcopy tolerates a zone outage (Event Grid retries for 24 h, all state is in Table Storage, the timer catches up).
    reserved: true
  }
}

// The Functions host's settings: storage by identity (no AzureWebJobsStorage connection
// string), telemetry by identity. FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION
// are not set: Flex Consumption takes them from functionAppConfig.runtime and rejects them.
var hostSettings = [
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storage.properties.primaryEndpoints.blob
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: storage.properties.primaryEndpoints.queue
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storage.properties.primaryEndpoints.table
  }
  // The App Insights connection string names the component (its ingestion endpoint and
  // instrumentation key); it carries no secret: local auth is disabled on the component,
  // so ingestion needs the Entra ID token named by the authentication string below.
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: applicationInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
]

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222:Public network access stays on: Event Grid delivers to on_snapshot_written and operators call the HTTP API over the app's public HTTPS endpoint, each authenticated with a key (Event Grid's system key, function keys). VNet integration is a later increment.
    // checkov:skip=CKV_AZURE_212:Flex Consumption has no fixed instance count to fail over between: it scales from zero per function. A lost instance costs a retried event (Event Grid retries for 24 h) or one timer tick.
    // checkov:skip=CKV_AZURE_213:The app exposes no health endpoint and Flex Consumption replaces unhealthy instances itself; a health check would be an extra always-polled HTTP function.
    // checkov:skip=CKV_AZURE_17:Client certificates are not required: Event Grid delivers without one, and the API's callers use function keys.
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: concat(snapcopySettings, hostSettings)
    }
  }
}

// azd deploys to Flex Consumption with an Entra ID token (OneDeploy), so the basic-auth
// publishing endpoints are switched off.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
