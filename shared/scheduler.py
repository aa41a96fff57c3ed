"""Scheduling decisions: pure functions of (stored state, observation, now).

Nothing here reads a clock, a table or ARM; the service runs these and carries out what
they return. The rules they keep are Azure's (one copy of a family in flight per region,
creation order, the per-region cap) and snapcopy's own (events are hints, ARM's list is
the truth; a failure never blocks a chain for ever).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.admission import arrival, chain_set, new_job
from shared.model import (
    SOURCE_TAG,
    ChainHead,
    CopyError,
    CopyState,
    Job,
    Snapshot,
    Waiting,
)
from shared.placement import Selector, place

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


# --- the chain: what to start next --------------------------------------------------------


class Hold(StrEnum):
    """Why a chain does not start now (NONE: it starts)."""

    NONE = "none"
    IN_FLIGHT = "in-flight"  # its copy in flight hands over when it ends
    NOTHING_QUEUED = "nothing-queued"  # its wait marker may go
    LISTING = "listing"  # no listing has shown the next snapshot (or a newer one) yet
    SOURCE_MISSING = "source-missing"  # a listing that should show the source did not: a GET tells
    SOURCE_NOT_READY = "source-not-ready"  # the source's own background copy runs
    BACKOFF = "backoff"  # a refused start waits out its backoff


@dataclass(frozen=True)
class ChainPlan:
    """What one chain should do now. `start` is set only when every rule allows it.

    `check`: a queued job whose source a GET should read now (its own background copy may
    have ended, a listing that should show it did not, or listings lag behind it); the
    shell reads it, applies `observed_source`, and plans again."""

    add: tuple[Job, ...] = ()
    start: Job | None = None
    hold: Hold = Hold.NONE
    wait: str = ""  # the hold, in words, for the log
    needs_listing: bool = False
    listed_through: datetime | None = None
    check: Job | None = None
    dropped_tags: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (source, tag names) not carried: log them


def plan_chain(
    head: ChainHead,
    pending: Sequence[Job],
    now: datetime,
    *,
    listing: Sequence[Snapshot] | None = None,
    select: Selector | None = None,
    listed_at: datetime | None = None,
    latest: frozenset[str] = frozenset(),
) -> ChainPlan:
    """Decide the next copy of a chain.

    `pending` are the chain's rows newer than its order watermark (`head.last_started_key`).
    `listing`, when given, is ARM's list of the family's source groups (taken at
    `listed_at`): it adds snapshots whose events were lost and vouches that nothing older
    than the newest family snapshot it shows is missing. It never removes anything: a
    queued job leaves the queue only when a GET says its source is gone. A snapshot it
    shows is queued only when `select` (the policies) copies it into the chain's region;
    it goes to the chain's resource group.

    `latest`: the policies in mode `latest`. When every queued job is one of theirs, the
    newest (the newest whose source is ready, if any is) is the one to start, and the older
    queued jobs are superseded when it does (Azure's order rule allows skipping; it forbids
    only going back). A job of any other policy queued among them keeps creation order.
    """
    adds: list[Job] = []
    dropped: list[tuple[str, tuple[str, ...]]] = []
    suspect: set[str] = set()
    listed_through = head.listed_through
    queued = {job.key: job for job in pending if job.state == CopyState.QUEUED}

    if listing is not None:
        family = [
            snap
            for snap in listing
            if snap.family_id
            and snap.family_id.lower() == head.key.family_id
            and snap.incremental
            and not snap.is_copy
            and snap.time_created is not None
            and snap.location.lower() != head.key.region
        ]
        seen = {snap.order_key: snap for snap in family}
        newest = max(seen, default=None)
        if newest is not None:
            newest_time = seen[newest].time_created
            listed_through = max(filter(None, (listed_through, newest_time)))
        known = {job.key for job in pending}
        for key, snap in sorted(seen.items()):
            if key in known or (head.last_started_key and key <= head.last_started_key):
                continue
            selected = select(snap, head.key.region) if select is not None else None
            if selected is None:
                continue  # no policy copies it here (its tags, a policy changed): it still vouches
            placement = place(selected, snap, head.target_group)
            job = new_job(snap, placement, listed_at or now, chain_set=chain_set(head))
            adds.append(job)
            if placement.dropped_tags:
                dropped.append((snap.id.name, placement.dropped_tags))
            queued[job.key] = job
        for key, job in list(queued.items()):
            listed = seen.get(key)
            if listed is not None:
                queued[key] = with_source(job, listed, listed_at or now)
            elif newest is not None and key < newest:
                suspect.add(key)  # this view should show it: a GET tells whether it is gone

    plan = ChainPlan(add=tuple(adds), listed_through=listed_through, dropped_tags=tuple(dropped))
    if head.copying_key:
        return replace(plan, hold=Hold.IN_FLIGHT, wait="a copy is in flight")
    if not queued:
        return replace(plan, hold=Hold.NOTHING_QUEUED, wait="nothing queued")
    candidate = queued[min(queued)]
    if all(job.policy in latest for job in queued.values()):
        # only `latest` policies want these: the newest, or the newest whose source is ready
        ready = [key for key, job in queued.items() if job.source_ready]
        candidate = queued[max(ready or queued)]
    due = candidate.key in suspect or next_source_check(candidate) <= now
    check = candidate if due else None
    if listed_through is None or candidate.source_time > listed_through:
        name = candidate.source_id.name
        return replace(
            plan, hold=Hold.LISTING, wait=f"waiting for a listing that shows {name}", needs_listing=True, check=check
        )
    if candidate.key in suspect:
        return replace(
            plan, hold=Hold.SOURCE_MISSING, wait=f"{candidate.source_id.name} missing from a listing", check=check
        )
    if not candidate.source_ready:
        percent = f" ({candidate.source_percent:.1f}%)" if candidate.source_percent is not None else ""
        return replace(
            plan,
            hold=Hold.SOURCE_NOT_READY,
            wait=f"waiting for the source {candidate.source_id.name}{percent}",
            check=check,
        )
    if candidate.not_before is not None and candidate.not_before > now:
        return replace(plan, hold=Hold.BACKOFF, wait=f"retrying after {candidate.not_before.isoformat()}")
    return replace(plan, start=candidate)


def with_source(job: Job, source: Snapshot, seen_at: datetime) -> Job:
    """A queued job after ARM showed its source again. Readiness only ever grows (a
    listing's view may be older than the GET that made the job)."""
    ready = job.source_ready or source.is_ready
    return replace(
        job,
        source_ready=ready,
        source_percent=None if ready else source.completion_percent,
        source_checked_at=max(filter(None, (job.source_checked_at, seen_at))),
    )


def observed_source(job: Job, source: Snapshot | None, now: datetime) -> Job:
    """A queued job after a GET of its source: skipped when the source is gone (404, or
    its name now holds another snapshot), else updated with what ARM showed."""
    replaced = source is not None and bool(job.source_unique_id and source.unique_id)
    if source is None or (replaced and source.unique_id != job.source_unique_id):
        reason = SOURCE_GONE if source is None else f"{SOURCE_GONE}; its name now holds another snapshot"
        return replace(job, state=CopyState.SKIPPED, finished_at=now, reason=reason)
    return with_source(job, source, now)


def next_source_check(job: Job) -> datetime:
    """When a GET of a waiting job's source is next worth its ARM call.

    A source still in its own background copy (Premium SSD v2, Ultra) is read when it may
    have finished at its pace so far; one showing no pace yet (0 percent), or waiting for
    listings to catch up, is read again after as long as it has existed (backing off: a
    few GETs however long a LIST lags).
    Always between SOURCE_CHECK_MIN and SOURCE_CHECK_MAX after the last look."""
    last = job.source_checked_at
    if last is None:
        return job.source_time
    age = max((last - job.source_time).total_seconds(), 0.0)
    percent = job.source_percent or 0.0
    if job.source_ready or percent <= 0:  # no pace to go by: back off with its age
        wait = timedelta(seconds=age)
    else:
        wait = timedelta(seconds=age * (100.0 - percent) / percent)
    return last + min(max(wait, SOURCE_CHECK_MIN), SOURCE_CHECK_MAX)


def release_order(
    waiting: Iterable[Waiting],
    busy_families: frozenset[str],
    handoffs: frozenset[str] = frozenset(),
    *,
    now: datetime | None = None,
    fair_wait: timedelta | None = None,
) -> list[Waiting]:
    """Chains that may take a free slot, in the order they get one.

    1. Chains that have waited longer than `fair_wait` (FAIR_WAIT_HOURS), oldest first:
       no disk, subscription or size waits behind newer work for longer than that.
    2. The `handoffs`: families whose copy just ended with more queued, so a disk's next
       snapshot follows its predecessor into the slot it frees.
    3. The rest, largest next copy first (a chain of unknown size counts as smallest),
       oldest first among equals. When copies queue for the cap, starting the long ones
       early keeps them from finishing last: longest-first list scheduling drains a
       nightly backlog within about 2% of the shortest possible time, where oldest-first
       takes about a quarter longer (docs/benchmarks.md).
    """
    ready = [item for item in waiting if item.chain.family_id.lower() not in busy_families]
    overdue = now - fair_wait if now is not None and fair_wait is not None else None

    def rank(item: Waiting) -> tuple[int, int, datetime, str]:
        family = item.chain.family_id.lower()
        if overdue is not None and item.since < overdue:
            return 0, 0, item.since, family
        return (1 if family in handoffs else 2), -(item.next_bytes or 0), item.since, family

    return sorted(ready, key=rank)


def overtaken(head: ChainHead, pending: list[Job], key: str, when: datetime, *, superseded: bool = False) -> list[Job]:
    """Queued jobs older than `key`: once `key` started they can never be copied.
    `superseded`: the start chose the newest on purpose (policy mode `latest`)."""
    watermark = replace(head, last_started_key=key)
    passed = [
        arrival(replace(item, queued_at=when), watermark)
        for item in pending
        if item.state == CopyState.QUEUED and item.key < key
    ]
    if superseded:
        newer = key.rsplit("|", maxsplit=1)[-1]
        reason = f"superseded by {newer}: the policy's mode 'latest' copies only the newest queued snapshot"
        passed = [replace(item, reason=reason) for item in passed]
    return passed


# --- which copy is ours ---------------------------------------------------------------------


def made_from(target: Snapshot, job: Job) -> bool:
    """Whether a copy ARM shows under the job's target name may be the job's copy: nothing
    says it was made from another snapshot (a start, or a re-drive, takes it as landed)."""
    return not (job.source_unique_id and target.source_unique_id and target.source_unique_id != job.source_unique_id)


def ours_to_replace(target: Snapshot, job: Job) -> bool:
    """Whether a target may be deleted to copy the job again: a CopyStart copy carrying our
    tag for this source, made from this very snapshot (uniqueId). Stricter than `made_from`:
    a delete needs proof, a start only the absence of a contradiction."""
    tagged = {key.lower(): value for key, value in target.tags.items()}.get(SOURCE_TAG, "")
    same_source = bool(job.source_unique_id) and target.source_unique_id == job.source_unique_id
    copy_start = target.create_option.lower() == "copystart"
    return copy_start and tagged.lower() == str(job.source_id).lower() and same_source


def name_taken(job: Job) -> CopyError:
    return CopyError(
        "TargetNameTaken",
        f"{job.target_id.name} already holds a copy of an earlier snapshot that had the same name; "
        "delete or rename it, then retry",
    )
