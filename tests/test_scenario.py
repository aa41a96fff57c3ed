"""Whole-fleet scenarios: many disks, two regions, Event Grid's habits, a tight cap.

Checked against the emulator's ground truth, not against snapcopy's own tables.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import Deployment

pytestmark = [pytest.mark.azurite, pytest.mark.emulator, pytest.mark.scenario]

REGIONS = ("westus3", "centralus")
CAP = 3


Events = list[dict[str, Any]]


def event_grid_habits(events: Events, rng: random.Random) -> tuple[Events, Events]:
    """(delivered now, delivered late): shuffled, some duplicated up to 3x, a few lost."""
    now: Events = []
    late: Events = []
    for event in events:
        roll = rng.random()
        if roll < 0.15:
            continue  # lost: only ARM's listing can find this snapshot
        copies = 1 + (rng.random() < 0.3) + (rng.random() < 0.1)
        for _ in range(copies):
            (late if rng.random() < 0.2 else now).append(event)
    rng.shuffle(now)
    rng.shuffle(late)
    return now, late


def check_invariants(deployment: Deployment, expected: dict[str, list[str]]) -> None:
    copies = deployment.world.copies()
    by_chain: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for copy in copies:
        by_chain[(copy["family_id"], copy["region"])].append(copy)
    made = defaultdict(list)
    for copy in copies:
        made[(copy["source_id"].lower(), copy["region"])].append(copy)
    for sources in expected.values():
        for source in sources:
            for region in REGIONS:
                found = made[(source.lower(), region)]
                assert len(found) == 1, f"{source} → {region}: copied {found}"
                assert found[0]["state"] == "succeeded"
    for chain, items in by_chain.items():
        starts = [item["source_time_created"] for item in items]  # ground truth is in start order
        assert starts == sorted(set(starts)), f"{chain}: not in strict creation order"
        for earlier, later in itertools.pairwise(items):
            assert earlier["finished_at"] is not None and earlier["finished_at"] <= later["started_at"], (
                f"{chain}: two copies in flight at once"
            )
    assert deployment.refusals() == {}, "the emulator refused a copy: snapcopy broke an Azure rule"
    rows = deployment.rows("chain|")
    assert [r["RowKey"] for r in rows if r["RowKey"].startswith("job|") and r["State"] != "succeeded"] == []
    assert [r["PartitionKey"] for r in rows if r["RowKey"] == "head" and r["CopyingKey"]] == []
    slots = deployment.rows("region|")
    assert [r["RowKey"] for r in slots if r["RowKey"].startswith("flight|")] == [], "a slot is still held"
    assert all(r["InFlight"] == 0 for r in slots if r["RowKey"] == "counter"), "a region slot leaked"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fleet_with_duplicated_reordered_late_and_lost_events(deployment: Deployment, monkeypatch, seed: int):
    rng = random.Random(seed)
    settings = replace(deployment.replicator.settings, target_regions=REGIONS, max_copies_per_region=CAP)
    monkeypatch.setattr(deployment.replicator, "settings", settings)
    deployment.world.configure(cap=CAP)

    expected: dict[str, list[str]] = {}
    for index in range(5):
        group = f"rg-{index % 2}"
        disk = deployment.fleet.create_disk(group, f"vm{index}-data0", "eastus2", size_gb=rng.choice([32, 128, 512]))
        expected[disk] = []
    for round_ in range(4):
        for disk, snapshots in expected.items():
            name = disk.rsplit("/", 1)[-1]
            snapshots.append(deployment.fleet.take_snapshot(disk, f"{name}-s{round_}", "eastus2"))
            deployment.advance(rng.uniform(0.5, 20))

    events = [e for e in deployment.drain_events() if "/snapshots/" in e["subject"]]
    now, late = event_grid_habits(events, rng)
    deployment.deliver(now)
    for tick in range(200):
        deployment.tick(advance=rng.uniform(20, 90))
        deployment.deliver(deployment.drain_events())  # our copies' events, to the loop guard
        if tick == 3:
            deployment.deliver(late)  # retried deliveries, long after the fact
        copies = deployment.world.copies()
        if tick > 3 and len(copies) == 20 * len(REGIONS) and all(c["state"] == "succeeded" for c in copies):
            break
    check_invariants(deployment, expected)


def test_concurrent_handlers_and_overlapping_ticks_keep_every_rule(deployment: Deployment, monkeypatch):
    """8 event handlers and 2 timer runs at once against the same tables: ETags and
    batches must keep one-in-flight, order and the cap without any lock of ours."""
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(11)
    settings = replace(deployment.replicator.settings, target_regions=REGIONS, max_copies_per_region=CAP)
    monkeypatch.setattr(deployment.replicator, "settings", settings)
    deployment.world.configure(cap=CAP)
    expected: dict[str, list[str]] = {}
    for index in range(4):
        disk = deployment.fleet.create_disk("rg-c", f"vm{index}-data0", "eastus2")
        for i in range(3):
            expected.setdefault(disk, []).append(deployment.fleet.take_snapshot(disk, f"vm{index}-s{i}", "eastus2"))
            deployment.advance(0.5)  # distinct creation times: ties would hide order mistakes
    events = [e for e in deployment.drain_events() if "/snapshots/" in e["subject"]] * 3
    rng.shuffle(events)

    with ThreadPoolExecutor(max_workers=10) as pool:
        work = [pool.submit(deployment.host.deliver_event, event) for event in events]
        work += [pool.submit(deployment.host.run_timer) for _ in range(2)]
        for future in work:
            future.result()
    for _ in range(100):
        deployment.advance(60)
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(deployment.host.run_timer) for _ in range(2)]:
                future.result()
        deployment.deliver(deployment.drain_events())
        copies = deployment.world.copies()
        if len(copies) == 12 * len(REGIONS) and all(c["state"] == "succeeded" for c in copies):
            break
    check_invariants(deployment, expected)
