// snapcopy on Azure: `azd up` provisions this, deploys the code, then the postdeploy hook
// subscribes the Event Grid function (see app/event-subscription.bicep for why it is last).
//
// Resource group (rg-<env>): user-assigned identity, storage (host storage, deployment
// package, state table, dead letters), Log Analytics + Application Insights, a Flex
// Consumption function app, and, unless one exists, the subscription's Event Grid system
// topic. Subscription level: snapcopy's custom roles and their assignments at the source
// and target scopes.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of the resource group and the app (a region with Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the deploying user (AZURE_PRINCIPAL_ID): storage data roles for local debugging. Empty for none.')
param principalId string = ''

@description('Kind of principal principalId is.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('COPY_TARGET_REGIONS: comma-separated regions copies go to, e.g. westus3,centralus. Required unless copyPolicies (or copyPoliciesJson) is given; never with them.')
param targetRegions string = ''

@description('COPY_POLICIES: replication policies (README, "Replication policies"). When given, targetRegions and targetResourceGroup must be empty.')
param copyPolicies array = []

@description('COPY_POLICIES as JSON text (how the azd environment hands it in); used when copyPolicies is empty.')
param copyPoliciesJson string = ''

@description('PRUNE_SCHEDULE: NCRONTAB (six fields) of the prune_copies retention timer.')
param pruneSchedule string = '0 41 * * * *'

@description('COPY_SOURCE_SCOPES: comma-separated /subscriptions/<id> or /subscriptions/<id>/resourceGroups/<name> ids whose snapshots are copied. Empty: this subscription.')
param sourceScopes string = ''

@description('COPY_TARGET_RESOURCE_GROUP: where copies go, a resource group name (in each source subscription) or a full id. Empty: the source snapshot\'s own resource group. The group must exist.')
param targetResourceGroup string = ''

@description('POLL_SCHEDULE: NCRONTAB (six fields) of the poll_copies timer.')
param pollSchedule string = '0 */1 * * * *'

@description('SWEEP_SCHEDULE: NCRONTAB (six fields) of the sweep_sources reconciliation timer.')
param sweepSchedule string = '0 17 * * * *'

@description('STATE_TABLE_NAME: the table that holds all of snapcopy\'s state.')
param stateTableName string = 'snapcopy'

@description('MAX_COPIES_PER_REGION: copies in flight per target subscription per region.')
@minValue(1)
@maxValue(100)
param maxCopiesPerRegion int = 100

@description('DIFF_STORAGE_ACCOUNT_IDS: comma-separated resource ids of the storage accounts the diff method\'s targets write to (targets[].storage.blobEndpoint); the app gets Storage Blob Data Contributor on each.')
param diffStorageAccountIds string = ''

@description('DIFF_MAX_PARALLEL_RANGES: range copies at once per instance (the diff method).')
@minValue(1)
@maxValue(64)
param diffMaxParallelRanges int = 8

@description('COPY_MAX_START_ATTEMPTS: tries of a refused CopyStart before the job fails.')
@minValue(1)
@maxValue(50)
param maxStartAttempts int = 5

@description('Name of an existing Event Grid system topic of this subscription to reuse (a subscription allows only one). Empty: create one.')
param existingSystemTopicName string = ''

@description('Resource group of existingSystemTopicName.')
param existingSystemTopicResourceGroup string = ''

@description('Also deploy the event subscription here. Leave false for the first `azd up` (the postdeploy hook creates it once the function exists); true is for later provisions.')
param deployEventSubscription bool = false

@description('Event Grid delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Name of the resource group to create. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Create the notification topic (Event Grid custom topic, CloudEvents 1.0) and set NOTIFY_TOPIC_ENDPOINT to it.')
param notifications bool = false

@description('RPO_ALERT_MINUTES: a chain whose newest completed copy is older than this is behind (API, metrics, notifications, alert).')
@minValue(5)
@maxValue(525600)
param rpoAlertMinutes int = 1500

@description('E-mail address the alerts go to; empty: the alerts fire in the portal only.')
param alertEmail string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var functionAppName = 'func-snapcopy-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var deadLetterContainerName = 'eventgrid-deadletter'
var reuseSystemTopic = !empty(existingSystemTopicName)
var systemTopicName = reuseSystemTopic ? existingSystemTopicName : 'evgt-snapcopy-${resourceToken}'
var eventSubscriptionName = 'snapcopy-${resourceToken}'
var resourceGroupNameResolved = !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
var systemTopicResourceGroup = reuseSystemTopic ? existingSystemTopicResourceGroup : resourceGroupNameResolved

// --- RBAC scopes ------------------------------------------------------------------------
// Lower-cased, spaces removed, empty entries dropped. No source scope means this subscription.
var sourceScopeEntries = filter(split(toLower(replace(sourceScopes, ' ', '')), ','), scope => !empty(scope))
var sourceScopeList = empty(sourceScopeEntries) ? [toLower(subscription().id)] : sourceScopeEntries
var targetGroupName = toLower(trim(targetResourceGroup))
// Copies go to: a named group id; a group name in each source scope's subscription; or,
// with no target group, the source snapshot's own group (so the source scopes).
var targetGroupsByName = [for scope in sourceScopeList: '/subscriptions/${split(scope, '/')[2]}/resourcegroups/${targetGroupName}']
var settingsTargetScopes = union(startsWith(targetGroupName, '/') ? [targetGroupName] : (empty(targetGroupName) ? sourceScopeList : targetGroupsByName), [])
// With COPY_POLICIES, copies go where each policy target says: a group id; a group name in
// each source scope's subscription; or, with no resourceGroup, the source's own group.
var policies = !empty(copyPolicies) ? copyPolicies : (empty(trim(copyPoliciesJson)) ? [] : json(copyPoliciesJson))
var policyTargetLists = [for policy in policies: policy.targets]
var policyTargets = flatten(policyTargetLists)
var policyTargetsById = filter(policyTargets, target => startsWith(contains(target, 'resourceGroup') ? string(target.resourceGroup) : '', '/'))
var policyGroupIds = [for target in policyTargetsById: toLower(target.resourceGroup)]
var policyTargetsByName = filter(policyTargets, target => contains(target, 'resourceGroup') && !startsWith(string(target.resourceGroup), '/'))
var policyGroupNames = [for target in policyTargetsByName: toLower(target.resourceGroup)]
// each group name in each source scope's subscription (no nested loops in Bicep: one index over both)
var policyGroupsByName = [for i in range(0, length(policyGroupNames) * length(sourceScopeList)): '/subscriptions/${split(sourceScopeList[i % length(sourceScopeList)], '/')[2]}/resourcegroups/${policyGroupNames[i / length(sourceScopeList)]}']
var policyBesideSource = length(filter(policyTargets, target => !contains(target, 'resourceGroup'))) > 0
var policyTargetScopes = union(policyGroupIds, policyGroupsByName, policyBesideSource ? sourceScopeList : [])
var targetScopeList = empty(policies) ? settingsTargetScopes : policyTargetScopes
// The diff method's source scopes: those of every policy with a diff target (its own
// `sources.scopes`, else COPY_SOURCE_SCOPES): the snapshot access role goes there.
var diffPolicies = filter(policies, policy => length(filter(policy.targets, target => contains(target, 'method') && target.method == 'diff')) > 0)
var diffScopeLists = [for policy in diffPolicies: contains(policy, 'sources') && contains(policy.sources, 'scopes') ? policy.sources.scopes : sourceScopeList]
var diffScopeEntries = flatten(diffScopeLists)
var diffScopesLower = [for scope in diffScopeEntries: toLower(scope)]
var diffSourceScopes = union(diffScopesLower, [])
var diffSubscriptionScopes = filter(diffSourceScopes, scope => length(split(scope, '/')) == 3)
var diffGroupScopes = filter(diffSourceScopes, scope => length(split(scope, '/')) == 5)
var diffSubscriptionEntries = [for scope in diffSourceScopes: '/subscriptions/${split(scope, '/')[2]}']
// "/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Storage/storageAccounts/<a>" splits into 9 parts
var diffStorageAccountList = filter(split(replace(diffStorageAccountIds, ' ', ''), ','), id => !empty(id))
var sourceSubscriptionEntries = [for scope in sourceScopeList: '/subscriptions/${split(scope, '/')[2]}']
var targetSubscriptionEntries = [for scope in targetScopeList: '/subscriptions/${split(scope, '/')[2]}']
var targetSubscriptionList = union(targetSubscriptionEntries, [])
var rbacSubscriptionScopes = union([toLower(subscription().id)], sourceSubscriptionEntries, targetSubscriptionList, diffSubscriptionEntries)
var operationSubscriptions = union(targetSubscriptionList, diffSubscriptionEntries)
var rbacSubscriptionIds = [for scope in rbacSubscriptionScopes: split(scope, '/')[2]]
// "/subscriptions/x" splits into 3 parts, "/subscriptions/x/resourcegroups/y" into 5.
var sourceSubscriptionScopes = filter(sourceScopeList, scope => length(split(scope, '/')) == 3)
var sourceGroupScopes = filter(sourceScopeList, scope => length(split(scope, '/')) == 5)
var targetSubscriptionScopes = filter(targetScopeList, scope => length(split(scope, '/')) == 3)
// Source subscriptions other than this one get their own system topic (README, "Sources
// in several subscriptions"): every subscription COPY_SOURCE_SCOPES names.
var sourceSubscriptionIdList = [for scope in sourceScopeList: split(scope, '/')[2]]
var sourceSubscriptionIds = union(sourceSubscriptionIdList, [])
var otherSourceSubscriptions = filter(sourceSubscriptionIds, id => id != toLower(subscription().subscriptionId))
var sourceEventsGroupName = 'rg-${environmentName}-snapcopy-events'
var sourceTopicPaths = [for id in otherSourceSubscriptions: '${id}/${sourceEventsGroupName}/evgt-snapcopy-${resourceToken}']
var targetGroupScopes = filter(targetScopeList, scope => length(split(scope, '/')) == 5)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupNameResolved
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-snapcopy-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stsnapcopy${take(resourceToken, 12)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    stateTableName: stateTableName
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-snapcopy-${resourceToken}'
    applicationInsightsName: 'appi-snapcopy-${resourceToken}'
    location: location
    tags: tags
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-snapcopy-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    // snapcopy's settings (README "Settings"; shared/config.py validates them at start-up).
    snapcopySettings: [
      {
        name: 'COPY_TARGET_REGIONS'
        value: empty(policies) ? replace(targetRegions, ' ', '') : ''
      }
      {
        name: 'COPY_POLICIES'
        value: empty(policies) ? '' : string(policies)
      }
      {
        name: 'COPY_SOURCE_SCOPES'
        // unset: this subscription, so the hourly sweep knows where to look for missed snapshots
        value: empty(sourceScopeEntries) ? subscription().id : replace(sourceScopes, ' ', '')
      }
      {
        name: 'COPY_TARGET_RESOURCE_GROUP'
        value: empty(policies) ? trim(targetResourceGroup) : ''
      }
      {
        name: 'POLL_SCHEDULE'
        value: pollSchedule
      }
      {
        name: 'SWEEP_SCHEDULE'
        value: sweepSchedule
      }
      {
        name: 'PRUNE_SCHEDULE'
        value: pruneSchedule
      }
      {
        name: 'STATE_TABLE_ENDPOINT'
        value: storage.outputs.tableEndpoint
      }
      {
        name: 'STATE_TABLE_NAME'
        value: storage.outputs.stateTableName
      }
      {
        name: 'ARM_CREDENTIAL'
        value: 'managed-identity'
      }
      {
        name: 'AZURE_CLIENT_ID'
        value: identity.outputs.clientId
      }
      {
        name: 'MAX_COPIES_PER_REGION'
        value: string(maxCopiesPerRegion)
      }
      {
        name: 'COPY_MAX_START_ATTEMPTS'
        value: string(maxStartAttempts)
      }
      {
        name: 'RPO_ALERT_MINUTES'
        value: string(rpoAlertMinutes)
      }
      {
        name: 'NOTIFY_TOPIC_ENDPOINT'
        value: notifications ? notifyTopic.outputs.endpoint : ''
      }
      {
        name: 'DIFF_QUEUE_ENDPOINT'
        value: storage.outputs.queueEndpoint
      }
      {
        name: 'DIFF_MAX_PARALLEL_RANGES'
        value: string(diffMaxParallelRanges)
      }
    ]
  }
}

