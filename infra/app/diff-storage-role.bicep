// Assigns Storage Blob Data Contributor to the app's identity on one storage account: a
// diff target's account, where the diff method writes page blobs and their snapshots.
// Built-in role, scoped to the account (never its resource group or subscription).
targetScope = 'resourceGroup'

@description('Name of the storage account (in this resource group).')
param accountName string

@description('Principal id of the app\'s user-assigned identity.')
param principalId string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, storageBlobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'snapcopy: the diff method writes page blobs and blob snapshots here'
  }
}

output id string = assignment.id
