"""Admission: whether a snapshot is copied and where (the policies' choice), and the job and
chain it becomes, failed at once when its encryption breaks Azure's rules.

Pure functions of (the snapshot as ARM shows it, the policies, now): it must not read a
clock, a table or ARM. The intake, the sweep and operators' requests all go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.ids import InvalidResourceId, ResourceGroupId, ResourceId, Scope
from shared.model import (
    ChainHead,
    ChainKey,
    CopyError,
    CopyState,
    Job,
    Snapshot,
)
from shared.placement import Placement, Selected, evaluate
from shared.policies import Policy

# What a listing proves (README, "The replication rules snapcopy keeps"): a LIST may lag
# behind writes, so absence from it proves nothing, and the time it was taken vouches for
# nothing. What it shows is read as one consistent view of the collection: a listing that
# shows a snapshot of a family shows every older snapshot of that family that exists. A
# snapshot starts only once a listing has shown it, or a newer one of its family.
# A source snapshot snapcopy waits on (its own background copy, or a listing that lags
# behind it) is read again with a GET no sooner and no later than these.
SOURCE_CHECK_MIN = timedelta(minutes=1)
SOURCE_CHECK_MAX = timedelta(minutes=30)
SOURCE_GONE = "source snapshot no longer exists (ARM answered 404 before its copy started)"


@dataclass(frozen=True)
class Ignore:
    reason: str


@dataclass(frozen=True)
class CopyTo:
    targets: tuple[Selected, ...]

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(item.target.region for item in self.targets)


@dataclass(frozen=True)
class NotYet:
    """ARM's answer lacks what the decision needs (timeCreated): read the snapshot again later."""

    reason: str


def eligibility(
    snapshot: Snapshot, policies: tuple[Policy, ...], scopes: Sequence[Scope], regions: Sequence[str] | None = None
) -> Ignore | CopyTo | NotYet:
    """Decide whether a source snapshot is copied, and where: the targets of the policies
    that select it (`regions`, when given, narrows them: an operator's request)."""
    if snapshot.is_copy:
        return Ignore("a CopyStart copy (ours or another's): never copied again")
    chosen, passed = evaluate(policies, snapshot.id, snapshot.tags, tuple(scopes))
    if not chosen:
        if len(policies) == 1 and policies[0].implicit:
            return Ignore("outside COPY_SOURCE_SCOPES")
        return Ignore("no policy selects it (" + "; ".join(f"{item.policy}: {item.reason}" for item in passed) + ")")
    if not snapshot.incremental:
        return Ignore("not incremental: CopyStart copies incremental snapshots only")
    if not snapshot.family_id:
        return Ignore("incremental but ARM reported no incrementalSnapshotFamilyId")
    if regions is not None:
        chosen = [item for item in chosen if item.target.region in regions]
        if not chosen:
            return Ignore(f"no policy copies it to {', '.join(regions)}")
    targets = tuple(item for item in chosen if item.target.region != snapshot.location.lower())
    if not targets:
        return Ignore(f"already in every target region ({snapshot.location})")
    if snapshot.time_created is None:
        return NotYet("ARM reported no timeCreated, without which copies cannot be ordered; read it again later")
    return CopyTo(targets)


def new_job(snapshot: Snapshot, placement: Placement, now: datetime, *, chain_set: str | None = None) -> Job:
    """The queued copy of `snapshot` as placed (one `eligibility` said is copyable); failed
    at once, never sent, when its encryption breaks Azure's rules (`encryption_problem`).
    `chain_set`: the disk encryption set of the chain it joins (None: a new chain)."""
    if snapshot.family_id is None or snapshot.time_created is None:
        raise ValueError(f"{snapshot.id}: a job needs ARM's incrementalSnapshotFamilyId and timeCreated")
    ready = snapshot.is_ready
    job = Job(
        chain=ChainKey(snapshot.family_id.lower(), placement.region),
        source_id=snapshot.id,
        source_time=snapshot.time_created,
        target_id=placement.target_id,
        source_unique_id=snapshot.unique_id,
        source_ready=ready,
        source_percent=None if ready else snapshot.completion_percent,
        source_checked_at=now,
        queued_at=now,
        size_bytes=snapshot.size_bytes,
        policy=placement.policy,
        tags=placement.tags,
        copy_speed=placement.copy_speed,
        disk_encryption_set_id=placement.disk_encryption_set_id,
        method=placement.method,
        blob_endpoint=placement.storage.blob_endpoint if placement.storage else "",
        blob_container=placement.storage.container if placement.storage else "",
    )
    problem = encryption_problem(snapshot, placement, chain_set)
    if problem is None:
        return job
    return replace(job, state=CopyState.FAILED, finished_at=now, error=problem, reason=problem.message)


