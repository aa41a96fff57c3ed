// The event subscription that feeds on_snapshot_written: snapshot writes only, in the
// source scopes if any are set, retried for 24 hours and then dead-lettered to storage.
//
// Event Grid validates an AzureFunction endpoint when the subscription is created: the
// function must exist, so this can only be deployed after `azd deploy` has published the
// code. The azd postdeploy hook (infra/hooks/postdeploy.sh) deploys this file into the
// topic's resource group on every `azd deploy`/`azd up`; main.bicep includes it too when
// deployEventSubscription is true (a later `azd provision`, once the code exists).

@description('Name of the subscription\'s Event Grid system topic (in this resource group).')
param systemTopicName string

@description('Name of this event subscription (one per azd environment on a shared topic).')
@minLength(3)
@maxLength(64)
param eventSubscriptionName string

@description('Resource id of the function app.')
param functionAppId string

@description('Resource id of the storage account holding the dead-letter container.')
param deadLetterStorageAccountId string

@description('Blob container that receives dead-lettered events.')
param deadLetterContainerName string

@description('COPY_SOURCE_SCOPES: comma-separated subscription or resource-group ids; empty for the whole subscription.')
param sourceScopes string = ''

@description('Delivery attempts before an event is dead-lettered (Event Grid allows 1-30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes an event is retried before it is dead-lettered (Event Grid allows at most 1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

// The Event Grid trigger in shared/triggers.py.
var functionName = 'on_snapshot_written'

var scopeList = filter(split(replace(sourceScopes, ' ', ''), ','), scope => !empty(scope))

// Only snapshot writes: every other ResourceWriteSuccess of the subscription is dropped by
// Event Grid, not delivered to (and billed as) a function execution.
var operationFilter = {
  operatorType: 'StringIn'
  key: 'data.operationName'
  values: [
    'Microsoft.Compute/snapshots/write'
  ]
}

// Event subjects are resource ids; Event Grid compares strings case-insensitively, which
// matters because ARM often spells resourcegroups in lower case in events.
var scopeFilter = {
  operatorType: 'StringBeginsWith'
  key: 'subject'
  values: scopeList
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource eventSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: eventSubscriptionName
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
      ]
      advancedFilters: empty(scopeList) ? [operationFilter] : [operationFilter, scopeFilter]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output id string = eventSubscription.id
output name string = eventSubscription.name
