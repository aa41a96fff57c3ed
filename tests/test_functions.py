"""The functions, invoked as the host invokes them, against Azurite and the ARM emulator."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from local.emulator.faults import Fault
from shared.ids import ResourceId
from shared.model import CopyState
from shared.progress import START_GRACE
from tests.builders import SUB
from tests.conftest import Deployment

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

RG = "prod-rg"


def disk_with_snapshots(deployment: Deployment, disk: str, count: int, *, location: str = "eastus2") -> list[str]:
    disk_id = deployment.fleet.create_disk(RG, disk, location)
    return [deployment.fleet.take_snapshot(disk_id, f"{disk}-s{i}", location) for i in range(count)]


def snapshot_events(deployment: Deployment) -> list[dict[str, Any]]:
    return [e for e in deployment.drain_events() if "/snapshots/" in e["subject"]]


def jobs(deployment: Deployment) -> list[dict[str, Any]]:
    return [row for row in deployment.rows("chain|") if row["RowKey"].startswith("job|")]


def copies(deployment: Deployment) -> list[dict[str, Any]]:
    return deployment.world.copies()


def worker_dies(*args: Any, **kwargs: Any) -> Any:
    """Stands in for a step the worker process never finished (recycled, OOM-killed, ...)."""
    raise SystemExit("worker recycled")


def run_until_done(deployment: Deployment, *, step: float = 30.0, limit: int = 60) -> None:
    for _ in range(limit):
        deployment.tick(advance=step)
        deployment.deliver(deployment.drain_events())  # our copies' own events come back too
        rows = jobs(deployment)
        if rows and all(row["State"] not in ("queued", "copying") for row in rows):
            return
    raise AssertionError("copies did not finish")


def test_snapshot_event_starts_a_copystart_copy_at_once(deployment: Deployment):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    (copy,) = copies(deployment)
    assert copy["source_id"].lower() == snap.lower()
    assert copy["target_id"].endswith("/snapshots/vm0-data0-s0-westus3")
    assert copy["region"] == "westus3" and copy["state"] == "copying"
    target = deployment.fleet.client.snapshots.get(RG, "vm0-data0-s0-westus3")
    assert target.tags is not None and target.tags["snapcopy-source"].lower() == snap.lower()
    assert target.properties is not None and target.properties.creation_data.create_option == "CopyStart"


def test_duplicate_and_tag_update_events_cost_no_arm_call(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    events = snapshot_events(deployment)
    deployment.deliver(events)
    gets = deployment.requests("GET snapshot")
    deployment.fleet.client.snapshots.begin_update(RG, "vm0-data0-s0", {"tags": {"owner": "ops"}}).result()
    deployment.deliver(events + events + snapshot_events(deployment))  # duplicates + the PATCH event
    assert deployment.requests("GET snapshot") == gets
    assert len(copies(deployment)) == 1


def test_own_copy_write_event_is_never_copied_again(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    own = snapshot_events(deployment)
    assert own and all("-westus3" in event["subject"] for event in own)
    gets = deployment.requests("GET snapshot")
    deployment.deliver(own)
    assert len(copies(deployment)) == 1
    assert deployment.requests("GET snapshot") == gets  # known from the table: no ARM call


def test_own_copy_write_event_costs_no_table_read_in_the_process_that_started_it(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    own = snapshot_events(deployment)
    operations = deployment.operations.total
    deployment.deliver(own)
    assert deployment.operations.total == operations
    assert len(copies(deployment)) == 1
    # other processes know it from the seen-index, written when the copy started
    (copy,) = copies(deployment)
    entry = deployment.store.get_index(ResourceId.parse(copy["target_id"]))
    assert entry is not None and entry.kind == "copy"


def test_non_incremental_and_already_in_target_region_snapshots_are_ignored(deployment: Deployment):
    disk = deployment.fleet.create_disk(RG, "full-disk", "eastus2")
    deployment.fleet.take_snapshot(disk, "full-snap", "eastus2", incremental=False)
    disk_with_snapshots(deployment, "west-disk", 1, location="westus3")
    deployment.deliver(snapshot_events(deployment))
    assert copies(deployment) == []
    deployment.tick(advance=60)
    assert copies(deployment) == []


def test_malformed_event_is_dropped_without_a_retry(deployment: Deployment):
    deployment.host.deliver_event(
        {
            "id": "evt-1",
            "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "subject": "/nonsense",
            "data": {"operationName": "Microsoft.Compute/snapshots/write", "resourceUri": "/nonsense"},
            "eventTime": "2026-11-20T03:00:00Z",
            "dataVersion": "2",
        }
    )
    assert copies(deployment) == []


def test_cloudevents_schema_delivery_starts_a_copy(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    (event,) = snapshot_events(deployment)
    cloud = {
        "specversion": "1.0",
        "id": event["id"],
        "type": event["eventType"],
        "source": event["topic"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "data": event["data"],
    }
    deployment.deliver([cloud])
    assert len(copies(deployment)) == 1


def test_second_snapshot_waits_until_the_first_copy_completes(deployment: Deployment):
    snaps = disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    assert [c["source_id"].lower() for c in copies(deployment)] == [snaps[0].lower()]
    deployment.tick(advance=30)  # half way: nothing released
    assert len(copies(deployment)) == 1
    report = deployment.tick(advance=200)
    assert report.completed == 1 and report.started == 1
    assert [c["source_id"].lower() for c in copies(deployment)] == [s.lower() for s in snaps]
    run_until_done(deployment)
    assert deployment.refusals() == {}


def test_lost_events_are_found_by_listing_and_copied_in_order(deployment: Deployment):
    snaps = disk_with_snapshots(deployment, "vm0-data0", 3)
    events = snapshot_events(deployment)
    deployment.deliver(events[-1:])  # only the newest snapshot's event arrives
    run_until_done(deployment)
    made = copies(deployment)
    assert [c["source_id"].lower() for c in made] == [s.lower() for s in snaps]
    assert all(c["state"] == "succeeded" for c in made)
    assert deployment.refusals() == {}


def test_a_start_records_its_listing_in_the_commit_without_a_write_of_its_own(deployment: Deployment):
    """The listing a start needed is noted on the head by the start's own commit batch,
    not by a write of its own: the flight's phase is the start's only single update."""
    disk_with_snapshots(deployment, "vm0-data0", 1)
    updates = deployment.operations.by_kind.get("update", 0)
    deployment.deliver(snapshot_events(deployment))
    assert len(copies(deployment)) == 1
    assert deployment.operations.by_kind.get("update", 0) == updates + 1
    (chain,) = deployment.store.list_chains()
    head = deployment.store.load_head(chain)
    assert head is not None and head.listed_through is not None and head.copying_key


def test_timer_reads_progress_with_one_list_per_target_group(deployment: Deployment):
    for disk in ("a", "b", "c"):
        disk_with_snapshots(deployment, disk, 1)
    deployment.deliver(snapshot_events(deployment))
    assert len(copies(deployment)) == 3
    lists, gets = deployment.requests("LIST snapshots"), deployment.requests("GET snapshot")
    report = deployment.tick(advance=10)
    assert report.polled == 3
    assert deployment.requests("LIST snapshots") == lists + 1
    assert deployment.requests("GET snapshot") == gets
    flights = [row for row in deployment.rows("region|") if row["RowKey"].startswith("flight|")]
    assert len(flights) == 3 and all(0 < row["Percent"] < 100 for row in flights)


def test_region_cap_holds_and_waiting_chains_are_released_oldest_first(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    settings = deployment.replicator.settings
    monkeypatch.setattr(deployment.replicator, "settings", replace(settings, max_copies_per_region=2))
    deployment.world.configure(cap=2)  # the emulator refuses a third: the app must never ask
    for disk in ("a", "b", "c", "d"):
        disk_with_snapshots(deployment, disk, 1)
        deployment.advance(1)
    for event in snapshot_events(deployment):
        deployment.deliver([event])  # queued one second apart: that is the line they stand in
        deployment.advance(1)
    deployment.tick(advance=1)
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["a-s0", "b-s0"]
    report = deployment.tick(advance=200)  # a 128 GiB copy takes 128 s in the emulator
    assert report.completed == 2 and report.started == 2
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["a-s0", "b-s0", "c-s0", "d-s0"]
    run_until_done(deployment)
    assert deployment.refusals() == {}


def count_slot_reads(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The chains whose region slot is read (`load_slot`), in order."""
    store, reads = deployment.store, []
    load_slot = store.load_slot

    def spy(region: Any, chain: Any) -> Any:
        reads.append(chain.family_id)
        return load_slot(region, chain)

    monkeypatch.setattr(store, "load_slot", spy)
    return reads


