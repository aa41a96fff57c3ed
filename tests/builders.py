"""Builders for plain test values: `a_snapshot().taken_at(...)`, not 40-line fixtures."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.admission import new_head, new_job
from shared.ids import ResourceGroupId, ResourceId, TargetResourceGroup
from shared.model import ChainHead, ChainKey, InFlight, Job, Phase, Snapshot
from shared.placement import Selected, place
from shared.policies import Policy, implicit_policy

SUB = "6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d"
OTHER_SUB = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def snapshot_id(name: str, *, rg: str = "prod-rg", sub: str = SUB) -> ResourceId:
    return ResourceId(sub, rg, "snapshots", name)


class SnapshotBuilder:
    def __init__(self) -> None:
        self._snap = Snapshot(
            id=snapshot_id("disk0-snap0"),
            location="eastus2",
            incremental=True,
            family_id="3c2b1a09-8f7e-4d6c-b5a4-938271605f4e",
            time_created=T0,
            provisioning_state="Succeeded",
            create_option="Copy",
            source_resource_id=f"/subscriptions/{SUB}/resourceGroups/prod-rg/providers/Microsoft.Compute/disks/disk0",
        )

    def named(self, name: str, *, rg: str = "prod-rg", sub: str = SUB) -> SnapshotBuilder:
        self._snap = replace(self._snap, id=snapshot_id(name, rg=rg, sub=sub))
        return self

    def of_family(self, family: str) -> SnapshotBuilder:
        self._snap = replace(self._snap, family_id=family)
        return self

    def taken_at(self, when: datetime | int) -> SnapshotBuilder:
        """A datetime, or minutes after T0."""
        moment = when if isinstance(when, datetime) else T0 + timedelta(minutes=when)
        self._snap = replace(self._snap, time_created=moment)
        return self

    def located(self, region: str) -> SnapshotBuilder:
        self._snap = replace(self._snap, location=region)
        return self

    def full(self) -> SnapshotBuilder:
        self._snap = replace(self._snap, incremental=False, family_id=None)
        return self

    def copy_started(self) -> SnapshotBuilder:
        self._snap = replace(self._snap, create_option="CopyStart")
        return self

    def still_creating(self) -> SnapshotBuilder:
        self._snap = replace(self._snap, provisioning_state="Creating")
        return self

    def tagged(self, **tags: str) -> SnapshotBuilder:
        self._snap = replace(self._snap, tags=dict(tags))
        return self

    def build(self) -> Snapshot:
        return self._snap


def created(snapshot: Snapshot) -> datetime:
    """A built snapshot's creation time (builders always set one)."""
    assert snapshot.time_created is not None
    return snapshot.time_created


def a_snapshot() -> SnapshotBuilder:
    return SnapshotBuilder()


def family_snapshots(count: int, *, family: str | None = None, every_minutes: int = 60) -> list[Snapshot]:
    """`count` snapshots of one disk, oldest first."""
    family = family or str(uuid.uuid4())
    return [
        a_snapshot().named(f"disk-{family[:4]}-s{i}").of_family(family).taken_at(i * every_minutes).build()
        for i in range(count)
    ]


def implicit(*regions: str) -> tuple[Policy, ...]:
    """The policy COPY_TARGET_REGIONS makes, copies beside their sources."""
    return (implicit_policy(regions, TargetResourceGroup()),)


def head_for(snapshot: Snapshot, region: str = "westus3", **changes: Any) -> ChainHead:
    head = new_head(snapshot, region, snapshot.id.group)
    return replace(head, **changes)


def job_for(snapshot: Snapshot, region: str = "westus3", now: datetime = T0, **changes: Any) -> Job:
    (policy,) = implicit(region)
    placement = place(Selected(policy, policy.targets[0]), snapshot, snapshot.id.group)
    return replace(new_job(snapshot, placement, now), **changes)


def flight_for(job: Job, started_at: datetime, phase: Phase = Phase.COPYING, **changes: Any) -> InFlight:
    flight = InFlight(
        region=job.region,
        chain=job.chain,
        job_key=job.key,
        source_id=job.source_id,
        target_id=job.target_id,
        phase=phase,
        started_at=started_at,
    )
    return replace(flight, **changes)


def group(rg: str = "prod-rg", sub: str = SUB) -> ResourceGroupId:
    return ResourceGroupId(sub, rg)


def chain(family: str, region: str = "westus3") -> ChainKey:
    return ChainKey(family, region)