module notifyTopic 'app/notify-topic.bicep' = if (notifications) {
  name: 'notify-topic'
  scope: rg
  params: {
    name: 'evgt-snapcopy-notify-${resourceToken}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    systemTopicId: systemTopic.outputs.id
    location: location
    tags: tags
    resourceToken: resourceToken
    alertEmail: alertEmail
  }
}

module systemTopic 'app/eventgrid-topic.bicep' = {
  name: 'snapcopy-topic-${resourceToken}'
  scope: resourceGroup(systemTopicResourceGroup)
  params: {
    name: systemTopicName
    create: !reuseSystemTopic
    tags: tags
  }
  dependsOn: [
    rg
  ]
}

module sourceTopics 'app/source-events.bicep' = [
  for id in otherSourceSubscriptions: {
    name: 'snapcopy-events-${uniqueString(id, environmentName)}'
    scope: subscription(id)
    params: {
      resourceGroupName: sourceEventsGroupName
      location: location
      topicName: 'evgt-snapcopy-${resourceToken}'
      tags: tags
    }
  }
]

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    eventGridPrincipalId: systemTopic.outputs.principalId
    sourceTopicPrincipalIds: [for (id, index) in otherSourceSubscriptions: sourceTopics[index].outputs.principalId]
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

// --- Compute access: custom roles at the narrowest scopes -------------------------------
module roles 'app/roles.bicep' = {
  name: 'snapcopy-roles-${resourceToken}'
  params: {
    environmentName: environmentName
    assignableScopes: rbacSubscriptionScopes
  }
}

