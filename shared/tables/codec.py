"""Rows to models and back: pure functions, testable without Azurite.

The Table service keeps what it is given; these decide what it is given, and read it
back as snapcopy's models (shared/model.py). A missing column reads as the model's
neutral value, never as a guess that could change a decision.

It must not do I/O: plain dicts in and out.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.ids import ResourceId, parse_resource_group
from shared.model import (
    STANDARD_SPEED,
    ChainHead,
    ChainKey,
    CopyError,
    CopyState,
    IndexEntry,
    InFlight,
    Job,
    Phase,
    RegionKey,
    Waiting,
)
from shared.notices import assumed_announced
from shared.poison import EventFailure
from shared.tables.keys import (
    CHAINS,
    COUNTER,
    FLIGHT_PREFIX,
    HEAD,
    JOB_PREFIX,
    POISON,
    WAIT_PREFIX,
    index_partition,
    poison_key,
)

Entity = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MissingETag(ValueError):
    """A write that must be conditional was asked for without the ETag it is conditional on:
    a bug, refused loudly rather than turned into an unconditional overwrite."""


def conditional(etag: str | None, what: str) -> dict[str, Any]:
    if not etag:
        raise MissingETag(f"{what}: a conditional write needs the row's ETag, and none was read")
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def etag_of(entity: Any) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    value = metadata.get("etag")
    return str(value) if value else None


def result_etag(results: list[Any], index: int) -> str | None:
    value = results[index].get("etag") if len(results) > index else None
    return str(value) if value else None


def moment(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def index_entity(entry: IndexEntry) -> Entity:
    """A seen-index row (public, like `job_entity`: the benchmark writes history with them)."""
    return {
        "PartitionKey": index_partition(entry.snapshot_id),
        "RowKey": entry.snapshot_id.name.lower(),
        "SnapshotId": str(entry.snapshot_id),
        "Kind": entry.kind,
        "Reason": entry.reason,
        "FamilyId": entry.family_id,
        "Regions": entry.regions,
        "UniqueId": entry.unique_id,
        "RecordedAt": entry.recorded_at,
    }


def index_from(entity: Any) -> IndexEntry:
    return IndexEntry(
        snapshot_id=ResourceId.parse(entity["SnapshotId"]),
        kind=entity.get("Kind", ""),
        reason=entity.get("Reason", ""),
        family_id=entity.get("FamilyId", ""),
        regions=entity.get("Regions", ""),
        unique_id=entity.get("UniqueId", "") or "",
        recorded_at=moment(entity.get("RecordedAt")),
    )


def head_entity(head: ChainHead) -> Entity:
    return {
        "PartitionKey": head.key.partition,
        "RowKey": HEAD,
        "FamilyId": head.key.family_id,
        "Region": head.key.region,
        "SourceGroups": ",".join(str(group) for group in head.source_groups),
        "TargetGroup": str(head.target_group),
        "DiskId": head.disk_id,
        "LastStartedKey": head.last_started_key,
        "CopyingKey": head.copying_key,
        "LastCompletedKey": head.last_completed_key,
        "LastCompletedSource": head.last_completed_source,
        "LastCompletedAt": head.last_completed_at,
        # not "ListedThrough": rows before 2026-12 held a listing's time there, which vouches
        # for nothing under today's rule (docs: README, "The replication rules")
        "VouchedThrough": head.listed_through,
        "DiskEncryptionSetId": head.disk_encryption_set_id,
        "RpoBreachedAt": head.rpo_breached_at,
        "Method": head.method,
        "DiffBase": head.diff_base,
    }


def chain_entity(head: ChainHead) -> Entity:
    return {
        "PartitionKey": CHAINS,
        "RowKey": f"{head.key.family_id.lower()}|{head.key.region}",
        "FamilyId": head.key.family_id,
        "Region": head.key.region,
        "DiskId": head.disk_id,
        "DiskKey": head.disk_id.lower(),
    }


def head_from(chain: ChainKey, entity: Any) -> ChainHead:
    return ChainHead(
        key=chain,
        source_groups=tuple(parse_resource_group(part) for part in entity["SourceGroups"].split(",") if part),
        target_group=parse_resource_group(entity["TargetGroup"]),
        disk_id=entity.get("DiskId", "") or "",
        last_started_key=entity.get("LastStartedKey", "") or "",
        copying_key=entity.get("CopyingKey", "") or "",
        last_completed_key=entity.get("LastCompletedKey", "") or "",
        last_completed_source=entity.get("LastCompletedSource", "") or "",
        last_completed_at=moment(entity.get("LastCompletedAt")),
        listed_through=moment(entity.get("VouchedThrough")),
        disk_encryption_set_id=entity.get("DiskEncryptionSetId", "") or "",
        rpo_breached_at=moment(entity.get("RpoBreachedAt")),
        method=entity.get("Method", "") or "",
        diff_base=entity.get("DiffBase", "") or "",
        etag=etag_of(entity),
    )


def job_entity(job: Job) -> Entity:
    return {
        "PartitionKey": job.chain.partition,
        "RowKey": JOB_PREFIX + job.key,
        "SourceId": str(job.source_id),
        "SourceTime": job.source_time,
        "SourceUniqueId": job.source_unique_id,
        "TargetId": str(job.target_id),
        "State": job.state.value,
        "SourceReady": job.source_ready,
        "SourcePercent": job.source_percent,
        "SourceCheckedAt": job.source_checked_at,
        "Attempts": job.attempts,
        "NotBefore": job.not_before,
        "QueuedAt": job.queued_at,
        "StartedAt": job.started_at,
        "FinishedAt": job.finished_at,
        "Percent": float(job.percent),
        "ErrorCode": job.error.code if job.error else "",
        "ErrorMessage": job.error.message if job.error else "",
        "Reason": job.reason,
        # a double: exact for any disk size, and no Int64 wrapper to unpack
        "SizeBytes": float(job.size_bytes) if job.size_bytes is not None else None,
        "Policy": job.policy,
        # the copy's tags as JSON: at most 50, each within ARM's lengths, so within a property's 64 KiB
        "Tags": json.dumps(dict(job.tags), ensure_ascii=False) if job.tags else "",
        "CopySpeed": job.copy_speed,
        "DiskEncryptionSetId": job.disk_encryption_set_id,
        "PrunedAt": job.pruned_at,
        "PrunedBy": job.pruned_by,
        "PruneError": job.prune_error,
        "Method": job.method,
        "BlobEndpoint": job.blob_endpoint,
        "BlobContainer": job.blob_container,
        "BlobSnapshot": job.blob_snapshot,
        "Announced": job.announced,
        "Announcements": job.announcements,
    }


def job_update(job: Job) -> tuple[Any, ...]:
    """A batch operation writing a job: conditional on the ETag it was read with; a job
    never read (no ETag) is inserted, and fails the batch if it exists after all."""
    if job.etag is None:
        return ("create", job_entity(job))
    return ("update", job_entity(job), {"mode": UpdateMode.REPLACE, **conditional(job.etag, f"job {job.key}")})


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def size(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _job_from(chain: ChainKey, entity: Any) -> Job:
    code = entity.get("ErrorCode") or ""
    source_time = moment(entity.get("SourceTime"))
    if source_time is None:
        raise ValueError(f"job row {entity.get('RowKey')!r} has no SourceTime")
    return Job(
        chain=chain,
        source_id=ResourceId.parse(entity["SourceId"]),
        source_time=source_time,
        source_unique_id=entity.get("SourceUniqueId", "") or "",
        target_id=ResourceId.parse(entity["TargetId"]),
        state=CopyState(entity.get("State", "queued")),
        # a queued row from before snapshotAccessState was read: its readiness is a guess,
        # so one GET checks it before any start
        source_ready=bool(entity.get("SourceReady", True))
        and (entity.get("SourceCheckedAt") is not None or entity.get("State", "queued") != "queued"),
        source_percent=number(entity.get("SourcePercent")),
        source_checked_at=moment(entity.get("SourceCheckedAt")),
        attempts=int(entity.get("Attempts", 0)),
        not_before=moment(entity.get("NotBefore")),
        queued_at=moment(entity.get("QueuedAt")),
        started_at=moment(entity.get("StartedAt")),
        finished_at=moment(entity.get("FinishedAt")),
        percent=float(entity.get("Percent", 0.0)),
        error=CopyError(code, entity.get("ErrorMessage", "")) if code else None,
        reason=entity.get("Reason", "") or "",
        etag=etag_of(entity),
        size_bytes=size(entity.get("SizeBytes")),
        policy=entity.get("Policy", "") or "",
        tags=tags_from(entity),
        copy_speed=entity.get("CopySpeed") or STANDARD_SPEED,
        disk_encryption_set_id=entity.get("DiskEncryptionSetId", "") or "",
        pruned_at=moment(entity.get("PrunedAt")),
        pruned_by=entity.get("PrunedBy", "") or "",
        prune_error=entity.get("PruneError", "") or "",
        method=entity.get("Method", "") or "",
        blob_endpoint=entity.get("BlobEndpoint", "") or "",
        blob_container=entity.get("BlobContainer", "") or "",
        blob_snapshot=entity.get("BlobSnapshot", "") or "",
        announced=entity.get("Announced", "") or "",
        announcements=int(entity.get("Announcements", 0) or 0),
    )


def job_from(chain: ChainKey, entity: Any) -> Job:
    """A job row as a Job; a row from before notifications existed counts its stored state
    as announced (shared/notices.py `assumed_announced`)."""
    job = _job_from(chain, entity)
    return job if job.announced else replace(job, announced=assumed_announced(job))


def tags_from(entity: Any) -> tuple[tuple[str, str], ...]:
    """A job's copy tags (none on rows from before policies: the start adds ours)."""
    text = entity.get("Tags") or ""
    if not text:
        return ()
    tags = json.loads(text)
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ValueError(f"job row {entity.get('RowKey')!r} has Tags that are not an object of strings")
    return tuple(tags.items())


