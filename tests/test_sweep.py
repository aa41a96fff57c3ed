"""The reconciliation sweep: lost events, dead-lettered ones, and state that drifted from ARM."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.ids import ResourceGroupId, Scope
from shared.model import CopyState
from tests.builders import SUB
from tests.conftest import Deployment
from tests.test_functions import RG, copies, disk_with_snapshots, jobs, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]


def scoped(deployment: Deployment, *scopes: str) -> None:
    settings = deployment.replicator.settings
    deployment.replicator.settings = replace(settings, source_scopes=tuple(Scope.parse(s) for s in scopes))


def test_a_disk_whose_every_event_was_lost_is_found_and_copied_in_order(deployment: Deployment):
    snaps = disk_with_snapshots(deployment, "vm0-data0", 3)
    deployment.drain_events()  # every event lost
    scoped(deployment, f"/subscriptions/{SUB}")
    deployment.host.run_timer(function="sweep_sources")
    assert len(jobs(deployment)) == 3
    run_until_done(deployment)
    assert [c["source_id"].lower() for c in copies(deployment)] == [s.lower() for s in snaps]
    assert deployment.refusals() == {}


def test_a_second_sweep_finds_nothing_and_writes_no_job(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.drain_events()
    scoped(deployment, f"/subscriptions/{SUB}/resourceGroups/{RG}")
    first = deployment.replicator.sweep()
    assert (first.scopes, first.listed, first.found) == (1, 2, 2)
    rows = jobs(deployment)
    again = deployment.replicator.sweep()
    assert (again.listed, again.found, again.errors) == (2, 0, [])
    assert jobs(deployment) == rows


def test_without_scopes_the_sweep_covers_the_subscriptions_chains_have_seen(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))  # one disk heard of: its subscription is known
    disk_with_snapshots(deployment, "vm1-data0", 2)
    deployment.drain_events()  # a second disk in the same subscription, never heard of
    report = deployment.replicator.sweep()
    assert report.scopes == 1 and report.found == 2
    run_until_done(deployment)
    assert sorted(c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)) == [
        "vm0-data0-s0",
        "vm1-data0-s0",
        "vm1-data0-s1",
    ]


def test_a_drifted_slot_counter_is_corrected(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    (region,) = deployment.store.list_regions()
    load = deployment.store.load_region(region)
    assert load.in_flight_count == 1
    deployment.store.correct_counter(replace(load, in_flight=load.in_flight * 7))  # drift: 7 counted, 1 real
    assert deployment.store.load_region(region).in_flight_count == 7
    report = deployment.replicator.sweep()
    assert report.counters_fixed == 1 and deployment.store.load_region(region).in_flight_count == 1


def test_a_copy_nothing_polls_any_more_is_adopted_then_finished(deployment: Deployment):
    """The head says copying, but the flight row (what the timer polls) is gone."""
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    (region,) = deployment.store.list_regions()
    load = deployment.store.load_region(region)
    (flight,) = load.in_flight
    deployment.store.release_slot(load, flight)  # lost: the timer no longer sees the copy
    assert deployment.tick(advance=200).polled == 0
    report = deployment.replicator.sweep()  # ARM says the copy finished meanwhile
    assert report.orphans == 1
    run_until_done(deployment)
    assert [row["State"] for row in jobs(deployment)] == ["succeeded", "succeeded"]
    assert [c["state"] for c in copies(deployment)] == ["succeeded", "succeeded"]


def test_an_orphan_still_copying_gets_its_flight_back(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    (region,) = deployment.store.list_regions()
    load = deployment.store.load_region(region)
    deployment.store.release_slot(load, load.in_flight[0])
    assert deployment.replicator.sweep().orphans == 1
    load = deployment.store.load_region(region)
    assert load.in_flight_count == 1 and load.in_flight[0].attempt == "sweep"
    run_until_done(deployment)
    (row,) = jobs(deployment)
    assert row["State"] == CopyState.SUCCEEDED.value
    assert deployment.store.load_region(region).in_flight_count == 0


def test_starts_after_a_sweep_reuse_its_listing_instead_of_listing_groups_again(deployment: Deployment):
    """The sweep lists the whole subscription anyway: the chains it queues start from that
    listing, group by group, without a LIST of their own."""
    snaps = disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.drain_events()  # every event lost: only the sweep knows these snapshots
    scoped(deployment, f"/subscriptions/{SUB}")
    deployment.replicator.sweep()
    listed, put = deployment.requests("LIST snapshots"), deployment.requests("PUT snapshot")
    deployment.tick(advance=60)
    assert deployment.requests("PUT snapshot") == put + 1  # the oldest started, from the sweep's listing
    assert deployment.requests("LIST snapshots") == listed
    run_until_done(deployment)
    assert [c["source_id"].lower() for c in copies(deployment)] == [s.lower() for s in snaps]


def test_a_group_missing_from_the_subscription_listing_counts_as_listed_and_empty(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.drain_events()
    listings = deployment.replicator.listings
    now = deployment.replicator.clock()
    listings.keep(Scope.parse(f"/subscriptions/{SUB}"), deployment.replicator.arm.list_subscription_snapshots(SUB), now)
    elsewhere = listings.cached(ResourceGroupId(SUB.upper(), "no-snapshots-here"))
    assert elsewhere == ([], now)
    kept = listings.cached(ResourceGroupId(SUB, RG.upper()))
    assert kept is not None and [snap.id.name for snap in kept[0]] == ["vm0-data0-s0"]
    deployment.advance(2 * 3600)  # older than LISTING_KEEP: listed again when needed
    assert listings.cached(ResourceGroupId(SUB, RG)) is None
