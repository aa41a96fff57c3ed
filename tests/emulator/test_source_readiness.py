"""Snapshots of Premium SSD v2 and Ultra disks: a background copy of their own before they can be
copied to another region, instant access, and the `source_not_available` refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from local.emulator import EmulatorConfig, VirtualClock, World

from .conftest import API_VERSION, Arm, Http, snapshot_path

pytestmark = pytest.mark.emulator


def refused(action: Callable[[], Any]) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as caught:
        action()
    return caught.value


def state(arm: Arm, name: str) -> tuple[str | None, float | None]:
    properties = arm.get(name).properties
    assert properties is not None
    return properties.snapshot_access_state, properties.completion_percent


@pytest.mark.parametrize(("sku", "tier"), [("PremiumV2_LRS", "Premium"), ("UltraSSD_LRS", "Ultra")])
def test_v2_and_ultra_disks_report_their_tier(arm: Arm, sku: str, tier: str) -> None:
    disk = arm.disk(sku=sku, size_gb=40000)  # beyond the 32 TiB of other disks

    assert disk.sku is not None and (disk.sku.name, disk.sku.tier) == (sku, tier)


def test_a_v2_snapshot_is_pending_until_its_background_copy_ends_and_only_then_copies(
    arm: Arm, world: World, clock: VirtualClock
) -> None:
    source = arm.snapshot(arm.disk(sku="PremiumV2_LRS", size_gb=60), "snap0")  # 60 s at 1 GiB/s

    at_start = state(arm, "snap0")
    while_pending = refused(lambda: arm.copy(source))
    clock.advance(30)
    halfway = state(arm, "snap0")
    clock.advance(30)
    done = state(arm, "snap0")
    accepted = arm.copy(source)

    assert source.properties is not None and source.properties.provisioning_state == "Succeeded"
    assert at_start == ("Pending", 0.0)
    assert (while_pending.status_code, while_pending.error and while_pending.error.code) == (
        409,
        "OperationNotAllowed",
    )
    assert "snapshotAccessState is 'Pending'" in str(while_pending.message)
    assert halfway == ("Pending", 50.0)
    assert done == ("Available", 100.0)
    assert accepted.name == "snap0-westus3"
    assert world.counters()["refusals"]["source_not_available"] == 1
    assert world.counters()["copies_started"] == 1
    assert [copy["source_id"] for copy in world.copies()] == [source.id]  # the background copy is not a copy


def test_v1_snapshots_are_available_at_once_without_a_percent(arm: Arm) -> None:
    arm.snapshot(arm.disk(sku="Premium_LRS"), "snap0")

    assert state(arm, "snap0") == ("Available", None)


def test_instant_access_during_and_after_the_background_copy(arm: Arm, world: World, clock: VirtualClock) -> None:
    source = arm.snapshot(arm.disk(sku="UltraSSD_LRS", size_gb=60), "snap0", instant_access_minutes=60)

    copying = state(arm, "snap0")
    while_copying = refused(lambda: arm.copy(source))
    clock.advance(60)
    copied = state(arm, "snap0")
    accepted = arm.copy(source)
    clock.advance(3600 - 60)
    expired = state(arm, "snap0")

    assert source.properties is not None
    assert source.properties.creation_data.instant_access_duration_minutes == 60
    assert copying == ("InstantAccess", 0.0)
    assert while_copying.status_code == 409
    assert copied == ("AvailableWithInstantAccess", 100.0)
    assert accepted.name == "snap0-westus3"
    assert expired == ("Available", 100.0)
    assert world.counters()["refusals"]["source_not_available"] == 1


def test_instant_access_can_end_before_the_background_copy(arm: Arm, world: World, clock: VirtualClock) -> None:
    world.configure(source_copy_seconds_factor=120)  # 60 GiB: 2 hours
    arm.snapshot(arm.disk(sku="PremiumV2_LRS", size_gb=60), "snap0", instant_access_minutes=60)

    clock.advance(3600)
    after_instant_access = state(arm, "snap0")
    clock.advance(3600)
    done = state(arm, "snap0")

    assert after_instant_access == ("Pending", 50.0)
    assert done == ("Available", 100.0)


def test_a_factor_of_zero_makes_v2_snapshots_available_at_once(arm: Arm, world: World) -> None:
    world.configure(source_copy_seconds_factor=0)
    source = arm.snapshot(arm.disk(sku="PremiumV2_LRS"), "snap0")

    assert state(arm, "snap0") == ("Available", 100.0)
    assert arm.copy(source).name == "snap0-westus3"


def test_no_event_when_the_background_copy_ends(arm: Arm, world: World, clock: VirtualClock) -> None:
    arm.snapshot(arm.disk(sku="PremiumV2_LRS", size_gb=60), "snap0")
    world.events(drain=True)

    clock.advance(3600)
    arm.get("snap0")

    assert world.events() == []


@pytest.mark.parametrize("minutes", [59, 301, "60", True])
def test_instant_access_outside_60_to_300_minutes_is_refused(arm: Arm, http: Http, minutes: object) -> None:
    disk = arm.disk(sku="PremiumV2_LRS")
    body = {
        "location": disk.location,
        "properties": {
            "creationData": {
                "createOption": "Copy",
                "sourceResourceId": disk.id,
                "instantAccessDurationMinutes": minutes,
            },
            "incremental": True,
        },
    }

    response = http.request("PUT", snapshot_path("snap0") + f"?api-version={API_VERSION}", body)

    assert response.status == 400
    assert response.body["error"]["code"] == "InvalidParameter"


def test_a_negative_factor_is_refused() -> None:
    with pytest.raises(ValueError, match="source_copy_seconds_factor"):
        EmulatorConfig(source_copy_seconds_factor=-1)