def chain_set(head: ChainHead) -> str | None:
    """The disk encryption set a chain's next copies must use: the one its copies use once
    one has started (None before: nothing in Azure holds the chain to a set yet)."""
    return head.disk_encryption_set_id if head.last_started_key else None


def encryption_problem(snapshot: Snapshot, placement: Placement, chain_set: str | None) -> CopyError | None:
    """Why a copy must not be sent: a customer-key source needs a disk encryption set in the
    target region, and a disk and all of its incremental snapshots share one set, so a
    chain's copies never change theirs."""
    where = f"policy {placement.policy!r} in {placement.region}"
    if snapshot.customer_key and not placement.disk_encryption_set_id:
        return CopyError(
            "EncryptionSetRequired",
            f"{snapshot.id.name} is encrypted with a customer-managed key, and {where} names no "
            "diskEncryptionSetId: Azure needs a disk encryption set in the target region for its copy",
        )
    des = placement.disk_encryption_set_id
    if des and des.split("/")[2].lower() != placement.target_id.subscription.lower():
        return CopyError(
            "EncryptionSetSubscription",
            f"{where} names the disk encryption set {des}, in another subscription than the copy's "
            f"({placement.target_id.subscription}): a disk encryption set serves its own subscription only",
        )
    if chain_set is not None and chain_set.lower() != placement.disk_encryption_set_id.lower():
        return CopyError(
            "EncryptionSetChanged",
            f"the chain's copies in {placement.region} use {chain_set or 'platform-managed keys'}, and {where} "
            f"now names {placement.disk_encryption_set_id or 'none'}: a disk and all of its incremental snapshots "
            "must have the same disk encryption set, so this copy is not sent",
        )
    return None


def new_head(
    snapshot: Snapshot, region: str, group: ResourceGroupId, encryption_set: str = "", method: str = ""
) -> ChainHead:
    """A new chain of the snapshot's family into `region`, its copies going to `group`
    (encrypted with `encryption_set`, or platform-managed keys), made by `method` (for
    the chain's life: a chain is copied one way)."""
    if snapshot.family_id is None:
        raise ValueError(f"{snapshot.id}: a chain needs ARM's incrementalSnapshotFamilyId")
    return ChainHead(
        key=ChainKey(snapshot.family_id.lower(), region),
        source_groups=source_groups_of(snapshot),
        target_group=group,
        disk_id=snapshot.disk_id or "",
        disk_encryption_set_id=encryption_set,
        method=method,
    )


def source_groups_of(snapshot: Snapshot) -> tuple[ResourceGroupId, ...]:
    """Where a family's snapshots are looked for: the snapshot's group and its disk's."""
    groups = [snapshot.id.group]
    if snapshot.disk_id:
        try:
            disk = ResourceId.parse(snapshot.disk_id, kind="disks")
        except InvalidResourceId:
            return tuple(groups)
        disk_group = disk.group
        if disk_group not in groups:
            groups.append(disk_group)
    return tuple(groups)


def arrival(job: Job, head: ChainHead) -> Job:
    """A snapshot reported (event, request or listing) for a chain: queue it, or skip it
    if a newer snapshot of the family has already started copying (Azure's copy order)."""
    if head.last_started_key and job.key <= head.last_started_key:
        return replace(
            job,
            state=CopyState.SKIPPED,
            finished_at=job.queued_at,
            reason=f"older than {head.last_started_key.split('|')[-1]}, which already started copying "
            f"to {head.key.region}; Azure copies a family in creation order only",
        )
    return job
