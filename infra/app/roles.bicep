// snapcopy's custom roles: only the Compute actions the code performs (shared/arm.py), split
// by where they are needed so that each can be assigned at the narrowest scope.
//
//   source reader      -> every source scope (COPY_SOURCE_SCOPES, or the subscription)
//   copy writer        -> every target scope (where copies go)
//   operation reader   -> the subscription of every target scope (LRO status lives there),
//                         and of every source scope a diff policy reads
//   snapshot access    -> the source scopes of the policies whose targets use the diff method
//
// No wildcard, no Microsoft.Authorization, no Microsoft.Resources: nothing here lets the app
// grant itself more, read anything but snapshots and disks, or touch a disk.
targetScope = 'subscription'

@description('azd environment name: makes role names and ids unique per environment.')
param environmentName string

@description('Scopes the roles may be assigned at (subscriptions and resource groups).')
param assignableScopes array

var suffix = '${environmentName}-${uniqueString(subscription().id, environmentName)}'

// Where snapshots are taken: reads only.
var sourceReaderActions = [
  // GET a snapshot (event path, retry checks), LIST a resource group's snapshots (every
  // chain's "know every older snapshot" listing) and LIST the subscription's snapshots
  // (POST /api/copies {sourceDiskId} backfill). CopyStart's linked access check also reads
  // the source snapshot with the caller's identity.
  'Microsoft.Compute/snapshots/read'
  // GET the source disk (ArmCompute.disk_exists: a backfill request for a disk with no
  // snapshots answers 404 or 422 depending on whether the disk exists).
  'Microsoft.Compute/disks/read'
]

// Where copies go: create, read, delete snapshots.
var copyWriterActions = [
  // The timer LISTs each target resource group to read completionPercent and
  // copyCompletionError, and GETs a target to confirm an unconfirmed start.
  'Microsoft.Compute/snapshots/read'
  // PUT the target snapshot with createOption CopyStart (ArmCompute.start_copy).
  'Microsoft.Compute/snapshots/write'
  // DELETE the failed target of a copy retried through POST /api/copies/{id}/retry
  // (ArmCompute.delete_snapshot). snapcopy never deletes a source snapshot.
  'Microsoft.Compute/snapshots/delete'
]

// The DELETE above is a long-running operation: the SDK polls its Azure-AsyncOperation URL,
// /subscriptions/{id}/providers/Microsoft.Compute/locations/{region}/DiskOperations/{op}.
// That path is at subscription scope, so this action cannot live in the copy writer role
// when that role is assigned on a resource group. It reveals operation status only.
var operationReaderActions = [
  'Microsoft.Compute/locations/DiskOperations/read'
]

// The diff method reads a snapshot's pages through a SAS: granting read access (a SAS for a
// few hours) and revoking it when the increment is done (ArmCompute.grant_read and
// revoke_read). Both are long-running: their status is read with the operation reader role.
var snapshotAccessActions = [
  'Microsoft.Compute/snapshots/beginGetAccess/action'
  'Microsoft.Compute/snapshots/endGetAccess/action'
]
// A snapshot with dataAccessAuthMode AzureActiveDirectory also wants an Entra token on the
// reads through its SAS (the data action of "Data Operator for Managed Disks", reads only).
var snapshotAccessDataActions = [
  'Microsoft.Compute/snapshots/download/action'
]

resource sourceReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'snapcopy-source-reader')
  properties: {
    roleName: 'snapcopy source reader (${suffix})'
    description: 'Reads managed-disk snapshots and disks where snapcopy finds sources.'
    type: 'CustomRole'
    permissions: [
      {
        actions: sourceReaderActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource copyWriter 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'snapcopy-copy-writer')
  properties: {
    roleName: 'snapcopy copy writer (${suffix})'
    description: 'Creates (CopyStart), reads and deletes snapshots where snapcopy puts copies.'
    type: 'CustomRole'
    permissions: [
      {
        actions: copyWriterActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource operationReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'snapcopy-operation-reader')
  properties: {
    roleName: 'snapcopy disk operation reader (${suffix})'
    description: 'Reads the status of Compute disk and snapshot operations (long-running delete).'
    type: 'CustomRole'
    permissions: [
      {
        actions: operationReaderActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

resource snapshotAccess 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'snapcopy-snapshot-access')
  properties: {
    roleName: 'snapcopy snapshot access (${suffix})'
    description: 'Grants and revokes read access (a SAS) to snapshots the diff copy method reads, and reads through it.'
    type: 'CustomRole'
    permissions: [
      {
        actions: snapshotAccessActions
        notActions: []
        dataActions: snapshotAccessDataActions
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

// The roles' GUIDs (their resource names): assignments build the full id in their own
// subscription with subscriptionResourceId().
output sourceReaderRoleGuid string = sourceReader.name
output copyWriterRoleGuid string = copyWriter.name
output operationReaderRoleGuid string = operationReader.name
output snapshotAccessRoleGuid string = snapshotAccess.name
output roleDefinitionIds string = join([sourceReader.id, copyWriter.id, operationReader.id, snapshotAccess.id], ',')
