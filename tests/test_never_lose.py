"""Never lose a snapshot: Azure's less common answers, against the emulator's real HTTPS.

Each test makes the emulator behave as Azure can (LISTs that lag behind writes, Premium SSD
v2 sources with a background copy of their own, CopyStart answers of every legal shape, one
source refused for ever, throttling) and shows that every snapshot is still copied, in
order, with no rule broken, and that the trouble stays with the chain it belongs to.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from local.emulator.faults import Answer, Fault
from shared.arm import ArmError
from shared.engine.backoff import BACKED_OFF
from shared.engine.intake import SourceNotSettled
from shared.ids import ResourceId
from shared.model import CopyState
from shared.triggers import RunFailed
from tests.builders import SUB
from tests.conftest import Deployment
from tests.test_functions import RG, copies, disk_with_snapshots, jobs, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]


def states(deployment: Deployment) -> list[str]:
    return [row["State"] for row in jobs(deployment)]


def in_order(deployment: Deployment, disk: str) -> list[str]:
    """The disk's snapshots in the order ARM started their copies."""
    return [c["source_id"].rsplit("/", 1)[-1] for c in copies(deployment) if f"/{disk}-s" in c["source_id"]]


def test_a_lagging_listing_never_loses_a_snapshot_known_from_a_get(deployment: Deployment):
    """The issue's run: 3 disks x 4 snapshots, LISTs two minutes behind writes, every event delivered."""
    deployment.world.configure(list_lag_seconds=120)
    disks = [deployment.fleet.create_disk(RG, f"vm{i}-data0", "eastus2") for i in range(3)]
    for round_ in range(4):
        for index, disk in enumerate(disks):
            deployment.fleet.take_snapshot(disk, f"vm{index}-data0-s{round_}", "eastus2")
            deployment.advance(5)
        deployment.deliver(snapshot_events(deployment))
        deployment.tick(advance=30)
    run_until_done(deployment, limit=80)
    assert states(deployment) == ["succeeded"] * 12
    for index in range(3):
        assert in_order(deployment, f"vm{index}-data0") == [f"vm{index}-data0-s{r}" for r in range(4)]
    assert deployment.refusals() == {}


def test_a_snapshot_whose_event_was_lost_is_found_once_listings_catch_up_and_copied_in_order(
    deployment: Deployment,
):
    deployment.world.configure(list_lag_seconds=180)
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2")
    for index in range(3):
        deployment.fleet.take_snapshot(disk, f"vm0-data0-s{index}", "eastus2")
        deployment.advance(20)
    first, _, last = snapshot_events(deployment)
    deployment.deliver([first, last])  # the middle one's event never comes
    report = deployment.tick(advance=10)
    assert report.started == 0  # no listing shows s0 yet: nothing may start before one does
    run_until_done(deployment)
    assert in_order(deployment, "vm0-data0") == ["vm0-data0-s0", "vm0-data0-s1", "vm0-data0-s2"]
    assert states(deployment) == ["succeeded"] * 3 and deployment.refusals() == {}


