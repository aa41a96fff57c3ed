"""LISTs that lag behind writes (`list_lag_seconds`), while GETs never do, and paging that holds."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError

from local.emulator import EmulatorConfig, VirtualClock, World

from .conftest import API_VERSION, RG, SUB, Arm, Http

pytestmark = pytest.mark.emulator

RG_SNAPSHOTS = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots?api-version={API_VERSION}"
)


def listed(arm: Arm) -> list[str | None]:
    return [snapshot.name for snapshot in arm.client.snapshots.list_by_resource_group(RG)]


def test_a_list_leaves_out_what_was_created_within_the_lag_while_get_sees_it(
    arm: Arm, world: World, clock: VirtualClock
) -> None:
    world.configure(list_lag_seconds=30)
    disk = arm.disk()
    clock.advance(60)
    arm.snapshot(disk, "snap0")

    fresh_group, fresh_subscription = listed(arm), [s.name for s in arm.client.snapshots.list()]
    got = arm.get("snap0")
    clock.advance(29)
    still_lagging = listed(arm)
    clock.advance(1)
    caught_up = listed(arm)

    assert fresh_group == fresh_subscription == still_lagging == []
    assert got.name == "snap0"
    assert caught_up == ["snap0"]
    assert [d.name for d in arm.client.disks.list_by_resource_group(RG)] == ["disk0"]  # created 60 s ago


def test_disks_lag_like_snapshots(arm: Arm, world: World, clock: VirtualClock) -> None:
    world.configure(list_lag_seconds=10)
    arm.disk("disk0")

    lagging = list(arm.client.disks.list())
    clock.advance(10)
    caught_up = list(arm.client.disks.list())

    assert lagging == []
    assert [d.name for d in caught_up] == ["disk0"]


def test_a_list_still_shows_what_was_deleted_within_the_lag(arm: Arm, world: World, clock: VirtualClock) -> None:
    world.configure(list_lag_seconds=30)
    arm.snapshot(arm.disk(), "snap0")
    clock.advance(60)
    arm.client.snapshots.begin_delete(RG, "snap0").result()

    ghost = list(arm.client.snapshots.list_by_resource_group(RG))
    with pytest.raises(ResourceNotFoundError):
        arm.get("snap0")
    clock.advance(30)
    gone = listed(arm)

    assert [s.name for s in ghost] == ["snap0"]
    assert ghost[0].properties is not None and ghost[0].properties.provisioning_state == "Succeeded"
    assert gone == []


def test_a_name_deleted_and_created_again_within_the_lag_lists_once(
    arm: Arm, world: World, clock: VirtualClock
) -> None:
    world.configure(list_lag_seconds=30)
    disk = arm.disk()
    first = arm.snapshot(disk, "snap0")
    clock.advance(60)
    arm.client.snapshots.begin_delete(RG, "snap0").result()
    second = arm.snapshot(disk, "snap0")

    during = list(arm.client.snapshots.list_by_resource_group(RG))
    clock.advance(30)
    after = list(arm.client.snapshots.list_by_resource_group(RG))

    assert first.properties is not None and second.properties is not None
    assert [s.properties.unique_id for s in during if s.properties] == [first.properties.unique_id]
    assert [s.properties.unique_id for s in after if s.properties] == [second.properties.unique_id]


def test_pages_neither_repeat_nor_skip_while_the_collection_changes(
    arm: Arm, world: World, http: Http, clock: VirtualClock
) -> None:
    world.configure(page_size=2)
    disk = arm.disk()
    for index in (0, 2, 4, 6, 8):
        arm.snapshot(disk, f"snap{index}")

    first = http.request("GET", RG_SNAPSHOTS)
    clock.advance(5)
    arm.snapshot(disk, "snap1")  # sorts before the cursor: the old index paging would repeat snap2
    arm.snapshot(disk, "snap5")  # created after the listing's moment: not part of it
    arm.client.snapshots.begin_delete(RG, "snap6").result()  # existed at the listing's moment: still there
    pages = [first.body]
    while "nextLink" in pages[-1]:
        pages.append(http.request("GET", pages[-1]["nextLink"].removeprefix(http.base)).body)
    names = [item["name"] for page in pages for item in page["value"]]

    assert names == ["snap0", "snap2", "snap4", "snap6", "snap8"]
    assert [len(page["value"]) for page in pages] == [2, 2, 1]
    assert listed(arm) == ["snap0", "snap1", "snap2", "snap4", "snap5", "snap8"]  # a new listing


def test_an_exact_last_page_has_no_next_link(arm: Arm, world: World, http: Http) -> None:
    world.configure(page_size=2)
    disk = arm.disk()
    for index in range(4):
        arm.snapshot(disk, f"snap{index}")

    first = http.request("GET", RG_SNAPSHOTS).body
    second = http.request("GET", first["nextLink"].removeprefix(http.base)).body

    assert [item["name"] for item in second["value"]] == ["snap2", "snap3"]
    assert "nextLink" not in second


@pytest.mark.parametrize("token", ["not-base64!", "bm90LWEtbnVtYmVyOng"])
def test_a_bad_skiptoken_is_refused(http: Http, token: str) -> None:
    response = http.request("GET", RG_SNAPSHOTS + f"&$skiptoken={token}")

    assert response.status == 400
    assert response.body["error"]["code"] == "InvalidParameter"


def test_a_negative_lag_is_refused() -> None:
    with pytest.raises(ValueError, match="list_lag_seconds"):
        EmulatorConfig(list_lag_seconds=-1)
