"""The portal side of "tell people": the workbook's and the alerts' KQL analysed by
Microsoft's Kusto language service against Application Insights' tables, every metric
and dimension they name emitted by shared/telemetry.py, every function they name
registered by function_app.py; and the topic, its role, the workbook and the alert rules
in the templates."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.ids import ResourceId
from shared.model import ChainKey, CopyState, Job
from shared.notices import NoticeType, announce
from shared.telemetry import NAMES, dimensions
from tests.test_infra import APP, INFRA, ROOT, accessor, body, function_names, module_calls, only, parsed, resources

pytestmark = pytest.mark.slow  # node and pycep

__all__ = ["function_names"]  # the fixture, from test_infra

MONITORING = INFRA / "monitoring"
# Application Insights' tables as the queries see them (the columns these queries may use)
COMMON = "timestamp:datetime, itemType:string, customDimensions:dynamic, operation_Name:string, operation_Id:string, cloud_RoleName:string, cloud_RoleInstance:string, appName:string"  # noqa: E501
TABLES = {
    "customMetrics": f"({COMMON}, name:string, value:real, valueCount:int, valueSum:real, valueMin:real, valueMax:real, valueStdDev:real)",  # noqa: E501
    "requests": f"({COMMON}, id:string, name:string, url:string, success:bool, resultCode:string, duration:real, performanceBucket:string, itemCount:int)",  # noqa: E501
    "traces": f"({COMMON}, message:string, severityLevel:int)",
    "customEvents": f"({COMMON}, name:string, itemCount:int)",
    "exceptions": f"({COMMON}, type:string, outerMessage:string, problemId:string, severityLevel:int)",
}
# the dimensions shared/telemetry.py puts on its metrics and its transition events
DIMENSIONS = {"target_region", "error_code", "family", "source_disk", "subscription", "method", "status_class"}
EVENT_DIMENSIONS = set(
    dimensions(
        announce(
            Job(
                ChainKey("f", "r"),
                ResourceId("s", "g", "snapshots", "n"),
                datetime.now(UTC),
                ResourceId("s", "g", "snapshots", "t"),
                state=CopyState.SKIPPED,
            )
        )[1][0]
    )
)


def unquoted(value: Any) -> Any:
    return value.strip("'") if isinstance(value, str) else value


def workbook_queries() -> dict[str, str]:
    workbook = json.loads((MONITORING / "workbook.json").read_text())
    return {item["name"]: item["content"]["query"] for item in workbook["items"] if item["type"] == 3}


def alert_queries() -> dict[str, dict[str, Any]]:
    return {alert["name"]: alert for alert in json.loads((MONITORING / "alerts.json").read_text())["queries"]}


def analyse(queries: list[str]) -> list[list[dict[str, Any]]]:
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "kql_check.js")],
        input=json.dumps({"tables": TABLES, "queries": queries}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    return list(json.loads(result.stdout))


def test_the_analyser_catches_what_it_must():
    found = analyse(["customMetrics | where nam == 1", "requests | summarize count() by sucess", "customMetrics |"])
    assert all(any(d["severity"] == "Error" for d in diagnostics) for diagnostics in found)


def test_every_query_of_the_workbook_and_the_alerts_is_valid_kql_over_application_insights():
    queries = {**workbook_queries(), **{name: alert["query"] for name, alert in alert_queries().items()}}
    assert len(queries) >= 12
    for (name, query), diagnostics in zip(queries.items(), analyse(list(queries.values())), strict=True):
        assert [d for d in diagnostics if d["severity"] in ("Error", "Warning")] == [], f"{name}: {query}"


def test_the_queries_name_only_metrics_dimensions_and_functions_the_code_emits(function_names: dict[str, str]):
    texts = [*workbook_queries().values(), *(alert["query"] for alert in alert_queries().values())]
    metrics = {name for text in texts for name in re.findall(r'"(snapcopy\.[a-z_.]+)"', text)}
    assert metrics and metrics <= set(NAMES.values()), metrics - set(NAMES.values())
    # the ones an operator needs: copies, failures, RPO, in flight against the cap
    wanted = {"started", "completed", "failed", "skipped", "rpo", "worst_rpo", "in_flight", "duration", "handoff"}
    assert {NAMES[key] for key in wanted} <= metrics
    found = {name for text in texts for name in re.findall(r"customDimensions\.([A-Za-z_]+)", text)}
    assert found and found <= DIMENSIONS | EVENT_DIMENSIONS, found - DIMENSIONS - EVENT_DIMENSIONS
    events = {name for text in texts for name in re.findall(r'"(Snapcopy\.[A-Za-z]+)"', text)}
    assert events and events <= {kind.value for kind in NoticeType}
    functions = {name for text in texts for name in re.findall(r'"([a-z]+_[a-z_]+)"', text)}
    assert functions and functions <= set(function_names), functions - set(function_names)
    assert "poll_copies" in alert_queries()["poll-not-running"]["query"]


def test_the_alerts_cover_failures_rpo_a_stopped_poll_dead_letters_and_failing_runs():
    alerts = alert_queries()
    assert set(alerts) == {"copy-failed", "rpo-breached", "poll-not-running", "invocations-failing"}
    assert alerts["poll-not-running"]["window"] == "PT10M" and alerts["poll-not-running"]["operator"] == "LessThan"
    for alert in alerts.values():
        assert alert["measure"] in alert["query"] and alert["aggregation"] in ("Total", "Maximum")
        assert alert["description"] and alert["severity"] in range(5)
    rules = resources(APP / "alerts.bicep", "Microsoft.Insights/scheduledQueryRules")
    rule = body(rules["queryAlerts"])
    criterion = rule["properties"]["criteria"]["allOf"][0]
    assert accessor(criterion["query"]) == "alert.query"
    assert accessor(criterion["metricMeasureColumn"]) == "alert.measure"
    assert [accessor(group) for group in rule["properties"]["actions"]["actionGroups"]] == ["actionGroup.id"]
    assert rule["properties"]["scopes"] == ["applicationInsightsId"]
    dead = only(APP / "alerts.bicep", "Microsoft.Insights/metricAlerts")
    (metric,) = dead["properties"]["criteria"]["allOf"]
    assert unquoted(metric["metricName"]) == "DeadLetteredCount" and dead["properties"]["scopes"] == ["systemTopicId"]
    group = only(APP / "alerts.bicep", "Microsoft.Insights/actionGroups")
    assert group["properties"]["emailReceivers"] == "emailReceivers"
    (call,) = module_calls("app/alerts.bicep")
    assert call["params"]["alertEmail"] == "alertEmail"
    assert accessor(call["params"]["systemTopicId"]) == "systemTopic.outputs.id"
    readme = (ROOT / "README.md").read_text()
    for alert in alerts.values():
        assert f"snapcopy: {alert['title']}" in readme, f"README has no entry for the alert '{alert['title']}'"
    assert "DeadLetteredCount" in readme


def test_the_workbook_is_deployed_over_application_insights_from_the_file_in_the_repository():
    workbook = only(APP / "alerts.bicep", "Microsoft.Insights/workbooks")
    assert "../monitoring/workbook.json" in json.dumps(workbook["properties"]["serializedData"])
    assert workbook["properties"]["sourceId"] == "applicationInsightsId"
    document = json.loads((MONITORING / "workbook.json").read_text())
    assert document["version"] == "Notebook/1.0"
    titles = [item["content"]["title"] for item in document["items"] if item["type"] == 3]
    for topic in ("RPO", "per hour", "Failures by code", "in flight", "Function runs"):
        assert any(topic in title for title in titles), topic


def test_the_notification_topic_takes_cloudevents_from_the_apps_identity_only():
    topic = only(APP / "notify-topic.bicep", "Microsoft.EventGrid/topics")
    assert unquoted(topic["properties"]["inputSchema"]) == "CloudEventSchemaV1_0"
    assert topic["properties"]["disableLocalAuth"] is True
    (assignment,) = resources(APP / "notify-topic.bicep", "Microsoft.Authorization/roleAssignments").values()
    grant = body(assignment)
    assert grant["scope"] == "topic" and grant["properties"]["principalId"] == "appPrincipalId"
    assert "eventGridDataSender" in json.dumps(grant["properties"]["roleDefinitionId"])
    assert "d5a91429-5739-47e2-a06b-3470a27159e7" in (APP / "notify-topic.bicep").read_text()  # EventGrid Data Sender
    main = parsed(INFRA / "main.bicep")
    (module,) = [m for m in main["modules"].values() if m["detail"]["path"].endswith("notify-topic.bicep")]
    assert "condition" in module["config"]  # only when notifications are on
    settings = {
        entry["name"]: entry["value"] for entry in module_calls("app/function.bicep")[0]["params"]["snapcopySettings"]
    }
    endpoint = settings["NOTIFY_TOPIC_ENDPOINT"]["operator"]["operands"]
    assert endpoint["condition"] == "notifications" and endpoint["false_value"] == ""
    assert accessor(endpoint["true_value"]) == "notifyTopic.outputs.endpoint"
    assert "rpoAlertMinutes" in json.dumps(settings["RPO_ALERT_MINUTES"])
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["notifications"]["value"] == "${SNAPCOPY_NOTIFICATIONS=false}"
    assert parameters["alertEmail"]["value"] == "${SNAPCOPY_ALERT_EMAIL}"
