// What operators see and are told in the portal (README "Monitoring"): the snapcopy
// workbook over Application Insights, an action group (e-mail), one scheduled query rule
// per alert in ../monitoring/alerts.json, and a metric alert on dead-lettered events.
// The workbook and the queries read the metric names shared/telemetry.py emits and the
// function names function_app.py registers (tests/test_monitoring.py checks both, and the
// KQL against the Application Insights schema).

@description('Resource id of the Application Insights component (the queries\' scope).')
param applicationInsightsId string

@description('Resource id of the Event Grid system topic (dead-lettered events).')
param systemTopicId string

@description('Region of the workbook and the query rules.')
param location string

@description('Tags for every resource (azd-env-name).')
param tags object

@description('Suffix of the resources\' names (the deployment\'s resource token).')
param resourceToken string

@description('Who is e-mailed when an alert fires; empty: the alerts fire in the portal only.')
param alertEmail string = ''

var alerts = loadJsonContent('../monitoring/alerts.json')
var emailReceivers = empty(alertEmail) ? [] : [
  {
    name: 'snapcopy-operators'
    emailAddress: alertEmail
    useCommonAlertSchema: true
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-snapcopy-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'snapcopy'
    enabled: true
    emailReceivers: emailReceivers
  }
}

resource queryAlerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for alert in alerts.queries: {
    name: 'snapcopy-${alert.name}-${resourceToken}'
    location: location
    tags: tags
    properties: {
      displayName: 'snapcopy: ${alert.title}'
      description: alert.description
      severity: alert.severity
      enabled: true
      evaluationFrequency: alert.frequency
      windowSize: alert.window
      scopes: [
        applicationInsightsId
      ]
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: alert.aggregation
            metricMeasureColumn: alert.measure
            operator: alert.operator
            threshold: alert.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

resource deadLettered 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'snapcopy-dead-lettered-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Event Grid gave up delivering snapshot events to snapcopy and dead-lettered them: the hourly sweep finds those snapshots; look at why deliveries failed.'
    severity: 2
    enabled: true
    scopes: [
      systemTopicId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'deadLettered'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'snapcopy-workbook', resourceToken)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'snapcopy'
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: loadTextContent('../monitoring/workbook.json')
  }
}

output actionGroupId string = actionGroup.id
output workbookId string = workbook.id
