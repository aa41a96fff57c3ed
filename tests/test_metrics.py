"""Metrics of a scenario, read with the OpenTelemetry SDK's in-memory reader: names,
dimensions and values; and the RPO agreeing between the API, the metrics and the
notifications."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from local.emulator.faults import Fault
from local.topic import TopicServer
from shared.telemetry import METER, NAMES, Metrics
from tests.conftest import Deployment, with_topic
from tests.test_api_requests import call
from tests.test_functions import copies, disk_with_snapshots, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> Metrics:
    return Metrics(MeterProvider(metric_readers=[reader]).get_meter(METER))


@pytest.fixture
def app_settings(app_settings: dict[str, str], topic_server: TopicServer) -> dict[str, str]:
    return with_topic(app_settings, topic_server)


def points(reader: InMemoryMetricReader, key: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, data point) of one metric, by its key in telemetry.NAMES."""
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == NAMES[key]:
                    found += [(dict(point.attributes or {}), point) for point in metric.data.data_points]
    return found


def total(reader: InMemoryMetricReader, key: str, **attributes: str) -> float:
    return float(
        sum(
            point.value
            for found, point in points(reader, key)
            if all(found.get(name) == value for name, value in attributes.items())
        )
    )


def test_a_scenario_counts_its_copies_by_region_with_durations_handoffs_and_arm_requests(
    deployment: Deployment, reader: InMemoryMetricReader
):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    disk_with_snapshots(deployment, "vm1-data0", 1)
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=429, count=1, retry_after=0))
    deployment.deliver(snapshot_events(deployment))
    first = next(c for c in copies(deployment) if "vm1-data0" in c["source_id"])
    deployment.world.fail_copy(first["target_id"], "CopySourceUnavailable", "the source went away")
    run_until_done(deployment)
    assert total(reader, "started", target_region="westus3") == 3
    assert total(reader, "completed", target_region="westus3") == 2
    assert total(reader, "failed", target_region="westus3", error_code="CopySourceUnavailable") == 1
    assert total(reader, "skipped") == 0
    (duration,) = points(reader, "duration")
    assert duration[0] == {"target_region": "westus3"} and duration[1].count == 2 and duration[1].sum > 0
    (handoff,) = points(reader, "handoff")  # vm0's second snapshot waited for its first
    assert handoff[1].count == 1 and handoff[1].sum >= 0
    deployment.tick()  # the gauge is what each timer run found
    in_flight = points(reader, "in_flight")
    assert [attrs["target_region"] for attrs, _ in in_flight] == ["westus3"] and in_flight[0][1].value == 0
    assert total(reader, "arm_requests", method="PUT") == 3  # one CopyStart per copy, nothing repeated
    assert total(reader, "arm_requests", method="GET") > 0
    assert total(reader, "arm_throttled", method="GET") == 1
    assert total(reader, "published") == 6 and total(reader, "unsent") == 0


def test_rpo_agrees_between_the_api_the_metrics_and_the_notifications(
    deployment: Deployment, reader: InMemoryMetricReader, topic_server: TopicServer
):
    deployment.replicator.settings = replace(deployment.replicator.settings, rpo_alert=timedelta(minutes=30))
    disk_with_snapshots(deployment, "vm0-data0", 1)
    disk_with_snapshots(deployment, "vm1-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    deployment.advance(3600)
    deployment.replicator.sweep()
    chains = {chain["familyId"]: chain for chain in call(deployment, "list_chains", "GET")[2]["value"]}
    gauges = {attrs["family"]: (attrs, point.value) for attrs, point in points(reader, "rpo")}
    assert set(gauges) == set(chains)
    breaches = {e["data"]["sourceDiskId"]: e for e in topic_server.topic.events("Snapcopy.RpoBreached")}
    for family, chain in chains.items():
        attrs, seconds = gauges[family]
        assert attrs == {"target_region": "westus3", "family": family, "source_disk": chain["sourceDiskId"]}
        assert seconds == chain["rpoSeconds"] > 3600
        assert breaches[chain["sourceDiskId"]]["data"]["rpoSeconds"] == int(seconds)
    ((attrs, worst),) = points(reader, "worst_rpo")
    assert worst.value == max(chain["rpoSeconds"] for chain in chains.values())
    assert total(reader, "breached", target_region="westus3") == 2
    assert total(reader, "queued", target_region="westus3") == 0


def test_counting_never_fails_what_it_counts(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    class Broken:
        def add(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("exporter trouble")

    meter = Metrics()
    monkeypatch.setattr(meter, "_arm", Broken())
    meter.arm_response("GET", 200)  # inside every ARM call: must not raise
    assert "arm_response failed" in caplog.text
