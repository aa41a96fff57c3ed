// The app's one identity: a user-assigned managed identity. It reads the deployment
// package, runs the Functions host against storage, sends telemetry and calls ARM.
// Roles are granted to it in rbac.bicep (storage, App Insights) and roles.bicep plus the
// rbac/ modules (Compute, at the narrowest scopes the parameters allow).

@description('Name of the user-assigned managed identity.')
param name string

@description('Region of the identity (the app\'s region).')
param location string

@description('Tags for every resource (azd-env-name).')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
