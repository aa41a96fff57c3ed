"""Operators' requests: copy a snapshot now, backfill a disk, retry, cancel, list copies.

Every request is validated completely (ids, regions, scopes, what ARM says about the
source) before anything is written, then goes through the same engine as an event
(`Intake.enqueue`): the same chains, copy order and region cap. Refusals are raised
as `Refused` (shared/errors.py) with a kind and a precise detail; the API answers each
kind with its HTTP status, as a problem document.

It must not speak HTTP (statuses, headers, JSON): shared/api.py does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from shared.admission import CopyTo, NotYet, eligibility
from shared.arm import ArmError, ComputeApi
from shared.cursors import Cursor
from shared.engine.intake import Intake
from shared.engine.parts import Deps, Part
from shared.errors import Refusal, Refused, conflict, unprocessable
from shared.ids import ResourceId
from shared.model import ChainHead, ChainKey, CopyState, InFlight, Job, Snapshot
from shared.rpo import breached, chain_rpo
from shared.scheduler import ours_to_replace
from shared.store import Conflict

log = logging.getLogger("snapcopy")

MAX_PAGE = 1000
DEFAULT_PAGE = 100
_RETRYABLE_STATES = (CopyState.FAILED, CopyState.CANCELLED)
# A retried job is held back this long while its failed copy is deleted.
RETRY_HOLD = timedelta(minutes=10)
_SENDING = (
    "CopyStart for this copy is being sent to ARM right now; once sent it cannot be cancelled: "
    "it will finish (delete the target snapshot afterwards if it is not wanted)"
)


def read_source(arm: ComputeApi, snapshot_id: ResourceId) -> Snapshot:
    """The snapshot an operator named, as ARM shows it now, or the refusal to answer with."""
    try:
        snapshot = arm.get_snapshot(snapshot_id)
    except ArmError as error:
        raise arm_trouble(error, f"reading {snapshot_id}") from None
    if snapshot is None:
        raise unprocessable(f"sourceSnapshotId: ARM has no snapshot {snapshot_id}")
    return snapshot


def arm_trouble(error: ArmError, what: str, *, recorded: str = "nothing was recorded") -> Refused:
    """An ARM failure as the caller should read it: passing (503), snapcopy's access
    (502), a resource that is not there (422), a conflict on ARM's side (409): by kind."""
    if error.retryable:
        return Refused(
            Refusal.ARM_UNAVAILABLE,
            "ARM unavailable",
            f"ARM did not answer while {what} ({error.code}); {recorded}: retry shortly",
            retry_after=30,
        )
    if error.status in (401, 403):
        return Refused(
            Refusal.ARM_REFUSED,
            "ARM refused snapcopy",
            f"ARM refused snapcopy's identity while {what}: {error.code} (check its RBAC)",
        )
    if error.status == 404:
        return unprocessable(f"ARM found nothing while {what}: {error.code}")
    if error.status == 409:
        return conflict(f"ARM refused while {what}: {error.code}: {error.message}; {recorded}")
    return Refused(
        Refusal.ARM_REFUSED, "ARM refused the request", f"ARM answered {error.status} while {what}: {error.code}"
    )


@dataclass(frozen=True)
class Accepted:
    """What a copy or backfill request led to."""

    copies: list[tuple[Job, bool]]  # every job, as stored now, and whether this request created it
    ignored: list[tuple[str, str]]  # (snapshot id, why it is not copied)


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    continuation: str | None


@dataclass(frozen=True)
class LiveCopy:
    """A copy as it stands: its job, and while it copies its flight row (live percent, stuck)."""

    job: Job
    flight: InFlight | None = None


@dataclass(frozen=True)
class ChainStatus:
    """One chain as operators watch it: what copies now, how many wait, its last completed copy."""

    head: ChainHead
    copying: LiveCopy | None
    queued: int
    rpo: timedelta | None = None  # shared/rpo.py; None: nothing to protect yet
    rpo_breached: bool = False  # over RPO_ALERT_MINUTES
    waiting_for_source: int = 0  # queued copies whose source's own background copy runs


