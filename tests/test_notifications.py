"""Notifications end to end: the real EventGridPublisherClient publishing to the local
topic, Azurite holding the outbox, the ARM emulator doing the copies."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from local.topic import TopicServer, distinct_by_copy
from tests.conftest import Deployment, with_topic
from tests.test_api_requests import call
from tests.test_functions import RG, copies, disk_with_snapshots, jobs, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

STARTED, COMPLETED = "Snapcopy.CopyStarted", "Snapcopy.CopyCompleted"


@pytest.fixture
def app_settings(app_settings: dict[str, str], topic_server: TopicServer) -> dict[str, str]:
    return with_topic(app_settings, topic_server)


@pytest.fixture
def topic(topic_server: TopicServer, app_settings: dict[str, str]) -> TopicServer:
    return topic_server  # emptied by with_topic, for this test


def outbox(deployment: Deployment) -> list[dict[str, Any]]:
    """Outbox rows and marks left in the table."""
    rows = deployment.rows("")
    return [row for row in rows if row["RowKey"].startswith("outbox|") or row["PartitionKey"] == "outbox"]


def test_each_copy_announces_its_start_and_its_end_once_with_the_documented_fields(
    deployment: Deployment, topic: TopicServer
):
    sources = disk_with_snapshots(deployment, "vm0-data0", 3)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    events = topic.topic.events()
    assert distinct_by_copy(events) and all(
        kinds == {STARTED: 1, COMPLETED: 1} for kinds in distinct_by_copy(events).values()
    )
    assert len(distinct_by_copy(events)) == 3
    made = {c["source_id"]: c["target_id"] for c in copies(deployment)}
    for event in events:
        data = event["data"]
        assert event["specversion"] == "1.0" and event["source"] == "snapcopy"
        assert event["subject"] == data["sourceSnapshotId"] and data["sourceSnapshotId"] in sources
        assert data["targetSnapshotId"].lower() == made[data["sourceSnapshotId"]].lower()
        assert data["targetRegion"] == "westus3"
        status, _, view = call(deployment, "get_copy", "GET", copy=data["copyId"])
        assert status == 200 and view["sourceSnapshotId"] == data["sourceSnapshotId"]
        if event["type"] == COMPLETED:
            assert data["state"] == "succeeded" and data["completionPercent"] == 100.0
            assert data["completedAt"] == view["finishedAt"] and data["startedAt"] == view["startedAt"]
        else:
            assert data["state"] == "copying" and data["completedAt"] is None
    # per copy, the start is published before its end
    order = [(e["data"]["copyId"], e["type"]) for e in events]
    assert all(order.index((copy, STARTED)) < order.index((copy, COMPLETED)) for copy, _ in order)
    assert outbox(deployment) == []


def test_a_failing_topic_loses_no_notice_and_changes_no_copy(deployment: Deployment, topic: TopicServer):
    disk_with_snapshots(deployment, "vm0-data0", 3)
    topic.topic.fail_next(12, status=503)
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    assert [c["state"] for c in copies(deployment)] == ["succeeded"] * 3  # one PUT each, all done
    assert all(row["State"] == "succeeded" for row in jobs(deployment))
    for _ in range(20):  # the timer resends what the failed publishes left
        if not topic.topic.failing and not outbox(deployment):
            break
        deployment.tick(advance=60)
    assert outbox(deployment) == []
    kinds = distinct_by_copy(topic.topic.events())
    assert len(kinds) == 3 and all(k == {STARTED: 1, COMPLETED: 1} for k in kinds.values())


def test_notices_a_crash_left_unsent_are_found_by_the_sweep(
    deployment: Deployment, topic: TopicServer, monkeypatch: pytest.MonkeyPatch
):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    lost: list[Any] = []
    with monkeypatch.context() as dying:  # the worker dies after each commit, before its publish
        dying.setattr(deployment.replicator.notifier, "flush", lambda: lost.extend(deployment.store.take_committed()))
        deployment.deliver(snapshot_events(deployment))
    assert [notice.type.value for _, notice in lost] == [STARTED] and topic.topic.events() == []
    assert [row["RowKey"] for row in outbox(deployment)] == [f"outbox|{lost[0][1].id}"]
    deployment.tick()  # nothing marked it: the timer does not know
    assert topic.topic.events(STARTED) == []
    deployment.replicator.sweep()
    deployment.tick()
    assert [e["id"] for e in topic.topic.events(STARTED)] == [lost[0][1].id]
    run_until_done(deployment)
    assert outbox(deployment) == [] and len(topic.topic.events(COMPLETED)) == 1


def test_failed_skipped_and_stuck_copies_are_announced(deployment: Deployment, topic: TopicServer):
    (first, second, third) = disk_with_snapshots(deployment, "vm0-data0", 3)
    deployment.deliver(snapshot_events(deployment))
    (target,) = [c["target_id"] for c in copies(deployment)]
    deployment.world.fail_copy(target, "CopySourceUnavailable", "the source went away")
    deployment.world.configure(copy_bytes_per_second=1.0)  # the next copy stalls
    deployment.tick(advance=30)
    (failed,) = topic.topic.events("Snapcopy.CopyFailed")
    assert failed["subject"] == first and failed["data"]["error"]["code"] == "CopySourceUnavailable"
    assert failed["data"]["state"] == "failed" and failed["data"]["completedAt"]
    (queued,) = call(deployment, "list_copies", "GET", params={"state": "copying"})[2]["value"]
    # the third waits behind the second: cancel it
    waiting = call(deployment, "list_copies", "GET", params={"state": "queued"})[2]["value"]
    assert [view["sourceSnapshotId"] for view in waiting] == [third]
    call(deployment, "cancel_copy", "DELETE", copy=waiting[0]["copyId"])
    (skipped,) = topic.topic.events("Snapcopy.CopySkipped")
    assert skipped["subject"] == third and skipped["data"]["state"] == "cancelled" and skipped["data"]["reason"]
    assert queued["sourceSnapshotId"] == second
    # the second copy stalls: announced once when it is flagged stuck
    deployment.replicator.settings = replace(deployment.replicator.settings, stuck_after=timedelta(minutes=30))
    for _ in range(8):
        deployment.tick(advance=600)
    (stuck,) = topic.topic.events("Snapcopy.CopyStuck")
    assert stuck["subject"] == second and stuck["data"]["reason"].startswith("no progress for")


def test_an_rpo_breach_is_announced_once_and_again_after_it_recovered(deployment: Deployment, topic: TopicServer):
    deployment.replicator.settings = replace(deployment.replicator.settings, rpo_alert=timedelta(minutes=30))
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2")
    deployment.fleet.take_snapshot(disk, "vm0-data0-s0", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    deployment.replicator.sweep()
    assert topic.topic.events("Snapcopy.RpoBreached") == []
    deployment.advance(3600)
    deployment.replicator.sweep()
    deployment.replicator.sweep()  # still breached: not news
    (breach,) = topic.topic.events("Snapcopy.RpoBreached")
    chain = call(deployment, "list_chains", "GET")[2]["value"][0]
    assert breach["subject"] == chain["sourceDiskId"] and breach["data"]["targetRegion"] == "westus3"
    assert breach["data"]["rpoSeconds"] >= 3600 and chain["rpoBreached"] is True
    deployment.fleet.take_snapshot(disk, "vm0-data0-s1", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    run_until_done(deployment)
    deployment.replicator.sweep()  # recovered
    deployment.advance(3600)
    deployment.replicator.sweep()
    assert len({e["id"] for e in topic.topic.events("Snapcopy.RpoBreached")}) == 2


def test_a_topic_that_keeps_failing_costs_the_timer_one_request_not_one_per_partition(
    deployment: Deployment, topic: TopicServer
):
    for index in range(3):
        disk_with_snapshots(deployment, f"vm{index}-data0", 1)
    topic.topic.fail_next(1000)
    deployment.deliver(snapshot_events(deployment))
    marks = [row for row in outbox(deployment) if row["PartitionKey"] == "outbox"]
    assert len(marks) == 3  # three chains' partitions left unsent
    before = topic.topic.requests
    deployment.tick(advance=61)  # the rest after the failure is over: the timer resends
    assert topic.topic.requests - before == 1  # all three partitions in one request, refused
    topic.topic.reset()
    run_until_done(deployment)
    assert outbox(deployment) == [] and len(topic.topic.events(STARTED)) == 3
