"""Replication policies end to end: the real SDK, Azurite and the ARM emulator."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from shared.ids import ResourceId
from shared.policies import parse_policies
from tests.builders import OTHER_SUB, SUB
from tests.conftest import Deployment
from tests.test_api_requests import call, post
from tests.test_functions import RG, copies, jobs, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

POLICIES: list[dict[str, Any]] = [
    {
        "name": "dr",
        "sources": {"tags": {"backup": "dr"}},
        "targets": [{"region": "westus3", "resourceGroup": "dr-rg"}],
        "tags": {"owner": "dr-team"},
        "nameTemplate": "{disk}-{time}-{region}",
    },
    {
        "name": "far",
        "targets": [{"region": "centralus", "resourceGroup": f"/subscriptions/{OTHER_SUB}/resourceGroups/far-rg"}],
        "copyTags": False,
    },
]


@pytest.fixture
def app_settings(app_settings: dict[str, str]) -> dict[str, str]:
    settings = {**app_settings, "COPY_POLICIES": json.dumps(POLICIES)}
    del settings["COPY_TARGET_REGIONS"]
    return settings


def take(deployment: Deployment, disk: str, count: int, tags: dict[str, str] | None = None) -> list[str]:
    """`count` snapshots of a new disk, a minute apart (so `{time}` names them apart)."""
    disk_id = deployment.fleet.create_disk(RG, disk, "eastus2")
    taken = []
    for i in range(count):
        taken.append(deployment.fleet.take_snapshot(disk_id, f"{disk}-s{i}", "eastus2", tags=tags))
        deployment.advance(60)
    return taken


def made(deployment: Deployment) -> dict[tuple[str, str], dict[str, Any]]:
    """Every copy ARM started, by (source name, region)."""
    return {(c["source_id"].rsplit("/", 1)[-1], c["region"]): c for c in copies(deployment)}


def test_each_policy_copies_what_it_selects_where_it_says_named_and_tagged_as_it_says(deployment: Deployment):
    tagged = take(deployment, "vm0-data0", 2, tags={"backup": "dr", "Team": "db"})
    plain = take(deployment, "vm1-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    copies_made = made(deployment)
    # "dr" selects the tagged disk only, into westus3's dr-rg, named by its template
    assert sorted(key for key in copies_made if key[1] == "westus3") == [
        ("vm0-data0-s0", "westus3"),
        ("vm0-data0-s1", "westus3"),
    ]
    first = ResourceId.parse(copies_made[("vm0-data0-s0", "westus3")]["target_id"])
    assert first.resource_group == "dr-rg" and first.subscription == SUB
    assert first.name.startswith("vm0-data0-2026") and first.name.endswith("-westus3")
    assert deployment.fleet.snapshot_tags(str(first)) == {
        "backup": "dr",
        "Team": "db",
        "owner": "dr-team",
        "snapcopy-source": tagged[0],
    }
    # "far" selects everything, into another subscription, with our provenance tag only
    far = [copies_made[(name.rsplit("/", 1)[-1], "centralus")] for name in (*tagged, *plain)]
    assert all(c["state"] == "succeeded" and c["subscription"].lower() == OTHER_SUB for c in far)
    rows = jobs(deployment)
    assert sorted({row["Policy"] for row in rows}) == ["dr", "far"]
    assert all(row["State"] == "succeeded" for row in rows)
    assert deployment.refusals() == {}


def test_the_other_subscriptions_copies_count_against_their_own_cap(deployment: Deployment):
    take(deployment, "vm0-data0", 1, tags={"backup": "dr"})
    deployment.deliver(snapshot_events(deployment))
    partitions = {row["PartitionKey"] for row in deployment.rows("region|")}
    assert partitions == {f"region|{SUB}|westus3", f"region|{OTHER_SUB}|centralus"}


def test_the_sweep_finds_a_lost_event_and_honours_the_tags(deployment: Deployment):
    take(deployment, "vm0-data0", 1, tags={"backup": "dr"})
    deployment.deliver(snapshot_events(deployment))  # makes the chains the sweep then looks after
    later = take(deployment, "vm0-data0b", 1, tags={"backup": "other"})
    deployment.drain_events()  # that event is lost
    deployment.host.run_timer(function="sweep_sources")
    run_until_done(deployment)
    copies_made = made(deployment)
    name = later[0].rsplit("/", 1)[-1]
    assert (name, "centralus") in copies_made and (name, "westus3") not in copies_made


def test_a_request_without_regions_copies_to_every_target_that_selects_it(deployment: Deployment):
    (plain,) = take(deployment, "vm1-data0", 1)
    deployment.drain_events()
    status, _, body = post(deployment, {"sourceSnapshotId": plain})
    assert status == 202, body
    assert [c["targetRegion"] for c in body["copies"]] == ["centralus"]
    status, _, body = post(deployment, {"sourceSnapshotId": plain, "targetRegions": ["westus3"]})
    assert status == 422 and "no policy copies" in body["detail"]


def test_operators_can_see_the_policies_and_ask_why_a_snapshot_is_or_is_not_copied(deployment: Deployment):
    status, _, body = call(deployment, "list_policies", "GET")
    assert status == 200 and [policy["name"] for policy in body["value"]] == ["dr", "far"]
    dr = body["value"][0]
    assert dr["sources"] == {"tags": {"backup": "dr"}} and dr["targets"][0]["resourceGroup"] == "dr-rg"
    assert not dr["implicit"] and dr["copyTags"] and dr["nameTemplate"] == "{disk}-{time}-{region}"
    (plain,) = take(deployment, "vm1-data0", 1)
    status, _, body = call(deployment, "evaluate_policies", "POST", body={"sourceSnapshotId": plain})
    assert status == 200 and body["copied"] and body["reason"] is None
    assert [(copy["policy"], copy["targetRegion"]) for copy in body["copies"]] == [("far", "centralus")]
    assert body["copies"][0]["tags"] == {"snapcopy-source": plain}
    assert body["passed"] == [{"policy": "dr", "targetRegion": None, "reason": "tag 'backup' missing"}]
    assert jobs(deployment) == []  # nothing was written


def test_in_mode_latest_a_chain_copies_only_the_newest_queued_snapshot(deployment: Deployment):
    latest = [{"name": "newest", "targets": [{"region": "westus3"}], "mode": "latest"}]
    settings = deployment.replicator.settings
    deployment.replicator.settings = replace(settings, copy_policies=parse_policies(json.dumps(latest)))
    disk_id = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2")
    first = deployment.fleet.take_snapshot(disk_id, "vm0-data0-s0", "eastus2")
    deployment.deliver(snapshot_events(deployment))  # s0 starts at once
    for i in range(1, 4):  # three more while it copies
        deployment.advance(60)
        deployment.fleet.take_snapshot(disk_id, f"vm0-data0-s{i}", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    assert [(c["source_id"], c["state"]) for c in copies(deployment)] == [
        (first, "succeeded"),
        (first.replace("-s0", "-s3"), "succeeded"),
    ]
    states = {row["SourceId"].rsplit("/", 1)[-1]: (row["State"], row["Reason"]) for row in jobs(deployment)}
    assert [states[f"vm0-data0-s{i}"][0] for i in range(4)] == ["succeeded", "skipped", "skipped", "succeeded"]
    assert states["vm0-data0-s1"][1].startswith("superseded by vm0-data0-s3")
    assert deployment.refusals() == {}


def test_an_enhanced_target_asks_arm_for_the_faster_copy(deployment: Deployment):
    both = [
        {
            "name": "speeds",
            "targets": [{"region": "westus3"}, {"region": "centralus", "copySpeed": "Enhanced"}],
        }
    ]
    settings = deployment.replicator.settings
    deployment.replicator.settings = replace(settings, copy_policies=parse_policies(json.dumps(both)))
    deployment.world.configure(min_copy_seconds=600)
    (snap,) = take(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    by_region = {c["region"]: c for c in copies(deployment)}
    assert by_region["centralus"]["duration_seconds"] * 2 == by_region["westus3"]["duration_seconds"]
    enhanced = deployment.fleet.client.snapshots.get(RG, f"{snap.rsplit('/', 1)[-1]}-centralus")
    assert enhanced.creation_data.provisioned_bandwidth_copy_speed == "Enhanced"
    standard = deployment.fleet.client.snapshots.get(RG, f"{snap.rsplit('/', 1)[-1]}-westus3")
    assert standard.creation_data.provisioned_bandwidth_copy_speed is None
    run_until_done(deployment)
    assert {row["CopySpeed"] for row in jobs(deployment)} == {"Standard", "Enhanced"}


DES_WEST = f"/subscriptions/{SUB}/resourceGroups/dr-rg/providers/Microsoft.Compute/diskEncryptionSets/des-westus3"
DES_EAST = f"/subscriptions/{SUB}/resourceGroups/prod-rg/providers/Microsoft.Compute/diskEncryptionSets/des-eastus2"


def use_policies(deployment: Deployment, policies: list[dict[str, Any]]) -> None:
    settings = deployment.replicator.settings
    deployment.replicator.settings = replace(settings, copy_policies=parse_policies(json.dumps(policies)))


def cmk_snapshots(deployment: Deployment, disk: str, count: int) -> list[str]:
    disk_id = deployment.fleet.create_disk(RG, disk, "eastus2", disk_encryption_set_id=DES_EAST)
    taken = []
    for i in range(count):
        taken.append(deployment.fleet.take_snapshot(disk_id, f"{disk}-s{i}", "eastus2"))
        deployment.advance(60)
    return taken


def test_a_customer_key_source_is_copied_with_the_targets_encryption_set(deployment: Deployment):
    use_policies(deployment, [{"name": "cmk", "targets": [{"region": "westus3", "diskEncryptionSetId": DES_WEST}]}])
    snaps = cmk_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    assert [c["state"] for c in copies(deployment)] == ["succeeded", "succeeded"]
    copy = deployment.fleet.client.snapshots.get(RG, f"{snaps[0].rsplit('/', 1)[-1]}-westus3")
    assert copy.encryption.disk_encryption_set_id == DES_WEST
    assert copy.encryption.type == "EncryptionAtRestWithCustomerKey"
    assert deployment.refusals() == {}


def test_a_customer_key_source_without_a_set_for_the_region_fails_at_once_and_is_never_sent(
    deployment: Deployment,
):
    use_policies(deployment, [{"name": "plain", "targets": [{"region": "westus3"}]}])
    cmk_snapshots(deployment, "vm0-data0", 2)
    puts = deployment.requests("PUT snapshot")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    rows = jobs(deployment)
    assert [row["State"] for row in rows] == ["failed", "failed"]
    assert all(row["ErrorCode"] == "EncryptionSetRequired" and "westus3" in row["ErrorMessage"] for row in rows)
    assert copies(deployment) == [] and deployment.requests("PUT snapshot") == puts
    assert deployment.refusals() == {}


def test_a_chain_never_changes_its_encryption_set(deployment: Deployment):
    use_policies(deployment, [{"name": "cmk", "targets": [{"region": "westus3", "diskEncryptionSetId": DES_WEST}]}])
    disk_id = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", disk_encryption_set_id=DES_EAST)
    deployment.fleet.take_snapshot(disk_id, "vm0-data0-s0", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    other = DES_WEST.replace("des-westus3", "des-westus3-new")
    use_policies(deployment, [{"name": "cmk", "targets": [{"region": "westus3", "diskEncryptionSetId": other}]}])
    deployment.advance(60)
    deployment.fleet.take_snapshot(disk_id, "vm0-data0-s1", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    states = {row["SourceId"].rsplit("/", 1)[-1]: row for row in jobs(deployment)}
    assert states["vm0-data0-s0"]["State"] == "succeeded"
    assert states["vm0-data0-s1"]["State"] == "failed"
    assert states["vm0-data0-s1"]["ErrorCode"] == "EncryptionSetChanged"
    assert len(copies(deployment)) == 1 and deployment.refusals() == {}


def test_retention_deletes_only_our_copies_the_policy_no_longer_keeps(deployment: Deployment):
    keep_one = [{"name": "short", "targets": [{"region": "westus3", "retain": {"count": 1}}]}]
    use_policies(deployment, keep_one)
    snaps = take(deployment, "vm0-data0", 4)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    names = [f"{snap.rsplit('/', 1)[-1]}-westus3" for snap in snaps]
    deployment.world.lock(f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots/{names[1]}")
    deployment.fleet.client.snapshots.begin_update(RG, names[2], {"tags": {"owner": "someone"}}).result()
    deletes = deployment.requests("DELETE snapshot")
    deployment.host.run_timer(function="prune_copies")
    rows = {row["SourceId"].rsplit("/", 1)[-1]: row for row in jobs(deployment)}
    assert rows["vm0-data0-s0"]["PrunedBy"] == "short" and rows["vm0-data0-s0"]["PrunedAt"] is not None
    assert "ScopeLocked" in rows["vm0-data0-s1"]["PruneError"]  # a lock: recorded once, left alone
    assert "not a copy snapcopy made" in rows["vm0-data0-s2"]["PruneError"]  # our tag is gone: not ours
    assert not rows["vm0-data0-s3"].get("PrunedAt") and not rows["vm0-data0-s3"]["PruneError"]  # the newest stays
    assert all(row["State"] == "succeeded" for row in rows.values())
    existing = {snap.name for snap in deployment.fleet.client.snapshots.list_by_resource_group(RG)}
    assert names[0] not in existing and {names[1], names[2], names[3]} <= existing
    assert deployment.requests("DELETE snapshot") == deletes + 2  # s0 deleted, s1 refused
    deployment.host.run_timer(function="prune_copies")  # nothing is asked again
    assert deployment.requests("DELETE snapshot") == deletes + 2


def test_without_retain_the_retention_run_reads_nothing(deployment: Deployment):
    take(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    before = deployment.operations.total
    deployment.host.run_timer(function="prune_copies")
    assert deployment.operations.total == before