class Operator(Part):
    """The operator's side of the engine: what the HTTP API asks, queued through the Intake."""

    def __init__(self, deps: Deps, intake: Intake) -> None:
        super().__init__(deps)
        self.intake = intake

    # --- requests that create copies -------------------------------------------------

    def regions(self, requested: Sequence[str] | None) -> tuple[str, ...]:
        """The requested target regions (default: every configured one), each configured."""
        configured = self.settings.target_regions
        if requested is None:
            return tuple(configured)
        unknown = [region for region in requested if region not in configured]
        if unknown:
            where = "COPY_TARGET_REGIONS" if not self.settings.copy_policies else "any policy's targets"
            raise unprocessable(f"targetRegions: {', '.join(unknown)} not in {where} ({', '.join(configured)})")
        return tuple(dict.fromkeys(requested))

    def copy_snapshot(self, snapshot_id: ResourceId, requested: Sequence[str] | None) -> Accepted:
        """Copy one snapshot now (or as soon as its chain allows)."""
        regions = self.regions(requested)
        self._check_scope(snapshot_id)
        snapshot = read_source(self.arm, snapshot_id)
        decision = eligibility(snapshot, self.settings.policies, self.settings.source_scopes, regions)
        if isinstance(decision, NotYet):
            detail = f"sourceSnapshotId: {snapshot_id}: {decision.reason}; nothing was recorded: retry shortly"
            raise Refused(Refusal.ARM_UNAVAILABLE, "ARM's answer is incomplete", detail, retry_after=60)
        if not isinstance(decision, CopyTo):
            raise unprocessable(f"sourceSnapshotId: {snapshot_id} cannot be copied: {decision.reason}")
        missing = [region for region in regions if region not in decision.regions]
        if missing and requested is not None:  # named by the caller; by default, the others are copied
            if missing[0] == snapshot.location.lower():
                raise unprocessable(f"targetRegions: {snapshot_id} is already in {missing[0]}; copy it elsewhere")
            raise unprocessable(f"targetRegions: no policy copies {snapshot_id} to {missing[0]}")
        return Accepted(self.intake.enqueue([snapshot], decision.regions), [])

    def backfill(self, disk_id: ResourceId, requested: Sequence[str] | None) -> Accepted:
        """Every existing incremental snapshot of a disk, queued oldest first.

        Snapshots are looked for across the disk's subscription (they need not sit in the
        disk's resource group); a disk deleted since still has its snapshots copied.
        """
        regions = self.regions(requested)
        self._check_scope(disk_id)
        try:
            listed = self.arm.list_subscription_snapshots(disk_id.subscription)
        except ArmError as error:
            raise arm_trouble(error, f"listing the snapshots of subscription {disk_id.subscription}") from None
        wanted = str(disk_id).lower()
        mine = [snap for snap in listed if (snap.disk_id or "").lower() == wanted and not snap.is_copy]
        if not mine:
            try:
                exists = self.arm.disk_exists(disk_id)
            except ArmError as error:
                raise arm_trouble(error, f"reading {disk_id}") from None
            if not exists:
                raise unprocessable(f"sourceDiskId: ARM has no disk {disk_id} and no snapshots of it")
            raise unprocessable(f"sourceDiskId: {disk_id} has no snapshots to copy")
        copyable: dict[tuple[str, ...], list[Snapshot]] = {}
        ignored: list[tuple[str, str]] = []
        for snap in sorted(mine, key=lambda item: (item.time_created is None, str(item.time_created), item.id.name)):
            decision = eligibility(snap, self.settings.policies, self.settings.source_scopes, regions)
            if isinstance(decision, CopyTo):
                copyable.setdefault(decision.regions, []).append(snap)
            else:
                ignored.append((str(snap.id), decision.reason))
        if not copyable:
            reasons = "; ".join(sorted({reason for _, reason in ignored}))
            raise unprocessable(
                f"sourceDiskId: none of the {len(mine)} snapshots of {disk_id} can be copied: {reasons}"
            )
        copies = [pair for targets, snaps in copyable.items() for pair in self.intake.enqueue(snaps, targets)]
        return Accepted(copies, ignored)

    def _check_scope(self, resource: ResourceId) -> None:
        if not self.settings.in_scope(resource):
            raise unprocessable(f"{resource} is outside COPY_SOURCE_SCOPES; snapcopy does not copy from there")

    # --- requests about one copy -----------------------------------------------------

    def live(self, job: Job) -> LiveCopy:
        """The job with its live flight row, read only while it copies."""
        if job.state != CopyState.COPYING:
            return LiveCopy(job)
        flight = self.store.load_flight(job.region, job.chain)
        return LiveCopy(job, flight if flight is not None and flight.job_key == job.key else None)

    def chains(self, *, live: bool = True) -> list[ChainStatus]:
        """Every chain with its queue: the heads in one query, then each chain's queue
        (`live`: and the flight row of each copy in flight, for its percent)."""
        statuses = []
        for head in self.store.list_heads():
            pending = self.store.load_pending(head)
            copying = next((job for job in pending if job.state == CopyState.COPYING), None)
            queued = [job for job in pending if job.state == CopyState.QUEUED]
            rpo = chain_rpo(head, pending, self.clock())
            statuses.append(
                ChainStatus(
                    head,
                    (self.live(copying) if live else LiveCopy(copying)) if copying else None,
                    len(queued),
                    rpo,
                    breached(rpo, self.settings.rpo_alert),
                    sum(1 for job in queued if not job.source_ready),
                )
            )
        return statuses

    def job(self, chain: ChainKey, key: str) -> Job:
        job = self.store.load_job(chain, key)
        if job is None:
            raise Refused(Refusal.NOT_FOUND, "Copy not found", "no copy has that id")
        return job

    def cancel(self, chain: ChainKey, key: str) -> Job:
        """Cancel a queued copy. A copy already sent to ARM cannot be stopped (CopyStart
        has no cancel): it finishes, and the answer says so.

        The timer re-reads a job after reserving its slot and before its PUT, so a cancel
        saved before that re-read always wins; one that finds the slot taken after saving
        may have lost, and says so instead of claiming success."""
        job = self.job(chain, key)
        if job.state == CopyState.CANCELLED:
            return job
        if job.state != CopyState.QUEUED:
            raise conflict(_why_not_cancel(job))
        head = self._head(chain)
        if self._being_started(head, key):
            raise conflict(_SENDING)
        cancelled = replace(job, state=CopyState.CANCELLED, finished_at=self.clock(), reason="cancelled on request")
        try:
            self.store.save_chain(head, [cancelled])  # conditional on head and job
        except Conflict:
            raise conflict(
                "the copy changed while cancelling it (it may have started); read it and try again"
            ) from None
        if self._being_started(head, key):
            raise conflict(_SENDING + "; read the copy to see whether the cancel or the start won")
        log.info("copy cancelled on request: %s → %s", job.source_id, job.chain.region)
        return self.job(chain, key)

    def _being_started(self, head: ChainHead, key: str) -> bool:
        flight = self.store.load_flight(head.region, head.key)
        return flight is not None and flight.job_key == key

    def retry(self, chain: ChainKey, key: str) -> Job:
        """Queue a failed or cancelled copy again, if Azure's copy order still allows it.

        The job is claimed first (queued, but held back with `not_before`) by a write
        conditional on its ETag, so of two concurrent retries only one goes on; only the
        claimant deletes a failed copy's leftover target, then lets the job go."""
        job = self.job(chain, key)
        if job.state not in _RETRYABLE_STATES:
            raise conflict(_why_not_retry(job))
        head = self._head(chain)
        newer = max(head.last_started_key, head.copying_key)
        if newer > key:
            raise conflict(
                f"a newer snapshot ({newer.split('|')[-1]}) has already started copying to {chain.region}; Azure "
                "copies a family in creation order only, so this one can no longer be copied there"
            )
        try:
            source = self.arm.get_snapshot(job.source_id)
            target = self.arm.get_snapshot(job.target_id) if job.state == CopyState.FAILED else None
        except ArmError as error:
            raise arm_trouble(error, f"reading {job.source_id} and its copy") from None
        if source is None or (job.source_unique_id and source.unique_id != job.source_unique_id):
            raise conflict(f"the source snapshot {job.source_id} no longer exists; it cannot be copied again")
        stale = target is not None and (target.copy_error is not None or target.provisioning_state.lower() == "failed")
        if target is not None and not ours_to_replace(target, job):
            raise conflict(f"{job.target_id} exists and is not snapcopy's copy of {job.source_id}; rename or delete it")
        now = self.clock()
        was = job.state.value + (f": {job.error.code}" if job.error else "")
        queued = replace(
            job,
            state=CopyState.QUEUED,
            attempts=0,
            not_before=now + RETRY_HOLD if stale else None,
            queued_at=now,
            started_at=None,
            finished_at=None,
            percent=0.0,
            error=None,
            reason=f"retried on request (was {was})",
        )
        try:
            self.store.save_chain(head, [queued])  # the claim
        except Conflict:
            raise conflict("the copy changed while retrying it (another retry?); read it and try again") from None
        if stale:
            self._clear_failed_target(job)
        self.store.mark_waiting(head.region, chain, now, next_bytes=source.size_bytes or job.size_bytes)
        try:
            self.intake.start_waiting(chain, head.region)
        except (ArmError, Conflict) as error:
            log.warning("%s re-queued; starting it failed for now (%s): the timer retries", chain.partition, error)
        log.info("copy re-queued on request: %s → %s", job.source_id, chain.region)
        return self.job(chain, key)

    def _clear_failed_target(self, job: Job) -> None:
        """Delete the failed copy CopyStart cannot reuse the name of, then release the
        claimed job. If this fails, the hold lapses after RETRY_HOLD and the start finds
        the failed copy again (the job fails again, with ARM's error)."""
        try:
            self.arm.delete_snapshot(job.target_id)
        except ArmError as error:
            if error.status == 404:
                return self._release_claim(job)  # gone already: what we wanted
            held = (
                f"the copy is queued but held for {RETRY_HOLD}; if the failed copy is still there then, it fails again"
            )
            raise arm_trouble(error, f"deleting the failed copy {job.target_id}", recorded=held) from None
        log.info("deleted the failed copy %s before retrying it", job.target_id)
        self._release_claim(job)

    def _release_claim(self, job: Job) -> None:
        claimed = self.job(job.chain, job.key)
        if claimed.state == CopyState.QUEUED:
            with contextlib.suppress(Conflict):
                self.store.save_job(replace(claimed, not_before=None))

    def _head(self, chain: ChainKey) -> ChainHead:
        head = self.store.load_head(chain)
        if head is None:
            raise Refused(Refusal.NOT_FOUND, "Copy not found", "the copy's chain no longer exists")
        return head

    # --- listing ---------------------------------------------------------------------

    def list_copies(
        self,
        *,
        disk_id: ResourceId | None = None,
        region: str | None = None,
        state: CopyState | None = None,
        top: int = DEFAULT_PAGE,
        cursor: Cursor | None = None,
    ) -> Page:
        """Copies in (chain, creation) order, a page at a time."""
        chains = self.store.list_chains(disk_id=str(disk_id) if disk_id else None, region=region)
        if cursor is not None:
            chains = [chain for chain in chains if chain.partition >= cursor.chain.partition]
        found: list[Job] = []
        for chain in chains:
            after = cursor.key if cursor is not None and chain == cursor.chain else ""
            jobs = self.store.iter_jobs(chain, after=after, state=state)
            for job in _take(jobs, top - len(found)):
                found.append(job)
            if len(found) == top:
                return Page(found, Cursor(chain, found[-1].key).encode())
        return Page(found, None)


def _take(jobs: Iterator[Job], count: int) -> Iterator[Job]:
    for index, job in enumerate(jobs):
        if index >= count:
            return
        yield job


def _why_not_cancel(job: Job) -> str:
    if job.state == CopyState.COPYING:
        return (
            "the copy is in flight; ARM cannot stop a CopyStart copy, so it will finish "
            "(delete the target snapshot afterwards if it is not wanted)"
        )
    return f"the copy already ended ({job.state.value}); there is nothing to cancel"


def _why_not_retry(job: Job) -> str:
    if job.state == CopyState.SKIPPED:
        return f"the copy was skipped ({job.reason}); it cannot be retried"
    if job.state == CopyState.SUCCEEDED:
        return "the copy already succeeded"
    return f"only failed or cancelled copies can be retried; this one is {job.state.value}"
