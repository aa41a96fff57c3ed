// Assigns one of snapcopy's custom roles (roles.bicep) to the app's identity on one
// resource group: the narrowest scope a snapshot source or a copy target can be given as.
targetScope = 'resourceGroup'

@description('Principal id of the app\'s user-assigned identity.')
param principalId string

@description('GUID (resource name) of the custom role definition to assign.')
param roleDefinitionGuid string

@description('Why the assignment exists (shown in the portal).')
param purpose string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}

output id string = assignment.id
