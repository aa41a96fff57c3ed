// Built-in data-plane roles on the app's own resources, never wider:
//   - the app's identity: the Functions host's storage (blob, queue, table) and snapcopy's
//     state table on the app's storage account; telemetry on the App Insights component;
//   - the Event Grid system topic's identity: dead-lettering into one blob container;
//   - the deploying user (AZURE_PRINCIPAL_ID), if given: the same storage data roles, to run
//     and debug the app locally against the real table (README "Settings").
// No Contributor, no Owner: the app's Compute access is the custom roles in roles.bicep.

@description('Name of the app\'s storage account.')
param storageAccountName string

@description('Blob container Event Grid dead-letters into.')
param deadLetterContainerName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Principal id of the app\'s user-assigned identity.')
param appPrincipalId string

@description('Principal id of the Event Grid system topic\'s system-assigned identity.')
param eventGridPrincipalId string

@description('Principal ids of the other source subscriptions\' system topics (they dead-letter here too).')
param sourceTopicPrincipalIds array = []

@description('Principal id of the deploying user, for local debugging; empty for none.')
param userPrincipalId string = ''

@description('Kind of principal userPrincipalId is (a CI pipeline deploys as a ServicePrincipal).')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param userPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher

// The host's storage roles, as in Azure's Flex Consumption templates: Blob Data Owner (the
// deployment package, timer leases and the schedule monitor), Queue Data Contributor (the
// host's internal queues), Table Data Contributor (snapcopy's state table).
var storageDataRoles = [
  storageBlobDataOwner
  storageQueueDataContributor
  storageTableDataContributor
]
var userStorageDataRoles = empty(userPrincipalId) ? [] : storageDataRoles

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${storageAccountName}/default/${deadLetterContainerName}'
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in storageDataRoles: {
    name: guid(storage.id, appPrincipalId, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      description: 'snapcopy app: Functions host storage and the state table'
    }
  }
]

resource appTelemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'snapcopy app: Entra ID-authenticated telemetry'
  }
}

resource eventGridDeadLetterRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, eventGridPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic: dead-letter undeliverable snapshot events'
  }
}

resource sourceTopicDeadLetterRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for sourceTopicPrincipalId in sourceTopicPrincipalIds: {
    name: guid(deadLetterContainer.id, sourceTopicPrincipalId, storageBlobDataContributor)
    scope: deadLetterContainer
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
      principalId: sourceTopicPrincipalId
      principalType: 'ServicePrincipal'
      description: 'Event Grid system topic of another source subscription: dead-letter undeliverable snapshot events'
    }
  }
]

resource userStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in userStorageDataRoles: {
    name: guid(storage.id, userPrincipalId, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: userPrincipalId
      principalType: userPrincipalType
      description: 'snapcopy developer: local debugging against the deployed storage'
    }
  }
]
