// The notification topic (NOTIFY_TOPIC_ENDPOINT; README "Notifications"), deployed when
// main.bicep's `notifications` is true: an Event Grid custom topic that takes CloudEvents
// 1.0. Local (key and SAS) auth is off: only an Entra ID token can publish, and the app's
// identity holds EventGrid Data Sender on this topic alone. Subscribers (a queue, a
// webhook, Logic Apps) add their own event subscriptions.

@description('Name of the custom topic.')
param name string

@description('Region of the topic.')
param location string

@description('Tags for the topic (azd-env-name).')
param tags object

@description('Principal id of the app\'s user-assigned identity (it publishes).')
param appPrincipalId string

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  // the topic's own identity: subscribers can deliver to their queues and hubs by identity, not keys
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_193:The app publishes from a Flex Consumption plan without a virtual network; local auth is off, so only the app's Entra ID token can publish.
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, name, appPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output endpoint string = topic.properties.endpoint
output id string = topic.id
