"""No stranded work: broken states built directly in the table, repaired by the next tick or sweep.

The invariant (README, "The replication rules snapcopy keeps"): every chain with queued
work has something that will start it: a copy in flight (a flight row the tick polls) or
a wait marker (which the tick reads when a slot is free). Each test breaks it, or the
state around it, the way a crash or a hand edit would, and shows the repair.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.model import CopyState, Waiting
from shared.progress import TARGET_APPEAR_GRACE
from shared.store import WAIT_PREFIX
from tests.conftest import Deployment
from tests.test_functions import copies, disk_with_snapshots, jobs, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]


def test_a_queued_job_with_no_wait_marker_is_queued_again_by_the_sweep(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    (region,) = deployment.store.list_regions()
    run_until_done_first = deployment.tick(advance=200)  # the first copy ends; the second starts
    assert run_until_done_first.completed == 1
    load = deployment.store.load_region(region)
    (flight,) = load.in_flight
    # break it: the second copy's flight and its marker are gone, its job is queued again
    deployment.store.release_slot(load, flight)
    marker = deployment.store.find_waiting(region, flight.chain)
    assert marker is not None
    deployment.store.clear_waiting(marker)
    head = deployment.store.load_head(flight.chain)
    assert head is not None
    job = deployment.store.load_job(flight.chain, flight.job_key)
    assert job is not None
    deployment.store.save_chain(
        replace(head, copying_key="", last_started_key=head.last_completed_key),
        [replace(job, state=CopyState.QUEUED, started_at=None)],
    )
    deployment.world.clock.advance(300)  # type: ignore[attr-defined]
    assert deployment.tick().started == 0  # nothing would ever start it
    report = deployment.replicator.sweep()
    assert report.stranded == 1 and "stranded=1" in report.summary()
    run_until_done(deployment)
    assert [row["State"] for row in jobs(deployment)] == ["succeeded", "succeeded"]


def test_a_head_pointing_at_a_copy_arm_does_not_have_is_settled_and_the_chain_moves_on(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment)[:1])  # the second snapshot's event is late
    (region,) = deployment.store.list_regions()
    load = deployment.store.load_region(region)
    (flight,) = load.in_flight
    deployment.fleet.delete_snapshot(str(flight.target_id))  # the copy ARM had is gone
    deployment.store.release_slot(load, flight)  # and nothing polls it any more
    report = deployment.replicator.sweep()
    assert report.orphans == 1
    deployment.tick(advance=TARGET_APPEAR_GRACE.total_seconds() + 60)
    first = deployment.store.load_job(flight.chain, flight.job_key)
    assert first is not None and first.state == CopyState.FAILED and first.error is not None
    assert first.error.code in ("TargetNotFound", "CopyCancelled") and first.reason
    run_until_done(deployment)
    assert [row["State"] for row in jobs(deployment)][-1] == "succeeded"  # the chain moved on


def test_a_wait_marker_with_no_queued_job_is_dropped_by_the_tick(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    (region,) = deployment.store.list_regions()
    (row,) = jobs(deployment)
    chain = deployment.store.list_chains()[0]
    deployment.store.set_waiting(Waiting(region, chain, deployment.world.clock.now()))
    assert deployment.store.load_region(region).waiting
    report = deployment.tick(advance=60)
    assert report.waiting == 1 and report.started == 0
    assert not deployment.store.load_region(region).waiting
    assert not [r for r in deployment.rows("region|") if r["RowKey"].startswith(WAIT_PREFIX)]
    assert row["State"] == "succeeded"


def test_a_slot_counter_off_by_one_is_corrected_by_the_next_tick(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    (region,) = deployment.store.list_regions()
    load = deployment.store.load_region(region)
    deployment.store.correct_counter(replace(load, in_flight=load.in_flight * 2))  # 2 counted, 1 real
    report = deployment.tick(advance=10)
    assert report.healed == 1 and "healed=1" in report.summary()
    assert deployment.store.load_region(region).in_flight_count == 1
    run_until_done(deployment)
    assert deployment.store.load_region(region).in_flight_count == 0
    assert [c["state"] for c in copies(deployment)] == ["succeeded"]


def test_queued_jobs_left_below_the_watermark_are_skipped_with_the_reason_by_the_sweep(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    events = snapshot_events(deployment)
    deployment.deliver(events[1:])  # the newer one's event; the listing queues the older first
    run_until_done(deployment)
    chain = deployment.store.list_chains()[0]
    older, newer = deployment.store.list_jobs(chain)
    head = deployment.store.load_head(chain)
    assert head is not None and newer.state == CopyState.SUCCEEDED
    # a start's last batch of overtaken jobs never landed: a queued job below the watermark
    deployment.store.save_job(replace(older, state=CopyState.QUEUED, finished_at=None))
    report = deployment.replicator.sweep()
    assert report.stranded == 1
    again = deployment.store.load_job(chain, older.key)
    assert again is not None and again.state == CopyState.SKIPPED and "creation order" in again.reason