module sourceReadOnSubscriptions 'app/rbac/subscription-assignment.bicep' = [
  for scope in sourceSubscriptionScopes: {
    name: 'snapcopy-source-${uniqueString(scope, environmentName)}'
    scope: subscription(split(scope, '/')[2])
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionGuid: roles.outputs.sourceReaderRoleGuid
      purpose: 'snapcopy: read snapshots and disks in a source scope'
    }
  }
]

module sourceReadOnGroups 'app/rbac/resource-group-assignment.bicep' = [
  for scope in sourceGroupScopes: {
    name: 'snapcopy-source-${uniqueString(scope, environmentName)}'
    scope: resourceGroup(split(scope, '/')[2], split(scope, '/')[4])
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionGuid: roles.outputs.sourceReaderRoleGuid
      purpose: 'snapcopy: read snapshots and disks in a source scope'
    }
  }
]

module copyWriteOnSubscriptions 'app/rbac/subscription-assignment.bicep' = [
  for scope in targetSubscriptionScopes: {
    name: 'snapcopy-target-${uniqueString(scope, environmentName)}'
    scope: subscription(split(scope, '/')[2])
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionGuid: roles.outputs.copyWriterRoleGuid
      purpose: 'snapcopy: create, read and delete snapshot copies in a target scope'
    }
  }
]

