"""Reliability under faults: a fast slice of the chaos matrix (`make reliability` runs all of it).

Each seed turns up one family of faults (local/chaos.py); every scenario must end with no
invariant broken, and must really have injected what its family is about. Known bugs in
snapcopy that the matrix found are kept as regression seeds, with a minimal reproduction each.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.chaos import FAMILIES, Backend, Scenario, ScenarioResult, run_scenario
from local.chaos_diff import FAULTS as DIFF_FAULTS
from local.chaos_diff import DiffScenario, run_diff_scenario
from local.emulator.server import EmulatorServer
from local.topic import TopicServer
from tests.builders import SUB
from tests.conftest import Deployment
from tests.test_functions import copies, disk_with_snapshots, jobs, run_until_done, snapshot_events, worker_dies
from tests.test_sweep import scoped

pytestmark = [pytest.mark.azurite, pytest.mark.emulator, pytest.mark.reliability]


@pytest.fixture
def backend(emulator: EmulatorServer, storage_connection_string: str, topic_server: TopicServer) -> Backend:
    return Backend(emulator.world, emulator.url, str(emulator.ca_path), storage_connection_string, topic_server)


def injected(result: ScenarioResult) -> int:
    """How much of its own family a scenario really injected."""
    return {
        "events": result.lost + result.duplicates,
        "throttling": result.arm_faults,
        "server_errors": result.arm_faults,
        "slow": result.arm_faults,
        "dropped": result.arm_faults,
        "lost_answers": result.arm_faults,
        "copy_failures": result.copy_failures,
        "source_deletes": result.sources_deleted,
        "crashes": result.crashes,
        "concurrency": result.concurrent_calls if result.instances >= 3 else 0,
        "list_lag": result.lagged_lists,
        "premium_v2": result.v2_sources,
        "put_answers": result.arm_faults,
        "refused_source": result.arm_faults,
        "policies": result.pruned,
        "everything": min(result.crashes + result.arm_faults, result.concurrent_calls),
    }[result.family]


def regression(seed: int, why: str) -> Any:
    """A crash seed (quick fleet) that once broke an invariant (docs/reliability.md, "Bugs found")."""
    return pytest.param(seed, "crashes", id=f"seed-{seed}-crashes-{why}")


# seed -> family is FAMILY_CYCLE[seed % 18]: seeds 0..14 cover every family once (quick fleets)
SLICE = [pytest.param(seed, None, id=f"seed-{seed}") for seed in range(len(FAMILIES))]
REGRESSIONS = [
    # bug A: an event handler died right after _note_listing saved the head: vm0-data0-s0 → centralus skipped
    regression(234, "listing-before-jobs"),
    # bug B: a sweep died before mark_waiting: vm1-data0-s1 → centralus left queued for ever
    regression(87, "stranded-queue"),
]


@pytest.mark.parametrize(("seed", "family"), [*SLICE, *REGRESSIONS])
def test_no_invariant_breaks_under_faults(backend: Backend, seed: int, family: str | None):
    scenario = Scenario.generate(seed, quick=True, family=family)
    result = run_scenario(scenario, backend)
    assert result.violations == [], scenario.describe()
    assert injected(result) > 0, f"{scenario.describe()}: nothing of its family was injected"
    assert result.copies > 0 and result.events_delivered > 0


@pytest.mark.parametrize("seed", range(len(DIFF_FAULTS)), ids=lambda seed: f"diff-{DIFF_FAULTS[seed]}")
def test_no_diff_chain_breaks_under_faults(backend: Backend, seed: int):
    """The diff method's matrix (local/chaos_diff.py), one quick scenario per fault: every
    blob snapshot exact, every snapshot that exists copied, no row, SAS or refusal left."""
    scenario = DiffScenario.generate(seed, quick=True)
    result = run_diff_scenario(scenario, backend)
    assert result.violations == [], scenario
    assert result.injected > 0, f"{scenario}: nothing of its fault was injected"
    assert result.copied > 0


def test_every_family_is_in_the_slice():
    assert sorted(Scenario.generate(seed, quick=True).family for seed in range(len(FAMILIES))) == sorted(FAMILIES)


# --- bugs the matrix found, minimised --------------------------------------------------------


def test_bug_a_a_listing_is_never_saved_before_the_jobs_it_found(deployment: Deployment, monkeypatch):
    snaps = disk_with_snapshots(deployment, "vm0-data0", 3)
    events = snapshot_events(deployment)
    store = deployment.replicator.store
    real_save_head = store.save_head

    def saved_then_died(head: Any) -> None:
        real_save_head(head)
        worker_dies()

    monkeypatch.setattr(store, "save_head", saved_then_died)
    with pytest.raises(SystemExit):
        deployment.deliver(events[-1:])  # s0's and s1's events are late: the listing finds them
    monkeypatch.undo()
    deployment.deliver(events[-1:])  # Event Grid redelivers s2; s2 starts first
    run_until_done(deployment)
    deployment.deliver(events[:-1])  # the late events arrive
    deployment.host.run_timer(function="sweep_sources")
    run_until_done(deployment)
    assert [c["source_id"].lower() for c in copies(deployment)] == [s.lower() for s in snaps]


def test_bug_b_a_sweep_dying_after_queueing_does_not_strand_the_job(deployment: Deployment, monkeypatch):
    disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.drain_events()  # its event is lost: only the sweep can find it
    scoped(deployment, f"/subscriptions/{SUB}")
    store = deployment.replicator.store
    real_add = store.add_job_guarded

    def queued_then_died(*args: Any, **kwargs: Any) -> Any:
        real_add(*args, **kwargs)
        worker_dies()

    monkeypatch.setattr(store, "add_job_guarded", queued_then_died)
    with pytest.raises(SystemExit):
        deployment.host.run_timer(function="sweep_sources")
    monkeypatch.undo()
    deployment.host.run_timer(function="sweep_sources")  # the next sweep
    for _ in range(10):
        deployment.tick(advance=60)
    assert [row["State"] for row in jobs(deployment)] == ["succeeded"]
