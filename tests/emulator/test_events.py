"""Write and delete events: the exact shape of the Event Grid samples in ../shared/samples/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.compute.models import CreationData, Disk, DiskProperties

from local.emulator import World

from .conftest import API_VERSION, RG, SUB, Arm, Http, snapshot_path

pytestmark = pytest.mark.emulator

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"


def sample(name: str) -> dict[str, Any]:
    delivery = json.loads((SAMPLES / name).read_text())
    assert isinstance(delivery, list) and len(delivery) == 1
    return dict(delivery[0])


def shape(value: Any) -> Any:
    """The nested key structure of a JSON value (values themselves ignored)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


def lower_rg(name: str, kind: str = "snapshots") -> str:
    return f"/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.Compute/{kind}/{name}"


def test_snapshot_write_event_has_the_sample_shape(arm: Arm, world: World) -> None:
    arm.snapshot(arm.disk(), "snap0")

    disk_event, snapshot_event = world.events()

    assert shape(snapshot_event) == shape(sample("eventgrid-snapshot-write-success.json"))
    assert shape(disk_event) == shape(sample("eventgrid-disk-write-success.json"))
    assert snapshot_event["subject"] == snapshot_event["data"]["resourceUri"] == lower_rg("snap0")
    assert snapshot_event["eventType"] == "Microsoft.Resources.ResourceWriteSuccess"
    assert snapshot_event["topic"] == f"/subscriptions/{SUB}"
    assert snapshot_event["data"]["operationName"] == "Microsoft.Compute/snapshots/write"
    assert snapshot_event["data"]["httpRequest"]["method"] == "PUT"
    assert snapshot_event["data"]["httpRequest"]["url"].endswith(f"{lower_rg('snap0')}?api-version=2026-03-02")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", snapshot_event["eventTime"])
    assert disk_event["data"]["operationName"] == "Microsoft.Compute/disks/write"


def test_tag_update_delete_and_own_copy_emit_events_like_the_samples(arm: Arm, world: World, http: Http) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    world.events(drain=True)

    arm.copy(source, "snap0-westus3")
    http.request("PATCH", snapshot_path("snap0") + f"?api-version={API_VERSION}", {"tags": {"a": "b"}})
    http.request("DELETE", snapshot_path("snap0") + f"?api-version={API_VERSION}")
    own_copy, tag_update, deleted = world.events()

    assert shape(own_copy) == shape(sample("eventgrid-own-copy-write-success.json"))
    assert own_copy["subject"] == lower_rg("snap0-westus3")
    assert shape(tag_update) == shape(sample("eventgrid-snapshot-tag-update.json"))
    assert tag_update["data"]["httpRequest"]["method"] == "PATCH"
    assert shape(deleted) == shape(sample("eventgrid-snapshot-delete-success.json"))
    assert deleted["eventType"] == "Microsoft.Resources.ResourceDeleteSuccess"
    assert deleted["data"]["operationName"] == "Microsoft.Compute/snapshots/delete"


def test_refused_writes_and_reads_emit_no_event(arm: Arm, world: World, http: Http) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    world.events(drain=True)

    http.request("GET", snapshot_path("snap0") + f"?api-version={API_VERSION}")
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do
        arm.copy(source, region="eastus2")
    http.request("DELETE", snapshot_path("absent") + f"?api-version={API_VERSION}")

    assert world.events() == []


def test_draining_events_over_http_empties_the_sink(arm: Arm, http: Http) -> None:
    arm.disk()

    peeked = http.admin("GET", "events")
    drained = http.admin("GET", "events?drain=true")
    after = http.admin("GET", "events")

    assert len(peeked) == len(drained) == 1
    assert peeked == drained
    assert after == []


def test_events_keep_the_callers_correlation_and_request_ids(arm: Arm, world: World) -> None:
    disk = Disk(
        location="eastus2",
        properties=DiskProperties(creation_data=CreationData(create_option="Empty"), disk_size_gb=8),
    )
    arm.client.disks.begin_create_or_update(
        RG,
        "disk0",
        disk,
        headers={"x-ms-correlation-request-id": "corr-1", "x-ms-client-request-id": "client-1"},
    ).result()

    (event,) = world.events()

    assert event["data"]["correlationId"] == "corr-1"
    assert event["data"]["httpRequest"]["clientRequestId"] == "client-1"