def test_a_premium_v2_source_is_copied_once_available_with_no_refused_copystart(deployment: Deployment):
    deployment.world.configure(source_copy_seconds_factor=10)  # 128 GiB: 21 minutes of background copy
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", sku="PremiumV2_LRS")
    deployment.fleet.take_snapshot(disk, "vm0-data0-s0", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    for _ in range(5):
        deployment.tick(advance=120)
    (job,) = [job for chain in deployment.store.list_chains() for job in deployment.store.list_jobs(chain)]
    assert job.state == CopyState.QUEUED and not job.source_ready and job.attempts == 0
    assert job.source_percent is not None and 0 < job.source_percent < 100
    response = deployment.host.call_http("list_copies", "GET", "/api/copies")
    (view,) = _body(response)["value"]
    assert view["sourceReady"] is False and 0 < view["sourcePercent"] < 100
    assert copies(deployment) == []  # no CopyStart was sent early
    run_until_done(deployment, step=60, limit=40)
    assert states(deployment) == ["succeeded"]
    assert deployment.refusals() == {}  # not one source_not_available refusal
    (job,) = [job for chain in deployment.store.list_chains() for job in deployment.store.list_jobs(chain)]
    assert job.attempts == 0


@pytest.mark.parametrize("answer", ["202-empty", "202-location-only", "201", "200"])
def test_every_answer_arm_may_give_to_a_copystart_is_taken_as_accepted(deployment: Deployment, answer: Answer):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.world.add_fault(Fault("PUT", "snapshot", answer=answer))
    deployment.deliver(snapshot_events(deployment))  # raises nothing out of the trigger
    (row,) = jobs(deployment)
    assert row["State"] == "copying" and row["Attempts"] == 0
    run_until_done(deployment)
    assert states(deployment) == ["succeeded"] and len(copies(deployment)) == 1


def test_one_chain_refused_for_ever_does_not_delay_the_others(deployment: Deployment):
    refused = disk_with_snapshots(deployment, "vm0-data0", 2)
    disk_with_snapshots(deployment, "vm1-data0", 3)
    deployment.world.add_fault(Fault("PUT", "snapshot", status=500, body_contains=refused[0], count=100_000))
    deployment.deliver(snapshot_events(deployment))
    for _ in range(12):
        deployment.tick(advance=60)
    ledger = [c for c in copies(deployment) if "/vm1-data0-s" in c["source_id"]]
    assert [c["state"] for c in ledger] == ["succeeded"] * 3
    for before, after in itertools.pairwise(ledger):
        gap = _seconds(after["started_at"]) - _seconds(before["finished_at"])
        assert gap <= 60, f"{after['source_id']} started {gap:.0f} s after its predecessor ended"


def test_a_timer_run_with_one_failure_finishes_the_rest_then_ends_failed(deployment: Deployment):
    deployment.fleet.create_disk("rg-a", "vm0-data0", "eastus2")
    deployment.fleet.create_disk("rg-b", "vm1-data0", "eastus2")
    for group, disk in (("rg-a", "vm0-data0"), ("rg-b", "vm1-data0")):
        disk_id = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{disk}"
        deployment.fleet.take_snapshot(disk_id, f"{disk}-s0", "eastus2")
    deployment.deliver(snapshot_events(deployment))
    deployment.world.add_fault(Fault("GET", "snapshot", status=503, path_contains="vm0-data0-s0-", count=100_000))
    deployment.advance(300)
    with pytest.raises(RunFailed, match="1 part"):
        deployment.host.run_timer()
    report = deployment.last_report
    assert report.completed == 1 and len(report.errors) == 1  # the other copy was finished first
    deployment.world.clear_faults()
    run_until_done(deployment)
    assert states(deployment) == ["succeeded", "succeeded"]


def test_a_throttled_subscription_is_left_alone_for_the_rest_of_the_tick(deployment: Deployment):
    replicator = deployment.replicator
    replicator.settings = replace(replicator.settings, max_copies_per_region=1)
    for index in range(4):
        disk_with_snapshots(deployment, f"vm{index}-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    assert len(copies(deployment)) == 1  # one in flight, three chains waiting for the slot
    deployment.world.add_fault(Fault("PUT", "snapshot", status=429, count=100_000))
    before = sum(deployment.world.counters()["requests"].values())
    deployment.advance(300)  # the copy in flight ends: three chains want its slot
    deployment.host.run_timer()  # a throttled start is a passing refusal, not a failure of the run
    asked = sum(deployment.world.counters()["requests"].values()) - before
    assert asked <= 4  # the finished copy's GET, one PUT with the SDK's own retries: then a pause
    report = deployment.last_report
    assert (report.completed, report.started, report.deferred) == (1, 0, 1)
    tried = [row for row in jobs(deployment) if row["Attempts"]]
    assert len(tried) == 1  # the other chains spent no attempt on a subscription ARM throttles
    deployment.world.clear_faults()
    deployment.advance(120)  # past the pause
    run_until_done(deployment)
    assert states(deployment) == ["succeeded"] * 4 and deployment.refusals() == {}


def _body(response: Any) -> Any:
    import json

    return json.loads(response.get_body())


def _seconds(moment: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(moment).timestamp()


def test_a_tick_out_of_time_leaves_the_rest_for_the_next_tick(deployment: Deployment, monkeypatch: pytest.MonkeyPatch):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.deliver(snapshot_events(deployment))
    monkeypatch.setattr("shared.engine.polling.TICK_BUDGET", timedelta(0))  # as if ARM had eaten the whole budget
    report = deployment.tick(advance=300)
    assert (report.regions, report.deferred, report.polled, report.errors) == (1, 1, 0, [])
    monkeypatch.setattr("shared.engine.polling.TICK_BUDGET", timedelta(minutes=4))
    assert deployment.tick().completed == 1


def test_a_snapshot_arm_shows_without_time_created_is_read_again_never_recorded(deployment: Deployment):
    (source,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    snapshot = deployment.replicator.arm.get_snapshot(ResourceId.parse(source))
    assert snapshot is not None
    with pytest.raises(SourceNotSettled):  # the event fails: Event Grid delivers it again
        deployment.replicator.record(replace(snapshot, time_created=None))
    assert deployment.store.get_index(snapshot.id) is None and jobs(deployment) == []
    deployment.deliver(snapshot_events(deployment))  # the redelivery reads it whole
    run_until_done(deployment)
    assert states(deployment) == ["succeeded"]


def test_a_long_retry_after_is_not_sat_out_in_a_call_but_pauses_the_subscription(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    (source,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    monkeypatch.setattr("shared.arm.RETRY_AFTER_CAP", 0.01)  # seconds the SDK may wait inside one call
    deployment.world.add_fault(Fault("GET", "snapshot", status=429, retry_after=600, count=100))
    arm = deployment.replicator.arm
    began = time.monotonic()
    with pytest.raises(ArmError) as raised:
        arm.get_snapshot(ResourceId.parse(source))
    assert time.monotonic() - began < 10 and raised.value.retry_after == 600
    until = arm.paused_until(SUB)
    assert until is not None and until - deployment.world.clock.now() == timedelta(seconds=600)
    asked = deployment.requests("GET snapshot")
    with pytest.raises(ArmError) as again:
        arm.get_snapshot(ResourceId.parse(source))
    assert again.value.code == BACKED_OFF and deployment.requests("GET snapshot") == asked  # no request
