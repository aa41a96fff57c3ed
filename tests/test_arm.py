"""The ARM edge: snapshots read from ARM's JSON, through the SDK client's own pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from local.emulator.credential import EmulatorCredential
from local.emulator.faults import Fault
from local.emulator.server import EmulatorServer
from local.emulator.world import World
from local.fleet import Fleet
from shared.arm import API_VERSION, ArmCompute, ArmError
from shared.arm_bodies import snapshot_from_arm
from shared.ids import ResourceGroupId, ResourceId
from shared.model import CopyError
from tests.builders import SUB
from tests.conftest import FAST_ARM_RETRY

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def sample(name: str) -> dict[str, Any]:
    body = json.loads((SAMPLES / name).read_text())
    assert isinstance(body, dict)
    return body


def test_a_source_snapshot_is_read_from_arms_json():
    snapshot = snapshot_from_arm(sample("arm-source-incremental-snapshot.json"))

    assert snapshot.id == ResourceId(SUB, "prod-rg", "snapshots", "sqlvm-data0-20261120T0300")
    assert snapshot.location == "eastus2"
    assert snapshot.incremental and snapshot.is_ready and not snapshot.is_copy
    assert snapshot.family_id == "3c2b1a09-8f7e-4d6c-b5a4-938271605f4e"
    # seven fractional digits, as ARM writes them: the seventh is dropped, nothing else
    assert snapshot.time_created == datetime(2026, 11, 20, 3, 0, 2, 123456, tzinfo=UTC)
    assert snapshot.disk_id is not None and snapshot.disk_id.endswith("/disks/sqlvm-data0")
    assert snapshot.size_bytes == 1024**4
    assert snapshot.unique_id == "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
    assert snapshot.tags == {"app": "sql", "env": "prod"}
    assert snapshot.completion_percent is None and snapshot.copy_error is None


def test_a_copy_in_progress_and_a_failed_copy_are_read_with_progress_and_arms_error():
    running = snapshot_from_arm(sample("arm-copy-in-progress.json"))
    failed = snapshot_from_arm(sample("arm-copy-failed-source-deleted.json"))

    assert running.is_copy and running.create_option == "CopyStart"
    assert running.completion_percent == 37.0 and running.copy_error is None
    assert running.source_unique_id == "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
    assert failed.copy_error == CopyError(
        "CopySourceNotFound", "The source snapshot was deleted before the copy completed."
    )


def test_fields_arm_leaves_out_are_unknown_or_neutral():
    snapshot = snapshot_from_arm(
        {
            "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s",
            "location": "West US 3",
        }
    )

    assert snapshot.location == "westus3"
    assert not snapshot.incremental and snapshot.family_id is None
    assert snapshot.time_created is None  # unknown, never a default: ordering depends on it
    assert snapshot.access_state is None and snapshot.is_ready is False  # not provisioned either
    assert (snapshot.provisioning_state, snapshot.create_option, snapshot.source_resource_id) == ("", "", None)
    assert snapshot.tags == {} and snapshot.size_bytes is None


@pytest.mark.parametrize(
    "body",
    [
        ["not", "an", "object"],
        {"location": "eastus2"},  # no id
        {"id": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/disks/d"},  # not a snapshot
        {"id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s", "properties": []},
        {
            "id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s",
            "properties": {"timeCreated": "yesterday"},
        },
    ],
)
def test_a_body_snapcopy_cannot_read_raises_value_error(body: Any):
    with pytest.raises(ValueError):
        snapshot_from_arm(body)


# --- against the emulator, through the real SDK client ---------------------------------------


@pytest.fixture
def arm(emulator: EmulatorServer, world: World) -> Iterator[ArmCompute]:
    client = ArmCompute(
        EmulatorCredential(), endpoint=emulator.url, ca_bundle=str(emulator.ca_path), client_options=FAST_ARM_RETRY
    )
    yield client
    client.close()


@pytest.fixture
def fleet(emulator: EmulatorServer) -> Iterator[Fleet]:
    fleet = Fleet(emulator.url, str(emulator.ca_path), SUB)
    yield fleet
    fleet.close()


def test_reads_use_the_api_version_the_sdk_sends(fleet: Fleet, world: World, arm: ArmCompute):
    """One API version for the typed PUT and our reads (and >= 2020-12-01, as CopyStart needs)."""
    disk = fleet.create_disk("rg-a", "d0", "eastus2")
    name = fleet.take_snapshot(disk, "s0", "eastus2").split("/")[-1]
    sent: list[str] = []
    fleet.client.snapshots.get("rg-a", name, raw_request_hook=lambda request: sent.append(request.http_request.url))

    assert sent and f"api-version={API_VERSION}" in sent[0]
    assert API_VERSION >= "2020-12-01"


def test_a_listing_follows_next_link_across_pages(fleet: Fleet, world: World, arm: ArmCompute):
    world.configure(page_size=2)
    disk = fleet.create_disk("rg-a", "d0", "eastus2")
    names = {fleet.take_snapshot(disk, f"s{index}", "eastus2").split("/")[-1] for index in range(5)}
    fleet.take_snapshot(fleet.create_disk("rg-b", "d1", "eastus2"), "other", "eastus2")
    before = world.counters()["requests"].get("LIST snapshots", 0)

    listed = arm.list_snapshots(ResourceGroupId(SUB, "rg-a"))
    everywhere = arm.list_subscription_snapshots(SUB)

    assert {snapshot.id.name for snapshot in listed} == names
    assert {snapshot.id.name for snapshot in everywhere} == names | {"other"}
    assert world.counters()["requests"]["LIST snapshots"] - before == 3 + 3  # pages of 2: 5 and 6 items


def test_a_missing_snapshot_reads_as_none_and_a_refusal_keeps_arms_code(fleet: Fleet, world: World, arm: ArmCompute):
    disk = fleet.create_disk("rg-a", "d0", "eastus2")
    present = ResourceId.parse(fleet.take_snapshot(disk, "s0", "eastus2"))

    assert arm.get_snapshot(ResourceId(SUB, "rg-a", "snapshots", "nope")) is None
    world.add_fault(Fault(method="GET", kind="snapshot", status=403, error_code="AuthorizationFailed"))
    with pytest.raises(ArmError) as refused:
        arm.get_snapshot(present)
    assert (refused.value.code, refused.value.status, refused.value.retryable) == ("AuthorizationFailed", 403, False)
    world.add_fault(Fault(method="GET", kind="snapshots_list", status=503, count=10))
    with pytest.raises(ArmError) as unavailable:
        arm.list_snapshots(ResourceGroupId(SUB, "rg-a"))
    assert (unavailable.value.code, unavailable.value.retryable) == ("ServiceUnavailable", True)


def test_read_access_is_granted_shown_and_revoked_and_a_sixth_of_a_family_refused(
    fleet: Fleet, world: World, arm: ArmCompute, emulator: EmulatorServer
):
    """The diff method's grants, through snapcopy's own ARM client."""
    from shared.pageblobs import SourceSnapshot

    disk = fleet.create_disk("rg-a", "d0", "eastus2", size_gb=1)
    world.write_disk(disk, 0, 4096, seed=9)
    ids = [ResourceId.parse(fleet.take_snapshot(disk, f"s{index}", "eastus2")) for index in range(6)]
    sas = arm.grant_read(ids[0], 3600)
    assert SourceSnapshot(sas, connection_verify=str(emulator.ca_path)).ranges() == ([(0, 4096)], [])
    shown = arm.get_snapshot(ids[0])
    assert shown is not None and shown.sas_active
    for snapshot in ids[1:5]:
        arm.grant_read(snapshot, 3600)
    with pytest.raises(ArmError) as refused:
        arm.grant_read(ids[5], 3600)
    assert (refused.value.status, refused.value.code) == (409, "OperationNotAllowed")
    arm.revoke_read(ids[0])
    revoked = arm.get_snapshot(ids[0])
    assert revoked is not None and not revoked.sas_active
    arm.grant_read(ids[5], 3600)  # room again
    assert world.access_counters()["refused"] == 1
    fleet.delete_snapshot(str(ids[5]))
    arm.revoke_read(ids[5])  # a snapshot that is gone holds no access: revoking it is done, not an error
