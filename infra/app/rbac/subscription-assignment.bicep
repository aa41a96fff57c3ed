// Assigns one of snapcopy's custom roles (roles.bicep) to the app's identity on a whole
// subscription. Used only where a parameter names a subscription as the scope, or where
// an action's path is at subscription scope (Compute operation status).
targetScope = 'subscription'

@description('Principal id of the app\'s user-assigned identity.')
param principalId string

@description('GUID (resource name) of the custom role definition to assign.')
param roleDefinitionGuid string

@description('Why the assignment exists (shown in the portal).')
param purpose string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: purpose
  }
}

output id string = assignment.id
