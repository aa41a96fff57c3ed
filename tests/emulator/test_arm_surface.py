"""The ARM REST surface as the SDK and raw clients see it: LROs, paging, casing, errors."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.models import CreationData, Snapshot, SnapshotProperties, SnapshotUpdate

from local.emulator import VirtualClock, World

from .conftest import API_VERSION, RG, SOURCE_REGION, SUB, Arm, Http, snapshot_path

pytestmark = pytest.mark.emulator

SAMPLE_SOURCE_KEYS = {
    "name", "id", "type", "location", "tags", "sku", "properties",
}  # fmt: skip
SAMPLE_SOURCE_PROPERTY_KEYS = {
    "osType", "creationData", "diskSizeGB", "encryption", "incremental", "incrementalSnapshotFamilyId",
    "networkAccessPolicy", "publicNetworkAccess", "timeCreated", "provisioningState", "diskState",
    "diskSizeBytes", "uniqueId", "dataAccessAuthMode", "snapshotAccessState",
}  # fmt: skip


def test_create_lro_is_followed_to_a_succeeded_snapshot(arm: Arm, clock: VirtualClock) -> None:
    disk = arm.disk()

    poller = arm.client.snapshots.begin_create_or_update(
        RG,
        "snap0",
        Snapshot(
            location=SOURCE_REGION,
            properties=SnapshotProperties(
                creation_data=CreationData(create_option="Copy", source_resource_id=disk.id), incremental=True
            ),
        ),
    )
    snapshot = poller.result()

    assert poller.status() == "Succeeded"
    assert snapshot.properties is not None
    assert snapshot.properties.provisioning_state == "Succeeded"
    assert snapshot.properties.incremental_snapshot_family_id
    assert snapshot.properties.time_created == clock.now()
    assert snapshot.id == f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots/snap0"


def test_create_answers_202_with_headers_the_sdk_polls(arm: Arm, http: Http) -> None:
    disk = arm.disk()
    body = {
        "location": SOURCE_REGION,
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": disk.id},
            "incremental": True,
        },
    }

    created = http.request("PUT", snapshot_path("snap0") + f"?api-version={API_VERSION}", body)
    status_url = created.headers["azure-asyncoperation"]
    operation = http.request("GET", status_url.removeprefix(http.base))
    result = http.request("GET", created.headers["location"].removeprefix(http.base))

    assert created.status == 202
    assert created.body["properties"]["provisioningState"] == "Updating"
    assert created.headers["location"] == status_url.replace("?", "?monitor=true&")  # Compute's shape
    assert created.headers["retry-after"] == "0"
    assert f"/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{SOURCE_REGION}/operations/" in status_url
    assert operation.status == 200
    assert operation.body["status"] == "Succeeded"
    assert set(operation.body) == {"name", "status", "startTime", "endTime"}
    assert result.status == 200
    assert result.body["name"] == "snap0"
    assert result.body["properties"]["provisioningState"] == "Succeeded"


def test_snapshot_body_has_the_shape_of_the_samples(arm: Arm, http: Http, clock: VirtualClock) -> None:
    arm.snapshot(arm.disk(), "snap0")

    body = http.request("GET", snapshot_path("snap0") + f"?api-version={API_VERSION}").body

    assert set(body) == SAMPLE_SOURCE_KEYS
    assert set(body["properties"]) == SAMPLE_SOURCE_PROPERTY_KEYS - {"osType"}
    assert body["sku"] == {"name": "Standard_ZRS", "tier": "Standard"}
    assert body["properties"]["timeCreated"] == f"{clock.now():%Y-%m-%dT%H:%M:%S.%f}0+00:00"
    assert body["properties"]["diskSizeBytes"] == 128 * 1024**3


def test_list_pages_are_followed_through_next_link(arm: Arm, world: World, http: Http) -> None:
    world.configure(page_size=2)
    disk = arm.disk()
    for index in range(5):
        arm.snapshot(disk, f"snap{index}")

    by_group = [s.name for s in arm.client.snapshots.list_by_resource_group(RG)]
    by_subscription = [s.name for s in arm.client.snapshots.list()]
    first_page = http.request(
        "GET", f"/subscriptions/{SUB}/providers/Microsoft.Compute/snapshots?api-version={API_VERSION}"
    )

    assert by_group == by_subscription == [f"snap{index}" for index in range(5)]
    assert world.counters()["requests"]["LIST snapshots"] == 7  # 3 pages per listing, plus one raw page
    assert len(first_page.body["value"]) == 2
    assert "api-version=" in first_page.body["nextLink"]


def test_paths_are_case_insensitive_and_ids_canonical(arm: Arm, http: Http) -> None:
    arm.snapshot(arm.disk(), "snap0")
    lowered = f"/subscriptions/{SUB}/resourcegroups/PROD-RG/providers/microsoft.compute/SNAPSHOTS/snap0"

    response = http.request("GET", f"{lowered}?api-version={API_VERSION}")

    assert response.status == 200
    assert (
        response.body["id"] == f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots/snap0"
    )


def test_missing_snapshot_is_a_404_in_arm_shape(arm: Arm) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        arm.get("nope")

    assert caught.value.error is not None
    assert caught.value.error.code == "ResourceNotFound"
    assert caught.value.error.message == (
        f"The Resource 'Microsoft.Compute/snapshots/nope' under resource group '{RG}' was not found."
    )


def test_delete_answers_200_then_204(arm: Arm, http: Http) -> None:
    arm.snapshot(arm.disk(), "snap0")
    path = snapshot_path("snap0") + f"?api-version={API_VERSION}"

    assert http.request("DELETE", path).status == 200
    assert http.request("DELETE", path).status == 204
    arm.client.snapshots.begin_delete(RG, "snap0").result()  # the SDK accepts 204 too


def test_patch_updates_tags(arm: Arm) -> None:
    arm.snapshot(arm.disk(), "snap0")

    updated = arm.client.snapshots.begin_update(RG, "snap0", SnapshotUpdate(tags={"env": "prod"})).result()

    assert updated.tags == {"env": "prod"}
    assert arm.get("snap0").tags == {"env": "prod"}


def test_snapshot_of_a_disk_must_be_in_the_disk_region(arm: Arm) -> None:
    disk = arm.disk()
    body = Snapshot(
        location="westus3",
        properties=SnapshotProperties(creation_data=CreationData(create_option="Copy", source_resource_id=disk.id)),
    )

    with pytest.raises(HttpResponseError) as caught:
        arm.client.snapshots.begin_create_or_update(RG, "snap0", body).result()

    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("x" * 81, "InvalidResourceName"),
        ("ends-with-dot.", "InvalidResourceName"),
        ("-leading", "InvalidResourceName"),
    ],
)
def test_invalid_snapshot_names_are_refused(arm: Arm, name: str, code: str) -> None:
    source = arm.snapshot(arm.disk(), "snap0")

    with pytest.raises(HttpResponseError) as caught:
        arm.copy(source, name)

    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == code


def test_unknown_location_is_refused(arm: Arm) -> None:
    with pytest.raises(HttpResponseError) as caught:
        arm.disk(location="atlantis")

    assert caught.value.error is not None
    assert caught.value.error.code == "LocationNotAvailableForResourceType"


def test_bad_json_is_invalid_request_content(http: Http) -> None:
    response = http.request("PUT", snapshot_path("snap0") + f"?api-version={API_VERSION}", raw_body=b"{not json")

    assert response.status == 400
    assert response.body["error"]["code"] == "InvalidRequestContent"


@pytest.mark.parametrize(
    "path",
    [
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm0",
        "/nothing/here",
    ],
)
def test_unknown_routes_are_404_in_arm_shape(http: Http, path: str) -> None:
    response = http.request("GET", f"{path}?api-version={API_VERSION}")

    assert response.status == 404
    assert set(response.body["error"]) == {"code", "message"}


def test_disks_are_listed_per_resource_group(arm: Arm) -> None:
    arm.disk("disk0")
    arm.disk("disk1", size_gb=256)

    disks = list(arm.client.disks.list_by_resource_group(RG))

    assert [(d.name, d.properties.disk_size_gb) for d in disks if d.properties] == [
        ("disk0", 128),
        ("disk1", 256),
    ]