module copyWriteOnGroups 'app/rbac/resource-group-assignment.bicep' = [
  for scope in targetGroupScopes: {
    name: 'snapcopy-target-${uniqueString(scope, environmentName)}'
    scope: resourceGroup(split(scope, '/')[2], split(scope, '/')[4])
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionGuid: roles.outputs.copyWriterRoleGuid
      purpose: 'snapcopy: create, read and delete snapshot copies in a target scope'
    }
  }
]

module operationReadOnSubscriptions 'app/rbac/subscription-assignment.bicep' = [
  for scope in operationSubscriptions: {
    name: 'snapcopy-operations-${uniqueString(scope, environmentName)}'
    scope: subscription(split(scope, '/')[2])
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionGuid: roles.outputs.operationReaderRoleGuid
      purpose: 'snapcopy: read the status of its snapshot deletes and read-access grants'
    }
  }
]

module snapshotAccessOnSubscriptions 'app/rbac/subscription-assignment.bicep' = [
  for scope in diffSubscriptionScopes: {
    name: 'snapcopy-access-${uniqueString(scope, environmentName)}'
    scope: subscription(split(scope, '/')[2])
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionGuid: roles.outputs.snapshotAccessRoleGuid
      purpose: 'snapcopy: grant and revoke read access to the snapshots the diff method copies'
    }
  }
]

