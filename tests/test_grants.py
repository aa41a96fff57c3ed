"""Shared read access to snapshots (the diff method): the pure rules, then the real thing
against the ARM emulator and Azurite. Chains of one disk in three regions share one grant
per snapshot; a family never holds more than its budget (Azure's five minus one), newcomers
wait instead of being refused; the last holder revokes; the sweep revokes what nobody holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.engine.access import Access
from shared.grants import (
    CLAIM,
    FAMILY_BUDGET,
    GRANT_SECONDS,
    RENEW_MARGIN,
    Grant,
    Need,
    Refusal,
    idle,
    need,
    refused_read,
)
from shared.ids import ResourceId
from tests.conftest import Deployment
from tests.test_functions import RG

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=6)


def grant(
    name: str, holders: tuple[str, ...] = ("a",), sas: str = "https://md/x?sig=1", expires: datetime = LATER
) -> Grant:
    return Grant(
        f"/subscriptions/s/resourcegroups/g/providers/microsoft.compute/snapshots/{name}", "f", sas, expires, holders
    )


def test_a_live_grant_is_joined_a_claimed_one_waited_for_and_a_dying_one_renewed():
    assert need(grant("s1"), [grant("s1")], T0) is Need.JOIN
    assert need(grant("s1", sas="", expires=T0 + CLAIM), [], T0) is Need.WAIT
    assert need(grant("s1", sas="", expires=T0), [], T0 + timedelta(seconds=1)) is Need.GRANT  # a dead claim
    assert need(grant("s1", expires=T0 + RENEW_MARGIN), [], T0) is Need.GRANT


def test_a_family_at_its_budget_makes_a_newcomer_wait():
    family = [grant(f"s{index}") for index in range(FAMILY_BUDGET)]
    assert need(None, family, T0) is Need.WAIT
    assert need(None, family[1:], T0) is Need.GRANT
    # a grant that ran out (or was marked spent, or a claim that died) still counts until it
    # is revoked and its row deleted: ARM may still hold its SAS
    ran_out = [grant("s0", expires=T0), *family[1:]]
    assert need(None, ran_out, T0 + timedelta(seconds=1)) is Need.WAIT
    # asking again for the one that ran out replaces its own SAS: within the budget
    assert need(ran_out[0], ran_out, T0 + timedelta(seconds=1)) is Need.GRANT
    # but not once the others fill the budget without it
    assert need(ran_out[0], [ran_out[0], *family[1:], grant("s9")], T0 + timedelta(seconds=1)) is Need.WAIT


def test_a_refused_read_spends_only_the_grant_s_own_live_sas():
    live = grant("s0")
    assert refused_read(live, live.sas, T0) is Refusal.SPENT
    assert refused_read(live, "https://old/sas", T0) is Refusal.RENEWED  # renewed since: read again
    assert refused_read(grant("s0", sas="", expires=T0 + CLAIM), live.sas, T0) is Refusal.RENEWED  # renewing
    assert refused_read(grant("s0", sas="", expires=T0), live.sas, T0) is Refusal.GONE  # a claim that died
    assert refused_read(grant("s0", expires=T0), live.sas, T0) is Refusal.GONE  # ran out
    assert refused_read(None, "", T0) is Refusal.GONE


def test_the_sweep_forgets_grants_nobody_holds_or_that_ran_out():
    held, nobody, out = grant("s0"), grant("s1", holders=()), grant("s2", expires=T0)
    claimed = grant("s3", holders=(), sas="", expires=T0 + CLAIM)
    assert idle([held, nobody, out, claimed], T0 + timedelta(seconds=1)) == [nobody, out]


@pytest.mark.azurite
@pytest.mark.emulator
def test_chains_of_one_disk_share_each_snapshot_s_grant_within_the_family_s_budget(deployment: Deployment):
    access = Access(deployment.replicator.deps)
    world = deployment.world
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    snapshots = [ResourceId.parse(deployment.fleet.take_snapshot(disk, f"s{i}", "eastus2")) for i in range(6)]
    family = deployment.fleet.client.snapshots.get(RG, "s0").incremental_snapshot_family_id or ""
    regions = ("westus3", "centralus", "northeurope")
    held = {region: access.acquire(snapshots[1], family, f"chain|{family}|{region}") for region in regions}
    sas = {grant.sas if grant else None for grant in held.values()}
    assert len(sas) == 1 and None not in sas  # one SAS for the three chains
    assert world.access_counters()["issued"] == 1
    for index in (0, 2, 3):
        assert access.acquire(snapshots[index], family, "chain|x|westus3")
    assert access.acquire(snapshots[4], family, "chain|x|westus3") is None  # the budget: wait, not refused
    assert world.access_counters()["refused"] == 0
    for region in regions[:2]:
        access.release(snapshots[1], family, f"chain|{family}|{region}")
    assert str(snapshots[1]).lower() in world.open_grants()  # the third chain still reads it
    access.release(snapshots[1], family, f"chain|{family}|{regions[2]}")
    assert str(snapshots[1]).lower() not in world.open_grants()  # the last holder revoked it
    assert access.acquire(snapshots[4], family, "chain|x|westus3")  # room again

    deployment.advance(GRANT_SECONDS - RENEW_MARGIN.total_seconds() + 1)  # s0's grant runs out soon
    before = world.access_counters()["issued"]
    renewed = access.acquire(snapshots[0], family, "chain|x|westus3")
    assert renewed and world.access_counters()["issued"] == before + 1
    deployment.advance(RENEW_MARGIN.total_seconds())  # the others ran out; nobody released them
    assert access.sweep() == 3  # s2, s3, s4 (s0 was renewed)
    assert world.open_grants() == [str(snapshots[0]).lower()]
    assert world.access_counters()["most_at_once"] <= FAMILY_BUDGET
