"""The start protocol: a chain's next copy started when every rule allows, in a crash-safe order.

1. reserve the region slot (counter + 1 and the flight row, one batch)
2. PUT CopyStart (deterministic target name: a repeat is idempotent)
3. commit the chain (head watermark + job row, one batch)
4. mark the flight `copying`

A crash between any two steps leaves a `starting` flight row that the next tick confirms
(the PUT landed) or re-drives after START_GRACE (PUT again). A diff chain's slot is in its
region's diff lane, and engine/diff_lane.py does steps 2 to 4.

It must not decide what starts (the scheduler does) nor finish a copy (the Finisher does).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.arm import ArmError
from shared.engine.diff_lane import DiffLane
from shared.engine.finishing import Finisher
from shared.engine.listings import Run
from shared.engine.parts import Deps, Part, log_dropped_tags
from shared.model import (
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
from shared.refusals import StartRefusal, after_refusal, refusal
from shared.scheduler import ChainPlan, Hold, made_from, name_taken, observed_source, overtaken, plan_chain
from shared.store import CapacityExhausted, Conflict, IndexEntry, retrying

log = logging.getLogger("snapcopy")

_CANCEL_TOO_LATE = "a cancel request arrived after CopyStart was sent: the copy continues (ARM cannot stop it)"


@dataclass(frozen=True)
class Known:
    """Rows a starting run has just read or written (with their ETags)."""

    head: ChainHead
    job: Job
    pending: tuple[Job, ...]


class Starter(Part):
    """Starts copies; gives a refused start's slot back through the Finisher."""

    def __init__(self, deps: Deps, finishing: Finisher, lane: DiffLane) -> None:
        super().__init__(deps)
        self.finishing = finishing
        self.lane = lane  # the diff method's increments start there

    def advance(
        self,
        chain: ChainKey,
        region: RegionKey,
        run: Run,
        *,
        load: RegionLoad | None = None,
        waiting: Waiting | None = None,
    ) -> tuple[bool, RegionLoad | None]:
        """Start the chain's next copy if every rule allows.

        Returns (started, the region as it is now, when known). The timer hands in the
        whole region; alone, a chain reads only its own rows of it (`load_slot`), so an
        event costs the same with ten chains waiting or ten thousand."""
        whole = load is not None

        def fresh() -> RegionLoad:
            return self.note_load(self.store.load_region(region) if whole else self.store.load_slot(region, chain))

        load = load or fresh()
        if chain.family_id in load.busy_families or load.in_flight_count >= self.cap(region):
            return False, load
        if waiting is None:
            waiting = next((item for item in load.waiting if item.chain == chain), None)
        head, pending = self._chain(chain, waiting)
        if head is None:
            return False, load
        now = self.clock()
        plan = plan_chain(head, pending, now, latest=self.latest_policies)
        if plan.needs_listing:
            groups = {*head.source_groups} | {job.source_id.group for job in pending if job.state == CopyState.QUEUED}
            # a kept listing first; a fresh one only when that does not prove enough
            for read in (run.cached, lambda wanted: run.fresh(wanted, now)):
                listing = read(groups)
                if listing is None:
                    continue
                plan = plan_chain(
                    head,
                    pending,
                    now,
                    listing=listing[0],
                    listed_at=listing[1],
                    select=self.select,
                    latest=self.latest_policies,
                )
                if not plan.needs_listing:
                    break
            # the jobs first, the promise after: a head must never vouch for snapshots
            # ("everything older than T is known") that no job row records yet
            added = self.store.add_jobs(plan.add)
            for source, names in plan.dropped_tags:
                log_dropped_tags(source, head.key.region, names)
            pending = sorted({job.key: job for job in (*pending, *added)}.values(), key=lambda job: job.key)
            if plan.start is not None and not plan.add:
                # no row changed: the start's commit writes the head, and the promise with it
                # (a start that falls through loses only the note; the listing is kept)
                listed = max(filter(None, (head.listed_through, plan.listed_through)), default=None)
                head = replace(head, listed_through=listed)
            else:
                head = self._note_listing(head, plan.listed_through)
            for job in plan.add:
                log.info("listing found %s (its event was lost or late): queued for %s", job.source_id, chain.region)
        checked = plan.check is not None  # plan_chain never asks for a check and a start at once
        if checked:
            plan, pending = self._check_source(head, pending, plan, now)
        if plan.start is None:
            if plan.hold == Hold.NOTHING_QUEUED and waiting is not None:
                self.store.clear_waiting(waiting)
            log.debug("%s waits: %s", chain.partition, plan.wait)
            return False, load
        job = plan.start
        if self.arm.paused_until(job.target_id.subscription) is not None:
            return False, load  # ARM is backing off there: a PUT now would only spend an attempt
        flight = InFlight(
            region=head.region,
            chain=chain,
            job_key=job.key,
            source_id=job.source_id,
            target_id=job.target_id,
            phase=Phase.STARTING,
            started_at=now,
            attempt=uuid.uuid4().hex,
        )
        try:
            load = self.note_load(self.store.reserve_slot(load, flight, self.cap(region)))
        except CapacityExhausted:
            return False, self.note_load(load)
        except Conflict:
            log.info("%s: slot taken concurrently; looking again", chain.partition)
            return False, fresh()
        flight = next(item for item in load.in_flight if item.chain == chain)
        current = self.store.load_job(chain, job.key)
        if current is None or current.state != CopyState.QUEUED or (current.not_before or now) > now:
            # cancelled (or held) after the plan read it: the slot is not needed after all
            log.info("%s: %s changed before its start; not starting it", chain.partition, job.key)
            self.finishing.hand_back(flight)
            return False, fresh()
        if region.is_diff:  # no CopyStart: an increment on our compute
            return self.lane.begin(flight, current), load
        self.store.put_index(IndexEntry(job.target_id, "copy", reason=f"copy of {job.source_id}", recorded_at=now))
        self.caches.remember_copy(job.target_id, now)
        # what this run just read and wrote is what the commit needs, unless the plan
        # changed other rows of the chain (then the commit reads them again)
        known = None if plan.add or checked else Known(head, current, tuple(pending))
        if self._drive(current, flight, known):
            return True, load
        return False, fresh()

    def _check_source(
        self, head: ChainHead, pending: list[Job], plan: ChainPlan, now: datetime
    ) -> tuple[ChainPlan, list[Job]]:
        """Read the source the plan is waiting on (a GET: the judge of existence), record
        what ARM said on its job, and plan again with it."""
        assert plan.check is not None
        job = next((item for item in pending if item.key == plan.check.key), None)
        if job is None or job.etag is None:
            return plan, pending  # a row this run did not read (a listing's, another writer's): next run
        job = replace(plan.check, etag=job.etag)
        source = self.arm.get_snapshot(job.source_id)
        seen = observed_source(job, source, now)
        if seen == job:
            return plan, pending
        try:
            stored = self.store.save_job(seen)
        except Conflict:
            return plan, pending  # changed concurrently: the next run looks again
        if stored.state == CopyState.SKIPPED:
            log.warning("%s → %s skipped: %s", job.source_id, head.key.region, stored.reason)
        elif stored.source_ready and not job.source_ready:
            log.info("source %s is ready to copy to %s", job.source_id, head.key.region)
        elif source is not None and not source.is_ready and not source.access_state_known:
            log.warning(
                "%s reports snapshotAccessState %r, which snapcopy does not know: not copied until ARM says "
                "Available (check the snapshot)",
                job.source_id,
                source.access_state,
            )
        elif not stored.source_ready:
            log.info(
                "%s → %s waits for its source (%.1f%% of its own background copy)",
                job.source_id,
                head.key.region,
                stored.source_percent or 0.0,
            )
        pending = [stored if item.key == job.key else item for item in pending]
        return plan_chain(head, pending, now, latest=self.latest_policies), pending

    def _chain(self, chain: ChainKey, waiting: Waiting | None) -> tuple[ChainHead | None, list[Job]]:
        """The head and the queue (jobs from the watermark on): in one query when the wait
        marker knows where the queue begins, else two."""
        if waiting is not None and waiting.from_key is not None:
            return self.store.load_queue(chain, waiting.from_key)
        head = self.store.load_head(chain)
        return head, (self.store.load_pending(head) if head is not None else [])

    def _note_listing(self, head: ChainHead, listed_through: datetime | None) -> ChainHead:
        if listed_through is None or listed_through == head.listed_through:
            return head

        known = [head]  # the first attempt writes over the head we hold; a retry reads again

        def save() -> ChainHead:
            fresh = known.pop() if known else (self.store.load_head(head.key) or head)
            if fresh.listed_through is not None and fresh.listed_through >= listed_through:
                return fresh
            return self.store.save_head(replace(fresh, listed_through=listed_through))

        return retrying(save)

    def _drive(self, job: Job, flight: InFlight, known: Known | None = None) -> bool:
        """PUT the copy for a slot this run holds. True while the slot stays taken. A 4xx
        gives the slot back; a 5xx or a lost connection keeps it (the copy may exist)."""
        try:
            made = self.arm.start_copy(job.order)
        except ArmError as error:
            stored = self.store.load_job(job.chain, job.key) or job
            if error.status is None or error.status >= 500:
                log.warning(
                    "CopyStart %s → %s unconfirmed (%s); the tick checks whether it landed",
                    job.source_id,
                    job.target_id,
                    error,
                )
                if stored.state == CopyState.QUEUED:
                    self.save_quietly(
                        replace(stored, attempts=stored.attempts + 1, error=CopyError(error.code, error.message))
                    )
                return True
            verdict = refusal(CopyError(error.code, error.message), error.status, error.retryable)
            if verdict.source_missing and self.arm.get_snapshot(job.source_id) is not None:
                # the 404 was about something else (the target resource group, say)
                verdict = replace(verdict, source_missing=False, retryable=False)
            self.refused(stored, flight, verdict)
            return False
        if made is None:
            # accepted without a body snapcopy can read (an empty 202, say): a GET tells
            made = self._read_back(job)
            if made is None:  # outcome unknown: the slot stays taken; the tick settles it
                stored = self.store.load_job(job.chain, job.key) or job
                if stored.state == CopyState.QUEUED:  # an unconfirmed try counts, as for a 5xx
                    unconfirmed = CopyError("StartNotConfirmed", "ARM accepted CopyStart but no GET shows the copy yet")
                    self.save_quietly(replace(stored, attempts=stored.attempts + 1, error=unconfirmed))
                return True
        if not made_from(made, job):
            stored = self.store.load_job(job.chain, job.key) or job
            self.refused(stored, flight, StartRefusal(name_taken(job), retryable=False))
            return False
        self.commit(flight, known)
        log.info("copy started: %s → %s", job.source_id, job.target_id)
        return True

    def _read_back(self, job: Job) -> Snapshot | None:
        """The copy ARM accepted, read with a GET; None when that cannot tell yet."""
        try:
            return self.arm.get_snapshot(job.target_id)
        except ArmError as error:
            log.warning("cannot read back %s (%s); the tick checks whether it landed", job.target_id, error)
            return None

    def refused(self, stored: Job, flight: InFlight, refusal: StartRefusal) -> None:
        """ARM said no: record it on the job (if still queued) and give the slot back."""
        current = self.store.load_flight(flight.region, flight.chain)
        if current is None or current.attempt != flight.attempt:
            return  # another run owns this start now
        updated = after_refusal(stored, refusal, self.clock(), self.settings.max_start_attempts)
        log.warning(
            "CopyStart %s → %s refused: %s %s; %s",
            stored.source_id,
            stored.target_id,
            refusal.error.code,
            refusal.error.message,
            updated.reason or f"retrying after {updated.not_before}",
        )
        if stored.state == CopyState.COPYING:
            self.finishing.finish(current, CopyState.FAILED, refusal.error)  # clears the head too
            return
        if stored.state == CopyState.QUEUED:
            self.save_quietly(updated)
        self.finishing.give_back(current)
        self.store.mark_waiting(
            flight.region, flight.chain, stored.queued_at or self.clock(), next_bytes=stored.size_bytes
        )

    def commit(self, flight: InFlight, known: Known | None = None) -> None:
        """Record a start ARM accepted: job copying, head watermark, flight `copying`.
        Idempotent, and only for the run (attempt) that still owns the flight.

        With `known` (the rows the starting run holds), the first attempt writes without
        reading: every write is ETag-conditional, so a row that changed meanwhile fails
        the batch and the retry reads afresh."""
        current: InFlight | None = flight
        if known is None:
            current = self.store.load_flight(flight.region, flight.chain)
        if current is None or current.attempt != flight.attempt or current.job_key != flight.job_key:
            return
        held = [known] if known is not None else []

        def commit_chain() -> timedelta | None:
            """Commit; the handoff (its predecessor's end to this start) when the job waited for it."""
            head: ChainHead | None
            job: Job | None
            pending: list[Job] | None = None
            if held:
                rows = held.pop()
                head, job, pending = rows.head, rows.job, list(rows.pending)
            else:
                head = self.store.load_head(flight.chain)
                job = self.store.load_job(flight.chain, flight.job_key)
            if head is None or job is None or job.state not in (CopyState.QUEUED, CopyState.CANCELLED):
                return None  # committed already (or finished by a tick)
            # A cancel that raced with this start lost: ARM has the copy, so it is recorded.
            note = _CANCEL_TOO_LATE if job.state == CopyState.CANCELLED else ""
            if pending is None:
                pending = self.store.load_pending(head)
            started = replace(
                job,
                state=CopyState.COPYING,
                source_ready=True,
                started_at=flight.started_at,
                not_before=None,
                error=None,
                reason=note,
                finished_at=None,
            )
            watermark = max(head.last_started_key, job.key)
            self.store.save_chain(
                replace(
                    head,
                    copying_key=job.key,
                    last_started_key=watermark,
                    disk_encryption_set_id=job.disk_encryption_set_id,  # the set every later copy keeps
                ),
                [started],
                overtaken=overtaken(
                    head, pending, job.key, flight.started_at, superseded=job.policy in self.latest_policies
                ),
            )
            ended = head.last_completed_at
            waited = ended is not None and job.queued_at is not None and job.queued_at <= ended
            return flight.started_at - ended if waited and ended is not None else None

        handoff = retrying(commit_chain)
        if handoff is not None:
            self.metrics.handoff(flight.chain.region, handoff)
        if current.phase == Phase.STARTING:
            with contextlib.suppress(Conflict):
                self.store.save_flight(replace(current, phase=Phase.COPYING))

    def restart(self, flight: InFlight) -> None:
        """A start nobody confirmed within the grace: take it over and PUT again (idempotent)."""
        job = self.store.load_job(flight.chain, flight.job_key)
        if job is None or job.state.is_final:
            self.finishing.hand_back(flight)
            return
        if job.state == CopyState.COPYING:
            # committed, but the flight never said so: confirm it; the next poll judges the copy
            self.commit(flight)
            return
        if self.arm.paused_until(flight.target_id.subscription) is not None:
            return  # ARM is backing off there: the next tick re-drives it, spending nothing now
        if job.attempts >= self.settings.max_start_attempts:
            if self.arm.get_snapshot(job.target_id) is not None:
                self.commit(flight)  # it did land; the listing was behind
                return
            error = job.error or CopyError("StartNotConfirmed", "ARM never confirmed the CopyStart")
            self.refused(job, flight, StartRefusal(error, retryable=False))
            return
        try:
            taken = self.store.save_flight(replace(flight, attempt=uuid.uuid4().hex, started_at=self.clock()))
        except Conflict:
            return  # another run took it over first
        log.warning("re-driving an unconfirmed start: %s → %s", flight.source_id, flight.target_id)
        self._drive(job, taken)
