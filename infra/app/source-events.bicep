// Event Grid for one more source subscription: a resource group there holding that
// subscription's system topic (a subscription allows one), so snapshot writes in it reach
// on_snapshot_written. The function app stays in the deployment subscription; the
// postdeploy hook subscribes the function to this topic once the code exists, and
// main.bicep lets this topic's identity dead-letter into snapcopy's storage.
//
// The subscription must not have a system topic already (Azure refuses a second one);
// the deployment subscription's topic may be reused instead (main.bicep).
targetScope = 'subscription'

@description('Resource group to create in the source subscription for the topic.')
param resourceGroupName string

@description('Location of that resource group (the topic itself is global).')
param location string

@description('Name of the system topic to create.')
param topicName string

@description('Tags (azd-env-name).')
param tags object

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module topic 'eventgrid-topic.bicep' = {
  name: 'snapcopy-topic-${uniqueString(subscription().id, topicName)}'
  scope: group
  params: {
    name: topicName
    create: true
    tags: tags
  }
}

output principalId string = topic.outputs.principalId
