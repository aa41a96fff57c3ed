"""Operators' requests: copy a snapshot now, backfill a disk, retry, cancel, list copies.

Every request is validated completely (ids, regions, scopes, what ARM says about the
source) before anything is written, then goes through the same engine as an event
(`Replicator.enqueue`): the same chains, copy order and region cap. Refusals are raised
as `Refused` carrying an HTTP status and a precise detail; the API turns them into
problem documents.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from shared.arm import ArmError
from shared.ids import InvalidResourceId, ResourceId
from shared.model import ChainHead, ChainKey, CopyState, Job, Snapshot
from shared.scheduler import CopyTo, eligibility
from shared.service import Replicator
from shared.store import Conflict

log = logging.getLogger("snapcopy")

MAX_PAGE = 1000
DEFAULT_PAGE = 100
_REGION_RE = re.compile(r"^[a-z][a-z0-9]{2,39}$")
_FAMILY_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_KEY_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z\|[a-z0-9_][-a-z0-9_.]{0,79}$")
_RETRYABLE_STATES = (CopyState.FAILED, CopyState.CANCELLED)


class Refused(Exception):
    """A request snapcopy will not carry out, and why (an HTTP status and a detail)."""

    def __init__(self, status: int, title: str, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.retry_after = retry_after


def invalid(detail: str) -> Refused:
    return Refused(400, "Invalid request", detail)


def unprocessable(detail: str) -> Refused:
    return Refused(422, "Cannot copy that", detail)


def conflict(detail: str) -> Refused:
    return Refused(409, "Not possible in the copy's current state", detail)


def arm_trouble(error: ArmError, what: str) -> Refused:
    """ARM failed us (not the caller): 503 when it may pass, 502 when it will not."""
    if error.retryable:
        return Refused(
            503,
            "ARM unavailable",
            f"ARM did not answer while {what} ({error.code}); nothing was recorded: retry shortly",
            retry_after=30,
        )
    return Refused(
        502, "ARM refused snapcopy", f"ARM refused snapcopy's identity while {what}: {error.code} (check its RBAC)"
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
class Cursor:
    """Where a listing stopped: the chain and the last job key returned."""

    chain: ChainKey
    key: str

    def encode(self) -> str:
        raw = json.dumps({"f": self.chain.family_id, "r": self.chain.region, "k": self.key}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        problem = invalid("continuationToken is not a token this API returned")
        if len(text) > 512 or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise problem
        try:
            data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise problem from None
        if not isinstance(data, dict) or set(data) != {"f", "r", "k"}:
            raise problem
        family, region, key = data["f"], data["r"], data["k"]
        if not all(isinstance(v, str) for v in (family, region, key)):
            raise problem
        if not (_FAMILY_RE.match(family) and _REGION_RE.match(region) and _KEY_RE.match(key)):
            raise problem
        return cls(ChainKey(family, region), key)


def parse_region(text: str, field: str) -> str:
    region = text.strip().lower()
    if not _REGION_RE.match(region):
        raise invalid(f"{field}: {text!r} is not an Azure region name (like 'westus3')")
    return region


def parse_state(text: str) -> CopyState:
    try:
        return CopyState(text.strip().lower())
    except ValueError:
        allowed = ", ".join(state.value for state in CopyState)
        raise invalid(f"state: {text!r} is not one of {allowed}") from None


def parse_id(text: str, kind: str, field: str) -> ResourceId:
    try:
        return ResourceId.parse(text.strip(), kind=kind)
    except InvalidResourceId as error:
        raise invalid(f"{field}: {error}") from None


class OnDemand:
    """The operator's side of the engine; one per request, over the process's Replicator."""

    def __init__(self, replicator: Replicator) -> None:
        self.replicator = replicator
        self.settings = replicator.settings
        self.store = replicator.store
        self.arm = replicator.arm

    # --- requests that create copies -------------------------------------------------

    def regions(self, requested: Sequence[str] | None) -> tuple[str, ...]:
        """The requested target regions (default: every configured one), each configured."""
        configured = self.settings.target_regions
        if requested is None:
            return tuple(configured)
        unknown = [region for region in requested if region not in configured]
        if unknown:
            raise unprocessable(
                f"targetRegions: {', '.join(unknown)} not in COPY_TARGET_REGIONS ({', '.join(configured)})"
            )
        return tuple(dict.fromkeys(requested))

    def copy_snapshot(self, snapshot_id: ResourceId, requested: Sequence[str] | None) -> Accepted:
        """Copy one snapshot now (or as soon as its chain allows)."""
        regions = self.regions(requested)
        self._check_scope(snapshot_id)
        try:
            snapshot = self.arm.get_snapshot(snapshot_id)
        except ArmError as error:
            raise arm_trouble(error, f"reading {snapshot_id}") from None
        if snapshot is None:
            raise unprocessable(f"sourceSnapshotId: ARM has no snapshot {snapshot_id}")
        decision = eligibility(snapshot, regions, self.settings.source_scopes)
        if not isinstance(decision, CopyTo):
            raise unprocessable(f"sourceSnapshotId: {snapshot_id} cannot be copied: {decision.reason}")
        same = [region for region in regions if region not in decision.regions]
        if same and requested is not None:  # named by the caller; by default, the others are copied
            raise unprocessable(f"targetRegions: {snapshot_id} is already in {same[0]}; copy it to another region")
        return Accepted(self.replicator.enqueue([snapshot], decision.regions), [])

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
        for snap in sorted(mine, key=lambda item: item.order_key):
            decision = eligibility(snap, regions, self.settings.source_scopes)
            if isinstance(decision, CopyTo):
                copyable.setdefault(decision.regions, []).append(snap)
            else:
                ignored.append((str(snap.id), decision.reason))
        if not copyable:
            reasons = "; ".join(sorted({reason for _, reason in ignored}))
            raise unprocessable(
                f"sourceDiskId: none of the {len(mine)} snapshots of {disk_id} can be copied: {reasons}"
            )
        copies = [pair for targets, snaps in copyable.items() for pair in self.replicator.enqueue(snaps, targets)]
        return Accepted(copies, ignored)

    def _check_scope(self, resource: ResourceId) -> None:
        if not self.settings.in_scope(resource):
            raise unprocessable(f"{resource} is outside COPY_SOURCE_SCOPES; snapcopy does not copy from there")

    # --- requests about one copy -----------------------------------------------------

    def job(self, chain: ChainKey, key: str) -> Job:
        job = self.store.load_job(chain, key)
        if job is None:
            raise Refused(404, "Copy not found", "no copy has that id")
        return job

    def cancel(self, chain: ChainKey, key: str) -> Job:
        """Cancel a queued copy. A copy already sent to ARM cannot be stopped (CopyStart
        has no cancel): it finishes, and the answer says so."""
        job = self.job(chain, key)
        if job.state == CopyState.CANCELLED:
            return job
        if job.state != CopyState.QUEUED:
            raise conflict(_why_not_cancel(job))
        head = self._head(chain)
        flight = self.store.load_flight(head.region, chain)
        if flight is not None and flight.job_key == key:
            raise conflict(
                "CopyStart for this copy is being sent to ARM right now; once sent it cannot be cancelled: "
                "it will finish (delete the target snapshot afterwards if it is not wanted)"
            )
        cancelled = job.evolve(
            state=CopyState.CANCELLED,
            finished_at=self.replicator.clock(),
            reason="cancelled on request",
        )
        try:
            self.store.save_chain(head, [cancelled])  # conditional on head and job: a start serialises
        except Conflict:
            raise conflict(
                "the copy changed while cancelling it (it may have started); read it and try again"
            ) from None
        log.info("copy cancelled on request: %s → %s", job.source_id, job.chain.region)
        return self.job(chain, key)

    def retry(self, chain: ChainKey, key: str) -> Job:
        """Queue a failed or cancelled copy again, if Azure's copy order still allows it."""
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
        if job.state == CopyState.FAILED:
            self._clear_failed_target(job)
        now = self.replicator.clock()
        queued = job.evolve(
            state=CopyState.QUEUED,
            attempts=0,
            not_before=None,
            queued_at=now,
            started_at=None,
            finished_at=None,
            percent=0.0,
            error=None,
            reason=f"retried on request (was {job.state.value}" + (f": {job.error.code}" if job.error else "") + ")",
        )
        try:
            self.store.save_chain(head, [queued])
        except Conflict:
            raise conflict("the chain changed while retrying; read the copy and try again") from None
        self.store.mark_waiting(head.region, chain, now)
        try:
            self.replicator.start_waiting(chain)
        except (ArmError, Conflict) as error:
            log.warning("%s re-queued; starting it failed for now (%s): the timer retries", chain.partition, error)
        log.info("copy re-queued on request: %s → %s", job.source_id, chain.region)
        return self.job(chain, key)

    def _clear_failed_target(self, job: Job) -> None:
        """A failed copy leaves its target behind; CopyStart cannot reuse the name until it is gone."""
        try:
            target = self.arm.get_snapshot(job.target_id)
        except ArmError as error:
            raise arm_trouble(error, f"reading {job.target_id}") from None
        if target is None:
            return
        ours = (
            target.source_unique_id == job.source_unique_id
            or (target.source_resource_id or "").lower() == str(job.source_id).lower()
        )
        if not ours:
            raise conflict(f"{job.target_id} exists and is not a copy of {job.source_id}; rename or delete it first")
        failed = target.copy_error is not None or target.provisioning_state.lower() == "failed"
        if not failed:
            return  # it landed after all: the re-queued start finds it (an idempotent PUT)
        try:
            self.arm.delete_snapshot(job.target_id)
        except ArmError as error:
            raise arm_trouble(error, f"deleting the failed copy {job.target_id}") from None
        log.info("deleted the failed copy %s before retrying it", job.target_id)

    def _head(self, chain: ChainKey) -> ChainHead:
        head = self.store.load_head(chain)
        if head is None:
            raise Refused(404, "Copy not found", "the copy's chain no longer exists")
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
