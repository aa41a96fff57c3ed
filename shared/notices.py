"""What snapcopy tells subscribers: the notification contract (README, "Notifications").

Each copy's transitions become CloudEvents 1.0 (`Snapcopy.CopyStarted`, `…Completed`,
`…Failed`, `…Skipped`, `…Stuck`, `…Pruned`) and a chain that falls behind its recovery
point raises `Snapcopy.RpoBreached`. Ids are fixed when a notice is recorded (in the same
Table batch as its transition), so a retried publish carries the same id and subscribers
can drop duplicates.

A job carries what it last announced (`Job.announced`, `Job.announcements`): `due` compares
that with its state, so writing a job twice announces nothing twice, whichever code path
wrote it.

Pure: it must not read the table, a clock or the network.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared import tokens
from shared.model import ChainHead, ChainKey, CopyState, InFlight, Job

NAMESPACE = uuid.UUID("8a5f3b9e-51c1-4c4e-9d0b-3f2b6c1d7e42")  # snapcopy's notice ids (uuid5)
DEFAULT_SOURCE = "snapcopy"  # CloudEvents `source` when the function app's id is not known
QUEUED_MARK = "queued"  # `Job.announced` of a queued job: nothing announced for this attempt yet


class NoticeType(StrEnum):
    COPY_STARTED = "Snapcopy.CopyStarted"
    COPY_COMPLETED = "Snapcopy.CopyCompleted"
    COPY_FAILED = "Snapcopy.CopyFailed"
    COPY_SKIPPED = "Snapcopy.CopySkipped"
    COPY_STUCK = "Snapcopy.CopyStuck"
    COPY_PRUNED = "Snapcopy.CopyPruned"
    RPO_BREACHED = "Snapcopy.RpoBreached"


@dataclass(frozen=True)
class Notice:
    """One CloudEvent, as recorded in the outbox (the `source` is the publisher's)."""

    id: str
    type: NoticeType
    subject: str
    time: datetime
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        fields = {"id": self.id, "type": self.type.value, "subject": self.subject, "time": self.time.isoformat()}
        return json.dumps({**fields, "data": self.data}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Notice:
        raw = json.loads(text)
        return cls(raw["id"], NoticeType(raw["type"]), raw["subject"], datetime.fromisoformat(raw["time"]), raw["data"])


def copy_id(chain: ChainKey, job_key: str) -> str:
    """The id of a copy, the API's and the notices' (opaque to callers: `GET /api/copies/{copyId}`;
    shared/api.py `parse_copy_id` reads it back)."""
    return tokens.encode(f"{chain.family_id}|{chain.region}|{job_key}")


def _wanted(job: Job) -> NoticeType | None:
    """The notice a job's state stands for (None: queued, nothing to say yet)."""
    match job.state:
        case CopyState.COPYING:
            return NoticeType.COPY_STARTED
        case CopyState.SUCCEEDED:
            return NoticeType.COPY_PRUNED if job.pruned_at is not None else NoticeType.COPY_COMPLETED
        case CopyState.FAILED:
            return NoticeType.COPY_FAILED
        case CopyState.SKIPPED | CopyState.CANCELLED:
            return NoticeType.COPY_SKIPPED
    return None


def due(job: Job) -> list[NoticeType]:
    """The notices a job's write owes, oldest first: none when its state was announced.

    A copy that ended without its start being announced (adopted by the sweep, finished
    by a restart) announces the start first, so every started copy has a `CopyStarted`.
    A queued job (a new one, or one queued again by a retry) has announced nothing yet.
    """
    wanted = _wanted(job)
    if wanted is None or wanted.value == job.announced:
        return []
    ends = (NoticeType.COPY_COMPLETED, NoticeType.COPY_FAILED)
    if wanted in ends and job.started_at is not None and job.announced != NoticeType.COPY_STARTED.value:
        return [NoticeType.COPY_STARTED, wanted]
    return [wanted]


def announce(job: Job) -> tuple[Job, list[Notice]]:
    """The job as it must be written (marked with what it announced) and its notices."""
    if _wanted(job) is None:  # queued: its next attempt's notices are all still to come
        return (job if job.announced == QUEUED_MARK else replace(job, announced=QUEUED_MARK)), []
    types = due(job)
    if not types:
        return job, []
    notices = [copy_notice(job, kind, job.announcements + index + 1) for index, kind in enumerate(types)]
    marked = replace(job, announced=types[-1].value, announcements=job.announcements + len(types))
    return marked, notices


def assumed_announced(job: Job) -> str:
    """What a job stored before notifications existed counts as having announced: its
    state as stored (so a later write tells only what happens next, never the past)."""
    wanted = _wanted(job)
    return QUEUED_MARK if wanted is None else wanted.value


def iso(value: datetime | None) -> str | None:
    """A moment as the API and the notices show it (ISO 8601), or None."""
    return value.isoformat() if value else None


def copy_notice(job: Job, kind: NoticeType, sequence: int) -> Notice:
    """A copy's notice; its id is fixed by the copy and the notice's place in its story."""
    ident = copy_id(job.chain, job.key)
    data: dict[str, Any] = {
        "sourceSnapshotId": str(job.source_id),
        "targetRegion": job.chain.region,
        "targetSnapshotId": job.target,
        "state": job.state.value,
        "copyId": ident,
        "completionPercent": 100.0 if job.state == CopyState.SUCCEEDED else float(job.percent),
        "startedAt": iso(job.started_at),
        "completedAt": iso(job.finished_at) if job.state.is_final else None,
    }
    if kind == NoticeType.COPY_STARTED:
        data["state"] = CopyState.COPYING.value  # announced late (with its end): as it was then
        data["completedAt"] = None
        data["completionPercent"] = 0.0 if job.state != CopyState.COPYING else float(job.percent)
    if kind == NoticeType.COPY_FAILED and job.error is not None:
        data["error"] = {"code": job.error.code, "message": job.error.message}
    if kind == NoticeType.COPY_SKIPPED:
        data["reason"] = job.reason or job.state.value
    if kind == NoticeType.COPY_PRUNED:
        data["prunedAt"] = iso(job.pruned_at)
        data["prunedBy"] = job.pruned_by
    moment = {
        NoticeType.COPY_STARTED: job.started_at,
        NoticeType.COPY_PRUNED: job.pruned_at,
    }.get(kind, job.finished_at)
    when = moment or job.finished_at or job.started_at or job.queued_at or job.source_time
    return Notice(_id(ident, str(sequence), kind.value), kind, str(job.source_id), when, data)


def stuck_notice(flight: InFlight, stuck_since: datetime, quiet: timedelta) -> Notice:
    """A copy that shows no progress (once per time it gets stuck)."""
    ident = copy_id(flight.chain, flight.job_key)
    data = {
        "sourceSnapshotId": str(flight.source_id),
        "targetRegion": flight.chain.region,
        "targetSnapshotId": str(flight.target_id),
        "state": CopyState.COPYING.value,
        "copyId": ident,
        "completionPercent": float(flight.percent),
        "startedAt": iso(flight.started_at),
        "completedAt": None,
        "reason": f"no progress for {int(quiet.total_seconds() // 60)} minutes",
    }
    kind = NoticeType.COPY_STUCK
    return Notice(_id(ident, stuck_since.isoformat(), kind.value), kind, str(flight.source_id), stuck_since, data)


def rpo_notice(head: ChainHead, rpo: timedelta, now: datetime, newest_source: str) -> Notice:
    """A chain further behind than RPO_ALERT_MINUTES (once per breach).

    Its subject is the chain's disk, or (disk unknown) the family's newest source snapshot
    (`newest_source`: never empty while the chain has a snapshot, which a breach needs)."""
    data = {
        "sourceDiskId": head.disk_id or None,
        "sourceSnapshotId": head.last_completed_source or None,
        "targetRegion": head.key.region,
        "state": "breached",
        "rpoSeconds": int(rpo.total_seconds()),
        "lastCompletedAt": iso(head.last_completed_at),
    }
    kind = NoticeType.RPO_BREACHED
    subject = head.disk_id or newest_source
    return Notice(_id(head.key.partition, now.isoformat(), kind.value), kind, subject, now, data)


def _id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))
