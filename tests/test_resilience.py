"""Stuck copies are flagged; events that keep failing are recorded and dropped after a bound."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest

from local.emulator.faults import Fault
from shared.arm import ArmError
from tests.conftest import Deployment
from tests.test_functions import copies, disk_with_snapshots, jobs, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

GIB = 1024**3


def test_a_copy_without_progress_is_flagged_stuck_then_cleared(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
):
    # 128 GiB at ~13.7 kB/s: 10^7 s, so completionPercent (0.1 % steps) stays 0.0 for 2.8 hours
    deployment.world.configure(copy_bytes_per_second=128 * GIB / 1e7)
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    deployment.replicator.settings = replace(deployment.replicator.settings, stuck_after=timedelta(minutes=120))
    from tests.test_api_requests import call

    with caplog.at_level(logging.WARNING, logger="snapcopy"):
        for _ in range(11):  # 110 minutes: not yet
            deployment.tick(advance=600)
        assert deployment.last_report.stuck == 0
        deployment.tick(advance=900)
        deployment.tick(advance=60)
    assert deployment.last_report.stuck == 1
    assert sum("copy stuck" in message for message in caplog.messages) == 1  # said once, not every tick
    (copy_view,) = call(deployment, "list_copies", "GET", params={"state": "copying"})[2]["value"]
    assert copy_view["stuck"] is True and copy_view["percent"] == 0.0
    deployment.tick(advance=3 * 3600)  # 0.1 % at last
    assert deployment.last_report.stuck == 0
    (copy_view,) = call(deployment, "list_copies", "GET", params={"state": "copying"})[2]["value"]
    assert copy_view["stuck"] is False and copy_view["percent"] > 0 and copy_view["lastProgressAt"]


def test_an_event_that_keeps_failing_is_recorded_and_dropped_after_the_bound(deployment: Deployment):
    deployment.replicator.settings = replace(deployment.replicator.settings, max_event_attempts=3)
    disk_with_snapshots(deployment, "vm0-data0", 1)
    (poison,) = snapshot_events(deployment)
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=503, path_contains="vm0-data0", count=1000))
    for _ in range(2):  # Event Grid redelivers while the handler raises
        with pytest.raises(ArmError):
            deployment.host.deliver_event(poison)
    disk_with_snapshots(deployment, "vm1-data0", 1)
    deployment.deliver(snapshot_events(deployment))  # other events are not held up meanwhile
    assert [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment)] == ["vm1-data0-s0"]
    assert deployment.host.deliver_event(poison) is None  # third failure: recorded, dropped, not raised
    (row,) = deployment.rows("poison")
    assert row["Attempts"] == 3 and row["Poisoned"] is True and row["EventId"] == poison["id"]
    assert "ServiceUnavailable" in row["LastError"] or "503" in row["LastError"]
    # the snapshot is not lost: the sweep lists the source and queues it
    deployment.world.clear_faults()
    assert deployment.replicator.sweep().found == 1
    run_until_done(deployment)
    assert sorted(row["State"] for row in jobs(deployment)) == ["succeeded", "succeeded"]