module snapshotAccessOnGroups 'app/rbac/resource-group-assignment.bicep' = [
  for scope in diffGroupScopes: {
    name: 'snapcopy-access-${uniqueString(scope, environmentName)}'
    scope: resourceGroup(split(scope, '/')[2], split(scope, '/')[4])
    params: {
      principalId: identity.outputs.principalId
      roleDefinitionGuid: roles.outputs.snapshotAccessRoleGuid
      purpose: 'snapcopy: grant and revoke read access to the snapshots the diff method copies'
    }
  }
]

// --- Event Grid subscription: after the code exists (see the postdeploy hook) ---------
module diffStorageWrite 'app/diff-storage-role.bicep' = [
  for id in diffStorageAccountList: {
    name: 'diff-storage-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      accountName: split(id, '/')[8]
      principalId: identity.outputs.principalId
    }
  }
]

module eventSubscription 'app/event-subscription.bicep' = if (deployEventSubscription) {
  name: 'snapcopy-events-${resourceToken}'
  scope: resourceGroup(systemTopicResourceGroup)
  params: {
    systemTopicName: systemTopic.outputs.name
    eventSubscriptionName: eventSubscriptionName
    functionAppId: functionApp.outputs.id
    deadLetterStorageAccountId: storage.outputs.id
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    sourceScopes: sourceScopes
    maxDeliveryAttempts: maxDeliveryAttempts
  }
  dependsOn: [
    rg
    rbac
  ]
}

// --- Outputs: azd stores them in the environment; the hooks read them ------------------
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.id
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_ACCOUNT_ID string = storage.outputs.id
output STATE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output STATE_TABLE_NAME string = storage.outputs.stateTableName
output EVENTGRID_SYSTEM_TOPIC_NAME string = systemTopic.outputs.name
output EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP string = systemTopic.outputs.resourceGroupName
output EVENTGRID_SYSTEM_TOPIC_REUSED bool = reuseSystemTopic
output EVENTGRID_SUBSCRIPTION_NAME string = eventSubscriptionName
// the other source subscriptions' topics, as <subscription>/<resource group>/<topic>, comma-separated
output EVENTGRID_SOURCE_TOPICS string = join(sourceTopicPaths, ',')
output EVENTGRID_DEADLETTER_CONTAINER string = storage.outputs.deadLetterContainerName
output EVENTGRID_MAX_DELIVERY_ATTEMPTS int = maxDeliveryAttempts
output SNAPCOPY_ROLE_DEFINITION_IDS string = roles.outputs.roleDefinitionIds
output SNAPCOPY_RBAC_SUBSCRIPTIONS string = join(rbacSubscriptionIds, ',')
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output NOTIFY_TOPIC_ENDPOINT string = notifications ? notifyTopic.outputs.endpoint : ''
output SNAPCOPY_WORKBOOK_ID string = alerts.outputs.workbookId