def wait_entity(marker: Waiting) -> Entity:
    entity: Entity = {
        "PartitionKey": marker.region.partition,
        "RowKey": WAIT_PREFIX + marker.chain.family_id,
        "FamilyId": marker.chain.family_id,
        "Since": marker.since,
        "Touched": marker.since,
    }
    if marker.from_key is not None:
        entity["From"] = marker.from_key
    if marker.next_bytes is not None:
        entity["NextBytes"] = float(marker.next_bytes)
    return entity


def waiting_from(region: RegionKey, chain: ChainKey, row: Any) -> Waiting:
    return Waiting(
        region, chain, moment(row.get("Since")) or EPOCH, etag_of(row), row.get("From"), size(row.get("NextBytes"))
    )


def counter_entity(region: RegionKey, count: int) -> Entity:
    return {
        "PartitionKey": region.partition,
        "RowKey": COUNTER,
        "InFlight": count,
        "Subscription": region.subscription,
        "Region": region.region,
    }


def flight_entity(flight: InFlight) -> Entity:
    return {
        "PartitionKey": flight.region.partition,
        "RowKey": FLIGHT_PREFIX + flight.chain.family_id,
        "FamilyId": flight.chain.family_id,
        "JobKey": flight.job_key,
        "SourceId": str(flight.source_id),
        "TargetId": str(flight.target_id),
        "Phase": flight.phase.value,
        "Attempt": flight.attempt,
        "StartedAt": flight.started_at,
        "Percent": float(flight.percent),
        "ProgressedAt": flight.progressed_at,
        "StuckSince": flight.stuck_since,
        "NextPollAt": flight.next_poll_at,
    }


