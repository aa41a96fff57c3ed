"""What the deployed app sends Application Insights, through the real Azure Monitor
distro, to a local ingestion endpoint: snapcopy's metrics and its transitions as custom
events with their dimensions; none of its log lines (the Functions host sends those)
and no performance counters. Run in a child process: the distro sets process-wide
OpenTelemetry providers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.ingestion import Ingestion

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # a child process importing the distro (about 2 s)

CHILD = """
import logging
from datetime import UTC, datetime, timedelta

from opentelemetry import metrics
from opentelemetry._logs import get_logger_provider

from shared import runtime
from shared.model import ChainKey, CopyState, Job
from shared.ids import ResourceId
from shared.notices import announce
from shared.telemetry import Metrics

assert runtime.export_metrics()
when = datetime(2026, 12, 1, tzinfo=UTC)
job = Job(
    ChainKey("0b6c9a54-2c1e-4a8e-9a53-6f1f1f1f1f1f", "westus3"),
    ResourceId("sub", "rg", "snapshots", "s0"), when, ResourceId("sub", "rg", "snapshots", "s0-westus3"),
    state=CopyState.SUCCEEDED, started_at=when, finished_at=when + timedelta(minutes=10),
)
_, notices = announce(job)
meter = Metrics()
meter.transitions(notices)
meter.arm_response("GET", 429)
logging.getLogger("snapcopy").warning("copy failed: a log line the host sends, not the distro")
metrics.get_meter_provider().force_flush()
get_logger_provider().force_flush()
print(json.dumps([n.id for n in notices]))
"""


def test_metrics_and_transition_events_reach_application_insights_and_nothing_else():
    with Ingestion() as ingestion:
        env = {**os.environ, "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string}
        child = subprocess.run(
            [sys.executable, "-c", "import json\n" + CHILD],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        ids = json.loads(child.stdout.strip().splitlines()[-1])
        metrics = {m["name"]: data["properties"] for data in ingestion.of("MetricData") for m in data["metrics"]}
        events = ingestion.of("EventData")
        messages = ingestion.of("MessageData")
    assert metrics["snapcopy.copies.completed"] == {"target_region": "westus3"}
    assert metrics["snapcopy.copies.started"] == {"target_region": "westus3"}
    assert "snapcopy.copy.duration" in metrics
    assert metrics["snapcopy.arm.throttled"] == {"method": "GET"}
    assert not [name for name in metrics if name.startswith("\\\\")], "performance counters are exported"
    assert [event["name"] for event in events] == ["Snapcopy.CopyStarted", "Snapcopy.CopyCompleted"]
    completed = events[1]["properties"]
    assert completed["eventId"] == ids[1] and completed["transition"] == "CopyCompleted"
    assert completed["region"] == "westus3" and completed["chain"] == "0b6c9a54-2c1e-4a8e-9a53-6f1f1f1f1f1f|westus3"
    assert completed["source"] == "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s0"
    assert completed["copyId"] and completed["state"] == "succeeded"
    assert not [m for m in messages if "copy failed" in m.get("message", "")], "log lines go through the host only"
