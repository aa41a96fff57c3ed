"""Azure's CopyStart rules, each enforced and counted, driven through the real SDK."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from local.emulator import EmulatorServer, RequestInfo, ResourceId, VirtualClock, World

from .conftest import (
    API_VERSION,
    OTHER_SUB,
    RG,
    SOURCE_REGION,
    SUB,
    TARGET_REGION,
    Arm,
    Http,
    make_client,
    snapshot_path,
)

pytestmark = pytest.mark.emulator


def refused(action: Callable[[], Any]) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as caught:
        action()
    return caught.value


def code_of(error: HttpResponseError) -> str:
    assert error.error is not None
    return str(error.error.code)


def seed_incremental_snapshots(world: World, count: int, subscription: str = SUB) -> list[str]:
    """`count` disks with one incremental snapshot each (distinct families), set up in-process."""
    ids = []
    for index in range(count):
        disk = ResourceId(subscription, RG, "disks", f"disk{index}")
        world.put_disk(
            disk,
            {
                "location": SOURCE_REGION,
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64},
            },
            RequestInfo("PUT"),
        )
        snapshot = ResourceId(subscription, RG, "snapshots", f"disk{index}-snap0")
        world.put_snapshot(
            snapshot,
            {
                "location": SOURCE_REGION,
                "properties": {
                    "creationData": {"createOption": "Copy", "sourceResourceId": disk.arm_id},
                    "incremental": True,
                },
            },
            RequestInfo("PUT"),
        )
        ids.append(snapshot.arm_id)
    return ids


def test_copy_of_a_missing_source_is_refused_with_404(arm: Arm, world: World) -> None:
    missing = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots/gone"

    error = refused(lambda: arm.copy(missing, "gone-westus3"))

    assert error.status_code == 404
    assert code_of(error) == "ResourceNotFound"
    assert "Microsoft.Compute/snapshots/gone" in str(error.message)
    assert world.counters()["refusals"]["source_not_found"] == 1


def test_copy_of_a_full_snapshot_is_refused(arm: Arm, world: World) -> None:
    full = arm.snapshot(arm.disk(), "full0", incremental=False)

    error = refused(lambda: arm.copy(full))

    assert (error.status_code, code_of(error)) == (400, "BadRequest")
    assert world.counters()["refusals"]["not_incremental"] == 1
    assert full.properties is not None
    assert full.properties.incremental_snapshot_family_id is None


def test_copystart_without_incremental_true_is_refused(arm: Arm, world: World) -> None:
    source = arm.snapshot(arm.disk(), "snap0")

    error = refused(lambda: arm.copy(source, incremental=False))

    assert (error.status_code, code_of(error)) == (400, "BadRequest")
    assert world.counters()["refusals"]["not_incremental"] == 1


def test_copy_into_the_source_region_is_refused(arm: Arm, world: World) -> None:
    source = arm.snapshot(arm.disk(), "snap0")

    error = refused(lambda: arm.copy(source, region=SOURCE_REGION))

    assert (error.status_code, code_of(error)) == (400, "BadRequest")
    assert world.counters()["refusals"]["same_region"] == 1


def test_an_unfinished_copy_cannot_be_copied_on_until_it_completes(arm: Arm, world: World, clock: VirtualClock) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    arm.copy(source, "snap0-westus3")
    in_progress = arm.get("snap0-westus3")

    error = refused(lambda: arm.copy(in_progress, region="westus2"))
    clock.advance(3600)
    onward = arm.copy(arm.get("snap0-westus3"), region="westus2")

    assert (error.status_code, code_of(error)) == (409, "OperationNotAllowed")
    assert world.counters()["refusals"]["source_not_ready"] == 1
    assert onward.properties is not None and source.properties is not None
    assert onward.properties.incremental_snapshot_family_id == source.properties.incremental_snapshot_family_id


def test_second_copy_of_a_family_into_a_region_waits_until_the_first_completes(
    arm: Arm, world: World, clock: VirtualClock
) -> None:
    disk = arm.disk()
    first = arm.snapshot(disk, "snap0")
    clock.advance(60)
    second = arm.snapshot(disk, "snap1")
    arm.copy(first)

    error = refused(lambda: arm.copy(second))
    other_region = arm.copy(second, region="westus2")
    clock.advance(3600)
    accepted = arm.copy(second)

    assert (error.status_code, code_of(error)) == (409, "OperationNotAllowed")
    assert world.counters()["refusals"]["one_in_flight"] == 1
    assert other_region.properties is not None and accepted.properties is not None
    assert accepted.properties.provisioning_state == "Updating"
    assert world.counters()["copies_started"] == 3


def test_an_older_snapshot_cannot_be_copied_after_a_newer_one(arm: Arm, world: World, clock: VirtualClock) -> None:
    disk = arm.disk()
    older = arm.snapshot(disk, "snap0")
    clock.advance(60)
    newer = arm.snapshot(disk, "snap1")
    arm.copy(newer)

    while_copying = refused(lambda: arm.copy(older))
    clock.advance(3600)
    arm.client.snapshots.begin_delete(RG, "snap1-westus3").result()
    after_target_deleted = refused(lambda: arm.copy(older))

    assert (while_copying.status_code, code_of(while_copying)) == (409, "OperationNotAllowed")
    assert code_of(after_target_deleted) == "OperationNotAllowed"
    assert "creation order" in str(after_target_deleted.message)
    assert world.counters()["refusals"]["order"] == 2
    assert world.counters()["refusals"]["one_in_flight"] == 0


def test_a_failed_copy_does_not_block_older_snapshots(arm: Arm, world: World, clock: VirtualClock) -> None:
    disk = arm.disk()
    older = arm.snapshot(disk, "snap0")
    clock.advance(60)
    newer = arm.snapshot(disk, "snap1")
    arm.copy(newer)
    arm.client.snapshots.begin_delete(RG, "snap1").result()

    accepted = arm.copy(older)

    assert accepted.properties is not None
    assert world.counters()["refusals"]["order"] == 0


def test_cap_limits_copies_in_flight_per_subscription_and_region(
    emulator: EmulatorServer, arm: Arm, world: World, clock: VirtualClock
) -> None:
    world.configure(cap=3)
    sources = seed_incremental_snapshots(world, 5)
    other_sub_source = seed_incremental_snapshots(world, 1, subscription=OTHER_SUB)[0]
    for source in sources[:3]:
        arm.copy(source)

    error = refused(lambda: arm.copy(sources[3]))
    other_region = arm.copy(sources[3], region="westus2")
    with make_client(emulator, OTHER_SUB) as other_client:
        other_subscription = Arm(other_client).copy(other_sub_source)
    clock.advance(3600)
    after_completion = arm.copy(sources[4])

    assert (error.status_code, code_of(error)) == (409, "OperationNotAllowed")
    assert "limit of 3" in str(error.message)
    assert world.counters()["refusals"]["cap"] == 1
    assert all(s.properties is not None for s in (other_region, other_subscription, after_completion))


def test_default_cap_refuses_the_101st_copy_into_a_region(arm: Arm, world: World) -> None:
    sources = seed_incremental_snapshots(world, 101)
    for source in sources[:100]:
        arm.copy(source)

    error = refused(lambda: arm.copy(sources[100]))

    assert (error.status_code, code_of(error)) == (409, "OperationNotAllowed")
    assert "limit of 100" in str(error.message)
    assert world.counters()["refusals"]["cap"] == 1
    assert world.counters()["copies_started"] == 100


def test_concurrent_copystarts_never_exceed_the_cap(emulator: EmulatorServer, world: World) -> None:
    world.configure(cap=3)
    sources = seed_incremental_snapshots(world, 12)
    outcomes: list[str] = []

    def start(source: str) -> None:
        with make_client(emulator) as client:
            try:
                Arm(client).copy(source)
                outcomes.append("accepted")
            except HttpResponseError as error:
                outcomes.append(code_of(error))

    threads = [threading.Thread(target=start, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["OperationNotAllowed"] * 9 + ["accepted"] * 3
    assert world.counters()["refusals"]["cap"] == 9


def test_deleting_a_copying_source_fails_the_copy(arm: Arm, world: World, clock: VirtualClock) -> None:
    source = arm.snapshot(arm.disk(size_gb=100), "snap0")  # 100 GiB at 1 GiB/s: 100 s
    arm.copy(source, "snap0-westus3")
    clock.advance(40)

    arm.client.snapshots.begin_delete(RG, "snap0").result()
    clock.advance(3600)
    target = arm.get("snap0-westus3")

    assert target.properties is not None
    assert target.properties.copy_completion_error is not None
    assert target.properties.copy_completion_error.error_code == "CopySourceNotFound"
    assert target.properties.completion_percent == 40.0
    assert target.properties.snapshot_access_state == "Pending"
    assert world.copies()[0]["state"] == "failed"


def test_repeated_identical_copystart_put_is_idempotent(arm: Arm, world: World, http: Http) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    first = arm.copy(source, "snap0-westus3", tags={"snapcopy-source": "x"})

    again = arm.copy(source, "snap0-westus3", tags={"snapcopy-source": "x"})
    raw = http.request(
        "PUT",
        snapshot_path("snap0-westus3") + f"?api-version={API_VERSION}",
        {
            "location": TARGET_REGION,
            "tags": {"snapcopy-source": "x"},
            "properties": {
                "creationData": {"createOption": "CopyStart", "sourceResourceId": source.id},
                "incremental": True,
            },
        },
    )

    assert first.properties is not None and first.properties.provisioning_state == "Updating"  # 202
    assert again.properties is not None and again.properties.provisioning_state == "Succeeded"  # 200
    assert raw.status == 200
    assert "azure-asyncoperation" not in raw.headers
    assert world.counters()["copies_started"] == 1
    assert sum(world.counters()["refusals"].values()) == 0


def test_changing_the_source_of_an_existing_copy_is_refused(arm: Arm, world: World) -> None:
    disk = arm.disk()
    first, second = arm.snapshot(disk, "snap0"), arm.snapshot(disk, "snap1")
    arm.copy(first, "copy-westus3")

    error = refused(lambda: arm.copy(second, "copy-westus3"))

    assert (error.status_code, code_of(error)) == (409, "PropertyChangeNotAllowed")


def test_progress_advances_with_the_clock_and_reaches_100(arm: Arm, clock: VirtualClock, world: World) -> None:
    small = arm.snapshot(arm.disk("small", size_gb=32), "small-snap")  # 30 s floor
    large = arm.snapshot(arm.disk("large", size_gb=200), "large-snap")  # 200 s
    started = arm.copy(large, "large-copy")
    arm.copy(small, "small-copy")

    clock.advance(50)
    halfway = arm.get("large-copy").properties
    small_done = arm.get("small-copy").properties
    clock.advance(150)
    done = arm.get("large-copy").properties

    assert started.properties is not None and started.properties.completion_percent == 0.0
    assert halfway is not None and halfway.completion_percent == 25.0
    assert halfway.snapshot_access_state == "Pending"
    assert small_done is not None and small_done.completion_percent == 100.0
    assert done is not None and done.completion_percent == 100.0
    assert done.snapshot_access_state == "Available"
    assert done.provisioning_state == "Succeeded"
    assert [c["state"] for c in world.copies()] == ["succeeded", "succeeded"]


def test_copy_target_carries_source_identity_and_tags(arm: Arm) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    arm.copy(source, "snap0-westus3", tags={"snapcopy-source": str(source.id)})

    target = arm.get("snap0-westus3")

    assert source.properties is not None and target.properties is not None
    creation = target.properties.creation_data
    assert creation.create_option == "CopyStart"
    assert creation.source_resource_id == source.id
    assert creation.source_unique_id == source.properties.unique_id
    assert target.properties.incremental_snapshot_family_id == source.properties.incremental_snapshot_family_id
    assert target.tags == {"snapcopy-source": source.id}
    assert target.location == TARGET_REGION


def test_a_family_holds_at_most_500_snapshots_per_region(arm: Arm, world: World, monkeypatch: pytest.MonkeyPatch):
    from local.emulator import world as world_module

    monkeypatch.setattr(world_module, "MAX_FAMILY_SNAPSHOTS", 2)
    disk = arm.disk()
    first, second = arm.snapshot(disk, "s0"), arm.snapshot(disk, "s1")
    error = refused(lambda: arm.snapshot(disk, "s2"))
    assert error.status_code == 400 and "at most 2 incremental snapshots" in str(error.message)
    clock = world.clock
    assert isinstance(clock, VirtualClock)
    arm.copy(first)
    clock.advance(3600)
    arm.copy(second)
    clock.advance(3600)
    arm.client.snapshots.begin_delete(RG, "s0").result()  # room again at the source
    third = arm.snapshot(disk, "s2")
    error = refused(lambda: arm.copy(third))  # but the target region holds two copies of the family
    assert error.status_code == 400 and TARGET_REGION in str(error.message)
    assert world.counters()["refusals"]["family_limit"] == 2