def flight_from(region: RegionKey, entity: Any) -> InFlight:
    started = moment(entity.get("StartedAt"))
    if started is None:
        raise ValueError(f"flight row {entity.get('RowKey')!r} has no StartedAt")
    return InFlight(
        region=region,
        chain=ChainKey(entity["FamilyId"], region.region),
        job_key=entity["JobKey"],
        source_id=ResourceId.parse(entity["SourceId"]),
        target_id=ResourceId.parse(entity["TargetId"]),
        phase=Phase(entity.get("Phase", "copying")),
        attempt=entity.get("Attempt", "") or "",
        started_at=started,
        percent=float(entity.get("Percent", 0.0)),
        progressed_at=moment(entity.get("ProgressedAt")),
        stuck_since=moment(entity.get("StuckSince")),
        next_poll_at=moment(entity.get("NextPollAt")),
        etag=etag_of(entity),
    )


def failure_entity(failure: EventFailure) -> Entity:
    """A poison row; text cut to what a Table property holds comfortably."""
    return {
        "PartitionKey": POISON,
        "RowKey": poison_key(failure.event_id),
        "EventId": failure.event_id[:256],
        "Subject": failure.subject[:512],
        "Attempts": failure.attempts,
        "FirstFailedAt": failure.first_failed_at,
        "LastFailedAt": failure.last_failed_at,
        "LastError": failure.last_error[:1000],
        "Poisoned": failure.poisoned,
    }


def failure_from(event_id: str, entity: Any) -> EventFailure:
    """A poison row read back (the event id as delivered: the row may hold it cut)."""
    last = moment(entity.get("LastFailedAt")) or datetime.min.replace(tzinfo=UTC)
    return EventFailure(
        event_id,
        str(entity.get("Subject", "")),
        int(entity.get("Attempts", 0)),
        moment(entity.get("FirstFailedAt")) or last,
        last,
        str(entity.get("LastError", "")),
        bool(entity.get("Poisoned", False)),
        etag_of(entity),
    )
