// The subscription's Event Grid system topic (topic type Microsoft.Resources.Subscriptions,
// location global), which emits Microsoft.Resources.ResourceWriteSuccess for every write in
// the subscription. A subscription allows only one such topic: when one exists already
// (created by another tool, Defender, or a person), this module reuses it instead of
// creating it, and the caller scopes the module to that topic's resource group.
//
// The topic's system-assigned identity dead-letters undeliverable events into snapcopy's
// storage (rbac.bicep grants it Storage Blob Data Contributor on that one container). A
// reused topic must have a system-assigned identity; the preprovision hook checks it.

@description('Name of the system topic to create, or of the existing one to reuse.')
param name string

@description('true: create the topic here; false: reuse the existing topic of that name here.')
param create bool

@description('Tags for a created topic (azd-env-name). A reused topic is not changed.')
param tags object

resource createdTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (create) {
  name: name
  location: 'global'
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: subscription().id
    topicType: 'Microsoft.Resources.Subscriptions'
  }
}

resource reusedTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (!create) {
  name: name
}

output name string = name
output id string = create ? createdTopic.id : reusedTopic.id
output resourceGroupName string = resourceGroup().name
output principalId string = create ? createdTopic.identity.principalId : reusedTopic.identity.principalId