def test_a_snapshot_arriving_behind_its_disks_copy_in_flight_reads_no_slot(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    """The head the arrival wrote says a copy is in flight: no start can follow, so the
    event stops there; the copy's end hands its slot to the new snapshot."""
    disk = deployment.fleet.create_disk(RG, "vm0", "eastus2")
    first = deployment.fleet.take_snapshot(disk, "vm0-s0", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    reads = count_slot_reads(deployment, monkeypatch)
    second = deployment.fleet.take_snapshot(disk, "vm0-s1", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    assert reads == []
    assert [row["State"] for row in sorted(jobs(deployment), key=lambda row: row["RowKey"])] == [
        "copying",
        "queued",
    ]
    report = deployment.tick(advance=200)
    assert report.completed == 1 and report.started == 1
    assert [c["source_id"].lower() for c in copies(deployment)] == [first.lower(), second.lower()]
    run_until_done(deployment)
    assert deployment.refusals() == {}


def test_arrivals_into_a_region_seen_at_its_cap_wait_for_the_timer_without_reading_the_slot(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    settings = deployment.replicator.settings
    monkeypatch.setattr(deployment.replicator, "settings", replace(settings, max_copies_per_region=1))
    deployment.world.configure(cap=1)
    disk_with_snapshots(deployment, "a", 1)
    deployment.deliver(snapshot_events(deployment))  # a-s0 takes the only slot
    reads = count_slot_reads(deployment, monkeypatch)
    for disk in ("b", "c", "d"):
        disk_with_snapshots(deployment, disk, 1)
        deployment.advance(1)
    deployment.deliver(snapshot_events(deployment))
    assert reads == []  # a-s0's reservation filled the region: b, c and d do not look
    deployment.advance(61)  # what this process saw is a minute old: the next arrival looks
    disk_with_snapshots(deployment, "e", 1)
    deployment.deliver(snapshot_events(deployment))
    assert len(reads) == 1
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["a-s0"]
    report = deployment.tick(advance=200)  # a 128 GiB copy takes 128 s: the timer frees and refills
    assert report.completed == 1 and report.started == 1
    run_until_done(deployment, limit=120)
    started = [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)]
    assert sorted(started) == ["a-s0", "b-s0", "c-s0", "d-s0", "e-s0"]
    assert deployment.refusals() == {}


def test_a_disks_next_snapshot_follows_its_predecessor_into_the_slot_it_frees(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    """Handoff: a-s1 queued after b-s0, yet it takes the slot a-s0 frees (FAIR_WAIT_HOURS
    bounds how long b can be passed over; test_scheduler checks that rule)."""
    settings = deployment.replicator.settings
    monkeypatch.setattr(deployment.replicator, "settings", replace(settings, max_copies_per_region=1))
    deployment.world.configure(cap=1)
    disk_a = deployment.fleet.create_disk(RG, "a", "eastus2")
    deployment.fleet.take_snapshot(disk_a, "a-s0", "eastus2")
    deployment.deliver(snapshot_events(deployment))  # a-s0 copies
    deployment.advance(20)
    disk_with_snapshots(deployment, "b", 1)  # b waits for the only slot
    deployment.deliver(snapshot_events(deployment))
    deployment.advance(20)
    deployment.fleet.take_snapshot(disk_a, "a-s1", "eastus2")  # a's next, queued after b's
    deployment.deliver(snapshot_events(deployment))
    deployment.tick(advance=200)
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["a-s0", "a-s1"]
    run_until_done(deployment)
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["a-s0", "a-s1", "b-s0"]
    assert deployment.refusals() == {}


def test_a_burst_of_events_costs_a_few_lists_not_one_per_event(deployment: Deployment):
    for index in range(10):
        disk_with_snapshots(deployment, f"vm{index}", 1)
    lists = deployment.requests("LIST snapshots")
    deployment.deliver(snapshot_events(deployment))
    deployment.tick(advance=1)
    assert deployment.requests("LIST snapshots") - lists <= 3  # 1 by the first event, 1 per tick
    assert len(copies(deployment)) == 10


def test_deleted_source_fails_its_copy_with_the_reason_and_the_chain_moves_on(deployment: Deployment):
    snaps = disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    deployment.fleet.delete_snapshot(snaps[0])
    report = deployment.tick(advance=5)
    assert report.failed == 1 and report.started == 1
    run_until_done(deployment)
    states = {row["SourceId"].rsplit("/", 1)[-1]: row for row in jobs(deployment)}
    assert states["vm0-data0-s0"]["State"] == "failed"
    assert states["vm0-data0-s0"]["ErrorCode"] == "CopySourceNotFound"
    assert states["vm0-data0-s1"]["State"] == "succeeded"


def test_throttled_copystart_is_retried_later_and_then_succeeds(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.world.add_fault(Fault(method="PUT", kind="snapshot", status=429, retry_after=0, count=3))
    deployment.deliver(snapshot_events(deployment))
    (row,) = jobs(deployment)
    assert row["State"] == "queued" and row["Attempts"] == 1 and row["ErrorCode"] == "TooManyRequests"
    assert copies(deployment) == []
    run_until_done(deployment)
    assert [c["state"] for c in copies(deployment)] == ["succeeded"]
    assert deployment.refusals() == {}


def test_process_dying_before_the_put_is_recovered_by_a_later_tick(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    arm = deployment.replicator.arm

    monkeypatch.setattr(arm, "start_copy", worker_dies)
    with pytest.raises(SystemExit):
        deployment.deliver(snapshot_events(deployment))
    monkeypatch.undo()
    assert copies(deployment) == []
    deployment.tick(advance=START_GRACE.total_seconds() / 2)
    assert copies(deployment) == []  # within the grace: the first run may still be alive
    report = deployment.tick(advance=START_GRACE.total_seconds())
    assert report.restarted == 1 and len(copies(deployment)) == 1
    run_until_done(deployment)
    assert [c["state"] for c in copies(deployment)] == ["succeeded"]


def test_process_dying_after_the_put_does_not_copy_twice(deployment: Deployment, monkeypatch: pytest.MonkeyPatch):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    store = deployment.replicator.store

    monkeypatch.setattr(store, "save_chain", worker_dies)
    with pytest.raises(SystemExit):
        deployment.deliver(snapshot_events(deployment))
    monkeypatch.undo()
    assert len(copies(deployment)) == 1
    run_until_done(deployment)
    assert len(copies(deployment)) == 1 and copies(deployment)[0]["state"] == "succeeded"
    (row,) = jobs(deployment)
    assert row["State"] == CopyState.SUCCEEDED.value


def test_two_target_regions_get_independent_chains(deployment: Deployment, monkeypatch: pytest.MonkeyPatch):
    settings = deployment.replicator.settings
    monkeypatch.setattr(deployment.replicator, "settings", replace(settings, target_regions=("westus3", "centralus")))
    snaps = disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    assert sorted(c["region"] for c in copies(deployment)) == ["centralus", "westus3"]
    run_until_done(deployment)
    for region in ("centralus", "westus3"):
        made = [c["source_id"].lower() for c in copies(deployment) if c["region"] == region]
        assert made == [s.lower() for s in snaps]
    assert deployment.refusals() == {}


def test_in_flight_rows_are_the_only_rows_the_timer_reads(deployment: Deployment):
    """A tick's Table reads do not grow with history: completed jobs are never scanned."""
    disk_with_snapshots(deployment, "vm0-data0", 3)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    before = deployment.operations.total
    deployment.tick(advance=30)
    idle_cost = deployment.operations.total - before
    assert idle_cost <= 3  # the directory, the region's flights, its waiting chains
    assert SUB  # the subscription every test uses


def test_arm_outage_during_an_event_raises_so_event_grid_redelivers(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    events = snapshot_events(deployment)
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=503, count=10))
    with pytest.raises(Exception, match="503"):
        deployment.deliver(events)
    deployment.world.clear_faults()
    deployment.deliver(events)  # Event Grid's retry
    assert len(copies(deployment)) == 1


def test_one_transient_arm_error_is_absorbed_by_the_sdk_retry(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    deployment.world.add_fault(Fault(method="GET", kind="snapshots_list", status=503, count=1))
    report = deployment.tick(advance=10)
    assert report.errors == [] and report.polled == 1


def test_snapshots_outside_the_source_scopes_cost_no_arm_call(deployment: Deployment, monkeypatch: pytest.MonkeyPatch):
    from shared.ids import Scope

    settings = deployment.replicator.settings
    scoped = replace(settings, source_scopes=(Scope.parse(f"/subscriptions/{SUB}/resourceGroups/other-rg"),))
    monkeypatch.setattr(deployment.replicator, "settings", scoped)
    disk_with_snapshots(deployment, "vm0-data0", 1)
    gets = deployment.requests("GET snapshot")
    deployment.deliver(snapshot_events(deployment))
    assert copies(deployment) == [] and deployment.requests("GET snapshot") == gets


def test_a_family_spread_over_two_resource_groups_is_copied_in_order(deployment: Deployment):
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2")
    snaps = [
        deployment.fleet.take_snapshot(disk, "s0", "eastus2"),
        deployment.fleet.take_snapshot(disk, "s1", "eastus2", resource_group="backups-rg"),
        deployment.fleet.take_snapshot(disk, "s2", "eastus2"),
    ]
    events = snapshot_events(deployment)
    deployment.deliver([events[1], events[2]])  # the first snapshot's event is lost
    run_until_done(deployment)
    made = copies(deployment)
    assert [c["source_id"].lower() for c in made] == [s.lower() for s in snaps]
    assert all(c["state"] == "succeeded" for c in made)
    assert (
        made[1]["target_id"]
        .lower()
        .endswith("/resourcegroups/backups-rg/providers/microsoft.compute/snapshots/s1-westus3")
    )


def test_permanent_arm_refusal_on_the_event_path_is_logged_and_dropped(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=403, error_code="AuthorizationFailed"))
    deployment.deliver(snapshot_events(deployment))  # no exception: a redelivery would get the same 403
    assert copies(deployment) == []


def test_copystart_404_about_something_else_than_the_source_fails_with_arms_code(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.world.add_fault(Fault(method="PUT", kind="snapshot", status=404, error_code="ResourceGroupNotFound"))
    deployment.deliver(snapshot_events(deployment))
    first = jobs(deployment)[0]
    assert first["State"] == "failed" and first["ErrorCode"] == "ResourceGroupNotFound"
    run_until_done(deployment)  # the chain moved on to the next snapshot
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["vm0-data0-s1"]


def table_end_state(deployment: Deployment) -> None:
    """Nothing left half-done: no job pending, no head copying, no slot held or counted."""
    rows = deployment.rows("chain|")
    assert [r["RowKey"] for r in rows if r["RowKey"].startswith("job|") and r["State"] in ("queued", "copying")] == []
    assert [r["PartitionKey"] for r in rows if r["RowKey"] == "head" and r["CopyingKey"]] == []
    region = deployment.rows("region|")
    assert [r["RowKey"] for r in region if r["RowKey"].startswith("flight|")] == []
    assert all(r["InFlight"] == 0 for r in region if r["RowKey"] == "counter")


def test_process_dying_after_the_put_is_confirmed_by_the_tick_with_the_watermark(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    snaps = disk_with_snapshots(deployment, "vm0-data0", 2)
    store = deployment.replicator.store
    monkeypatch.setattr(store, "save_chain", worker_dies)
    with pytest.raises(SystemExit):
        deployment.deliver(snapshot_events(deployment))
    monkeypatch.undo()
    deployment.tick(advance=5)  # the target exists: the tick commits what the dead run could not
    head = next(r for r in deployment.rows("chain|") if r["RowKey"] == "head")
    assert head["LastStartedKey"].endswith("vm0-data0-s0") and head["CopyingKey"] == head["LastStartedKey"]
    run_until_done(deployment)
    assert [c["source_id"].lower() for c in copies(deployment)] == [s.lower() for s in snaps]
    table_end_state(deployment)
    assert deployment.refusals() == {}


def test_an_unconfirmed_put_keeps_its_slot_and_is_not_copied_twice(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    """ARM accepted the copy but the answer was lost: the slot must stay taken."""
    from shared.arm import ArmError

    settings = deployment.replicator.settings
    monkeypatch.setattr(deployment.replicator, "settings", replace(settings, max_copies_per_region=1))
    deployment.world.configure(cap=1)
    arm = deployment.replicator.arm
    real = arm.start_copy

    def accepted_but_lost(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise ArmError("GatewayTimeout", "the answer was lost", 504)

    monkeypatch.setattr(arm, "start_copy", accepted_but_lost)
    disk_with_snapshots(deployment, "a", 1)
    deployment.deliver(snapshot_events(deployment))
    monkeypatch.setattr(arm, "start_copy", real)
    disk_with_snapshots(deployment, "b", 1)
    deployment.deliver(snapshot_events(deployment))
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["a-s0"]  # b waits: cap 1
    run_until_done(deployment)
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["a-s0", "b-s0"]
    table_end_state(deployment)
    assert deployment.refusals() == {}


def test_a_tick_finishing_a_copy_before_its_start_is_committed_does_not_undo_anything(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    """The handler's commit arrives after the tick already finished the copy and started
    the next: it must not move the watermark back nor touch the next copy's slot."""
    snaps = disk_with_snapshots(deployment, "vm0-data0", 2)
    replicator = deployment.replicator
    real_commit = replicator.starting.commit
    late: list[Any] = []
    monkeypatch.setattr(replicator.starting, "commit", lambda *args: late.append(args))
    deployment.deliver(snapshot_events(deployment))  # PUT done, commit held back
    monkeypatch.setattr(replicator.starting, "commit", real_commit)
    report = deployment.tick(advance=200)  # confirms, completes s0 and starts s1
    assert report.completed == 1 and report.started == 1
    real_commit(*late[0])  # the slow handler finally commits, with what it read before
    run_until_done(deployment)
    assert [c["source_id"].lower() for c in copies(deployment)] == [s.lower() for s in snaps]
    head = next(r for r in deployment.rows("chain|") if r["RowKey"] == "head")
    assert head["LastStartedKey"].endswith("vm0-data0-s1")
    table_end_state(deployment)


def test_a_recreated_snapshot_with_a_reused_name_is_not_reported_as_copied(deployment: Deployment):
    disk = deployment.fleet.create_disk(RG, "vm0", "eastus2")
    monday = deployment.fleet.take_snapshot(disk, "vm0-monday", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    deployment.fleet.delete_snapshot(monday)
    deployment.advance(7 * 24 * 3600)  # a week later the rotation takes "vm0-monday" again
    deployment.fleet.take_snapshot(disk, "vm0-monday", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    rows = sorted(jobs(deployment), key=lambda r: r["RowKey"])
    assert [r["State"] for r in rows] == ["succeeded", "failed"]
    assert rows[1]["ErrorCode"] == "TargetNameTaken"
    assert len(copies(deployment)) == 1


def test_a_deleted_source_group_does_not_stop_the_chain(deployment: Deployment):
    disk = deployment.fleet.create_disk(RG, "vm0", "eastus2")
    deployment.fleet.take_snapshot(disk, "s0", "eastus2", resource_group="backups-rg")
    deployment.deliver(snapshot_events(deployment))
    deployment.advance(60)
    deployment.fleet.take_snapshot(disk, "s1", "eastus2", resource_group="backups-rg")
    events = snapshot_events(deployment)
    deployment.world.add_fault(
        Fault(
            method="GET",
            kind="snapshots_list",
            path_contains=f"/resourceGroups/{RG}/",
            status=404,
            error_code="ResourceGroupNotFound",
            count=1000,
        )
    )  # the VM's group (remembered as the disk's) is deleted
    deployment.deliver(events)
    run_until_done(deployment)
    assert deployment.world.faults()[0]["remaining"] < 1000  # the group really answered 404
    deployment.world.clear_faults()
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["s0", "s1"]
    assert deployment.last_report.errors == []


def test_a_committed_copy_whose_flight_never_said_so_cannot_strand_the_chain(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    """The chain committed the start, the flight's `copying` write was lost, then the
    copy vanished: the chain must record the failure and move on, not wait for ever."""
    from shared.store import Conflict

    disk_with_snapshots(deployment, "vm0-data0", 2)
    store = deployment.replicator.store
    real_save_flight = store.save_flight
    lost: list[Any] = []

    def lose_first_write(flight: Any) -> Any:
        if not lost:
            lost.append(flight)
            raise Conflict("write lost")
        return real_save_flight(flight)

    monkeypatch.setattr(store, "save_flight", lose_first_write)
    deployment.deliver(snapshot_events(deployment))
    monkeypatch.setattr(store, "save_flight", real_save_flight)
    assert lost and lost[0].phase.value == "copying"
    deployment.fleet.client.snapshots.begin_delete(RG, "vm0-data0-s0-westus3").result()  # someone deletes the copy
    run_until_done(deployment)
    states = {row["SourceId"].rsplit("/", 1)[-1]: row for row in jobs(deployment)}
    assert states["vm0-data0-s0"]["State"] == "failed" and states["vm0-data0-s0"]["ErrorCode"] == "TargetNotFound"
    assert states["vm0-data0-s1"]["State"] == "succeeded"
    table_end_state(deployment)
