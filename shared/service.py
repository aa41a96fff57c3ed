"""The imperative shell: runs one trigger end to end over the store and ARM.

Every decision comes from `shared.scheduler`; this module reads what the decision needs,
asks, and carries out the answer in a crash-safe order:

starting a copy     1. reserve the region slot (counter + flight row, one batch)
                    2. PUT CopyStart (deterministic target name: a repeat is idempotent)
                    3. commit the chain (head watermark + job row, one batch)
                    4. mark the flight `copying`
finishing a copy    1. commit the chain (job final, head freed, one batch)
                    2. release the region slot (counter - 1, flight row deleted, one batch)
                    3. queue the chain for its next snapshot

A crash between any two steps leaves a flight row that the next tick finishes: a
`starting` flight is re-driven (PUT again, commit again), a finished copy is finished again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.arm import ArmError, ComputeApi
from shared.config import Settings
from shared.events import Malformed, NotOurs, parse_event
from shared.ids import ResourceGroupId, ResourceId
from shared.model import (
    SOURCE_TAG,
    ChainHead,
    ChainKey,
    CopyError,
    CopyState,
    InFlight,
    Job,
    Phase,
    RegionKey,
    RegionLoad,
    Snapshot,
    Waiting,
)
from shared.scheduler import (
    Completed,
    CopyTo,
    Failed,
    Progress,
    Restart,
    after_refusal,
    arrival,
    assess_copy,
    eligibility,
    new_head,
    new_job,
    plan_chain,
    release_order,
    source_groups_of,
)
from shared.store import CapacityExhausted, Conflict, IndexEntry, StateStore, retrying

log = logging.getLogger("snapcopy")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickReport:
    """What one timer run did (logged, and returned for tests and the demo)."""

    regions: int = 0
    in_flight: int = 0
    polled: int = 0
    completed: int = 0
    failed: int = 0
    started: int = 0
    restarted: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"regions={self.regions} in_flight={self.in_flight} polled={self.polled} completed={self.completed} "
            f"failed={self.failed} started={self.started} restarted={self.restarted} waiting={self.waiting} "
            f"errors={len(self.errors)}"
        )


class SourceListings:
    """ARM listings of source resource groups, taken at most once per trigger run."""

    def __init__(self, arm: ComputeApi, clock: Clock) -> None:
        self._arm = arm
        self._clock = clock
        self._cache: dict[ResourceGroupId, tuple[list[Snapshot], datetime]] = {}

    def get(self, group: ResourceGroupId) -> tuple[list[Snapshot], datetime]:
        if group not in self._cache:
            listed_at = self._clock()
            self._cache[group] = (self._arm.list_snapshots(group), listed_at)
        return self._cache[group]

    def merged(self, groups: Iterable[ResourceGroupId]) -> tuple[list[Snapshot], datetime]:
        """Several groups as one listing, as old as its oldest part."""
        parts = [self.get(group) for group in sorted(set(groups), key=str)]
        return [snap for snapshots, _ in parts for snap in snapshots], min(at for _, at in parts)


class Replicator:
    """Runs the triggers: an event, a timer tick. Created once per process."""

    def __init__(self, settings: Settings, store: StateStore, arm: ComputeApi, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.store = store
        self.arm = arm
        self.clock = clock
        self.last_tick = TickReport()

    @property
    def cap(self) -> int:
        return self.settings.max_copies_per_region

    # --- the event path ----------------------------------------------------------------

    def handle_event(self, event: Any) -> str:
        """One Event Grid delivery. Returns what happened, for the log."""
        observation = parse_event(event)
        if isinstance(observation, Malformed):
            log.warning("dropping malformed event %r: %s", observation.event_id, observation.problem)
            return f"malformed: {observation.problem}"
        if isinstance(observation, NotOurs):
            return f"ignored: {observation.reason}"
        return self.observe(observation.snapshot_id)

    def observe(self, snapshot_id: ResourceId) -> str:
        """A hint that a snapshot was written: check the table first (duplicates cost no
        ARM call), then read the snapshot from ARM and record it."""
        if not self.settings.in_scope(snapshot_id):
            return "ignored: outside COPY_SOURCE_SCOPES"
        known = self.store.get_index(snapshot_id)
        if known is not None:
            return f"already handled as {known.kind}"
        try:
            snapshot = self.arm.get_snapshot(snapshot_id)
        except ArmError as error:
            if error.retryable:
                raise  # Event Grid redelivers; ARM may answer next time
            # a redelivery would get the same answer for 24 hours: say so once and drop it
            log.error("cannot read %s: %s; event dropped (fix access, then re-send it)", snapshot_id, error)
            return f"dropped: {error.code}"
        if snapshot is None:
            return "ignored: the snapshot no longer exists"
        return self.record(snapshot)

    def record(self, snapshot: Snapshot) -> str:
        """Queue a source snapshot in each of its chains and start what may start."""
        decision = eligibility(snapshot, self.settings.target_regions, self.settings.source_scopes)
        if not isinstance(decision, CopyTo):
            kind = "copy" if snapshot.is_copy else "ignored"
            self.store.put_index(IndexEntry(snapshot.id, kind, decision.reason))
            log.info("ignoring %s: %s", snapshot.id, decision.reason)
            return f"ignored: {decision.reason}"
        listings = SourceListings(self.arm, self.clock)
        results = [self._enqueue(snapshot, region, listings) for region in decision.regions]
        self.store.put_index(
            IndexEntry(snapshot.id, "source", family_id=snapshot.family_id or "", regions=",".join(decision.regions))
        )
        return "; ".join(results)

    def _enqueue(self, snapshot: Snapshot, region: str, listings: SourceListings) -> str:
        template = new_head(snapshot, region, self.settings.target_resource_group)
        head = self.store.load_head(template.key)
        if head is None:
            self.store.register_region(template.region)
            head = self.store.create_head(template)
        head = self._remember_groups(head, snapshot)
        job = self.store.add_job(
            arrival(new_job(snapshot, region, self.settings.target_resource_group, self.clock()), head)
        )
        if job.state == CopyState.QUEUED:
            head = self._recheck_order(head, job)
        if job.state != CopyState.QUEUED:
            log.info("%s → %s: %s %s", snapshot.id, region, job.state, job.reason)
            return f"{region}: {job.state}"
        self.store.mark_waiting(head.region, head.key, job.queued_at or self.clock())
        started = self._advance(head.key, head.region, listings)
        return f"{region}: {'started' if started else 'queued'}"

    def _remember_groups(self, head: ChainHead, snapshot: Snapshot) -> ChainHead:
        """A family seen in a new resource group: list that group too from now on."""
        missing = [group for group in source_groups_of(snapshot) if group not in head.source_groups]
        if not missing:
            return head

        def save() -> ChainHead:
            fresh = self.store.load_head(head.key) or head
            groups = fresh.source_groups + tuple(group for group in missing if group not in fresh.source_groups)
            if groups != fresh.source_groups:
                self.store.save_head(fresh.evolve(source_groups=groups))
            return self.store.load_head(head.key) or fresh

        result: ChainHead = retrying(save)
        return result

    def _recheck_order(self, head: ChainHead, job: Job) -> ChainHead:
        """A copy of a newer snapshot may have started while we inserted this one."""
        fresh = self.store.load_head(head.key) or head
        if fresh.last_started_key and job.key < fresh.last_started_key:
            skipped = arrival(job.evolve(queued_at=self.clock()), fresh)
            with contextlib.suppress(Conflict):
                self.store.save_job(skipped)
        return fresh

    # --- the timer path ----------------------------------------------------------------

    def tick(self) -> TickReport:
        """Poll every copy in flight, finish what finished, start what may start."""
        report = TickReport()
        listings = SourceListings(self.arm, self.clock)
        for region in self.store.list_regions():
            report.regions += 1
            try:
                self._tick_region(region, listings, report)
            except ArmError as error:
                report.errors.append(f"{region.partition}: {error}")
                log.error("tick: ARM failed for %s: %s (next tick retries)", region.partition, error)
        log.info("tick: %s", report.summary())
        self.last_tick = report
        return report

    def _tick_region(self, region: RegionKey, listings: SourceListings, report: TickReport) -> None:
        load = self.store.load_region(region)
        now = self.clock()
        report.in_flight += load.in_flight_count
        due = [
            flight
            for flight in load.in_flight
            if flight.phase == Phase.STARTING or flight.next_poll_at is None or flight.next_poll_at <= now
        ]
        targets: dict[ResourceGroupId, dict[str, Snapshot]] = {}
        for group in sorted({_group(flight.target_id) for flight in due}, key=str):
            try:
                targets[group] = {snap.id.name.lower(): snap for snap in self.arm.list_snapshots(group)}
            except ArmError as error:
                report.errors.append(f"list {group}: {error}")
                log.error("tick: cannot list copies in %s: %s (next tick retries)", group, error)
        for flight in due:
            group = _group(flight.target_id)
            if group not in targets:
                continue
            report.polled += 1
            outcome = assess_copy(flight, targets[group].get(flight.target_id.name.lower()), now)
            if isinstance(outcome, Progress):
                if outcome.changed or outcome.next_poll_at != flight.next_poll_at:
                    self.store.save_flight(
                        flight.evolve(
                            percent=outcome.percent,
                            progressed_at=now if outcome.changed else flight.progressed_at,
                            next_poll_at=outcome.next_poll_at,
                        )
                    )
            elif isinstance(outcome, Completed):
                self._finish(flight, CopyState.SUCCEEDED, None)
                report.completed += 1
            elif isinstance(outcome, Failed):
                self._finish(flight, CopyState.FAILED, outcome.error)
                report.failed += 1
            elif isinstance(outcome, Restart):
                report.restarted += 1
                self._restart(flight)
        self._release(region, listings, report)

    def _release(self, region: RegionKey, listings: SourceListings, report: TickReport) -> None:
        load = self.store.load_region(region)
        candidates = release_order(load.waiting, load.busy_families)
        report.waiting += len(candidates)
        for waiting in candidates:
            if load.in_flight_count >= self.cap:
                break
            try:
                outcome = self._advance(waiting.chain, region, listings, load=load, waiting=waiting)
            except ArmError as error:
                report.errors.append(f"{waiting.chain.partition}: {error}")
                log.error("tick: cannot advance %s: %s", waiting.chain.partition, error)
                continue
            if isinstance(outcome, RegionLoad):
                load = outcome
                report.started += 1

    # --- starting ----------------------------------------------------------------------

    def _advance(
        self,
        chain: ChainKey,
        region: RegionKey,
        listings: SourceListings,
        *,
        load: RegionLoad | None = None,
        waiting: Waiting | None = None,
    ) -> RegionLoad | None:
        """Start the chain's next copy if every rule allows; return the region after it."""
        load = load or self.store.load_region(region)
        if chain.family_id in load.busy_families or load.in_flight_count >= self.cap:
            return None
        if waiting is None:
            waiting = next((item for item in load.waiting if item.chain == chain), None)
        head = self.store.load_head(chain)
        if head is None:
            return None
        now = self.clock()
        pending = self.store.load_pending(head)
        plan = plan_chain(head, pending, now)
        if plan.needs_listing:
            # a disk's snapshots usually share a group, but nothing forces them to
            groups = {*head.source_groups} | {_group(job.source_id) for job in pending if job.state == CopyState.QUEUED}
            snapshots, listed_at = listings.merged(groups)
            plan = plan_chain(
                head,
                pending,
                now,
                listing=snapshots,
                listed_at=listed_at,
                target_group=self.settings.target_resource_group,
            )
            head = self._note_listing(head, plan.listed_through)
            self.store.add_jobs(plan.add)
            for job in plan.skip:
                self._save_quietly(job)
            for job in plan.add:
                log.info("listing found %s (its event was lost or late): queued for %s", job.source_id, chain.region)
        if plan.start is None:
            if plan.wait == "nothing queued" and waiting is not None:
                self.store.clear_waiting(waiting)
            log.debug("%s waits: %s", chain.partition, plan.wait)
            return None
        job = plan.start
        flight = InFlight(
            region=head.region,
            chain=chain,
            job_key=job.key,
            source_id=job.source_id,
            target_id=job.target_id,
            phase=Phase.STARTING,
            started_at=now,
        )
        try:
            load = self.store.reserve_slot(load, flight, self.cap)
        except CapacityExhausted:
            return None
        except Conflict:
            log.info("%s: slot taken concurrently; the next tick looks again", chain.partition)
            return None
        self.store.put_index(IndexEntry(job.target_id, "copy", reason=f"copy of {job.source_id}"))
        if self._launch(job, flight):
            return load
        return self.store.load_region(region)

    def _note_listing(self, head: ChainHead, listed_through: datetime | None) -> ChainHead:
        if listed_through is None or listed_through == head.listed_through:
            return head

        def save() -> ChainHead:
            fresh = self.store.load_head(head.key) or head
            if fresh.listed_through is not None and fresh.listed_through >= listed_through:
                return fresh
            updated = fresh.evolve(listed_through=listed_through)
            self.store.save_head(updated)
            return self.store.load_head(head.key) or updated

        result: ChainHead = retrying(save)
        return result

    def _launch(self, job: Job, flight: InFlight) -> bool:
        """PUT the copy for a reserved slot; commit on success, give the slot back if refused."""
        try:
            self.arm.start_copy(job.source_id, job.target_id, flight.region.region, {SOURCE_TAG: str(job.source_id)})
        except ArmError as error:
            stored = self.store.load_job(job.chain, job.key) or job
            refusal = error.as_refusal()
            if refusal.source_missing and self.arm.get_snapshot(job.source_id) is not None:
                # the 404 was about something else (the target resource group, say)
                refusal = replace(refusal, source_missing=False, retryable=False)
            updated = after_refusal(stored, refusal, self.clock(), self.settings.max_start_attempts)
            log.warning(
                "CopyStart %s → %s refused: %s; %s",
                job.source_id,
                job.target_id,
                error,
                updated.reason or f"retrying after {updated.not_before}",
            )
            self._save_quietly(updated)
            self._give_back(flight)
            # retried later (or the chain moves on): either way the timer must look again
            self.store.mark_waiting(flight.region, flight.chain, stored.queued_at or self.clock())
            return False
        retrying(lambda: self._commit_start(job, flight))
        self.store.save_flight(flight.evolve(phase=Phase.COPYING))
        log.info("copy started: %s → %s", job.source_id, job.target_id)
        return True

    def _commit_start(self, job: Job, flight: InFlight) -> None:
        head = self.store.load_head(job.chain)
        assert head is not None
        if head.copying_key == job.key:
            return
        pending = {item.key: item for item in self.store.load_pending(head)}
        current = pending.get(job.key) or self.store.load_job(job.chain, job.key) or job
        started = current.evolve(
            state=CopyState.COPYING,
            source_ready=True,
            started_at=flight.started_at,
            not_before=None,
            error=None,
            attempts=current.attempts + 1,
        )
        overtaken = [
            arrival(item.evolve(queued_at=flight.started_at), head.evolve(last_started_key=job.key))
            for item in pending.values()
            if item.state == CopyState.QUEUED and item.key < job.key
        ]
        self.store.save_chain(head.evolve(copying_key=job.key, last_started_key=job.key), [started, *overtaken])

    def _restart(self, flight: InFlight) -> None:
        """A slot reserved by a run that died before it committed: finish what it began."""
        job = self.store.load_job(flight.chain, flight.job_key)
        if job is None or job.state.is_final:
            self._give_back(flight)
            return
        log.warning("re-driving an interrupted start: %s → %s", flight.source_id, flight.target_id)
        self._launch(job, flight)

    # --- finishing ---------------------------------------------------------------------

    def _finish(self, flight: InFlight, state: CopyState, error: CopyError | None) -> None:
        now = self.clock()

        def commit() -> None:
            head = self.store.load_head(flight.chain)
            job = self.store.load_job(flight.chain, flight.job_key)
            if head is None or job is None:
                return
            if job.state.is_final and head.copying_key != job.key:
                return  # finished by an earlier run that died before releasing the slot
            final = job.evolve(
                state=state,
                finished_at=now,
                error=error,
                percent=100.0 if state == CopyState.SUCCEEDED else flight.percent,
                reason=""
                if state == CopyState.SUCCEEDED
                else "the copy failed; the chain moved on to its next snapshot",
            )
            changes: dict[str, Any] = {"copying_key": "" if head.copying_key == job.key else head.copying_key}
            if state == CopyState.SUCCEEDED:
                changes.update(
                    last_completed_key=job.key, last_completed_source=str(job.source_id), last_completed_at=now
                )
            self.store.save_chain(head.evolve(**changes), [final])

        retrying(commit)
        if state == CopyState.SUCCEEDED:
            log.info("copy completed: %s → %s", flight.source_id, flight.target_id)
        else:
            assert error is not None
            log.error(
                "copy failed: %s → %s: %s %s; the chain moves on to its next snapshot",
                flight.source_id,
                flight.target_id,
                error.code,
                error.message,
            )
        self._give_back(flight)
        self._requeue(flight.region, flight.chain)

    def _give_back(self, flight: InFlight) -> None:
        def release() -> None:
            load = self.store.load_region(flight.region)
            if not any(item.chain == flight.chain and item.job_key == flight.job_key for item in load.in_flight):
                return
            self.store.release_slot(load, flight)

        retrying(release)

    def _requeue(self, region: RegionKey, chain: ChainKey) -> None:
        """After a copy ends: keep the chain waiting if it has more, else drop its marker.
        The marker is read before the queue so a concurrent arrival cannot be lost."""
        waiting = self.store.find_waiting(region, chain)
        head = self.store.load_head(chain)
        if head is None:
            return
        queued = [job for job in self.store.load_pending(head) if job.state == CopyState.QUEUED]
        if queued:
            self.store.mark_waiting(region, chain, min(job.queued_at or self.clock() for job in queued))
        elif waiting is not None:
            self.store.clear_waiting(waiting)

    def _save_quietly(self, job: Job) -> None:
        try:
            self.store.save_job(job)
        except Conflict:
            log.info("job %s changed concurrently; keeping the other writer's version", job.key)


def _group(resource: ResourceId) -> ResourceGroupId:
    return ResourceGroupId(resource.subscription, resource.resource_group)
