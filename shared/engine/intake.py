"""Events and requests in: a snapshot reported (an Event Grid event, an operator's request,
the sweep's listing) becomes a job row in each of its chains, deduplicated, and starts at
once when every rule allows.

It must not start a copy itself (the Starter does) nor read a clock but the injected one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from shared.admission import CopyTo, NotYet, arrival, chain_set, eligibility, new_head, new_job, source_groups_of
from shared.arm import ArmError
from shared.dedupe import same_snapshot, seen_recently, started_recently
from shared.engine.listings import Run
from shared.engine.parts import Deps, Part
from shared.engine.starting import Starter
from shared.events import Malformed, NotOurs, parse_event
from shared.ids import ResourceId
from shared.model import ChainHead, ChainKey, CopyState, Job, RegionKey, Snapshot
from shared.placement import target_group
from shared.poison import EventFailure, failed_again
from shared.store import Conflict, IndexEntry, retrying

log = logging.getLogger("snapcopy")


class SourceNotSettled(Exception):
    """ARM's answer about a source lacks what ordering needs: ask again later."""


class Intake(Part):
    """Takes snapshots in: events, operators' copies, the sweep's finds."""

    def __init__(self, deps: Deps, starting: Starter) -> None:
        super().__init__(deps)
        self.starting = starting

    def handle_event(self, event: Any) -> str:
        """One Event Grid delivery. Returns what happened, for the log.

        A failure is raised so Event Grid redelivers, until the same event has failed
        EVENT_MAX_ATTEMPTS times: then it is recorded (`poison` rows) and dropped. Dropping
        loses nothing for good: events are hints, and the sweep lists the sources."""
        try:
            return self._handle_event(event)
        except Exception as error:
            event_id = str(getattr(event, "id", "") or "")
            subject = str(getattr(event, "subject", "") or "")
            try:
                failure = self._count_failure(event_id, subject, f"{type(error).__name__}: {error}")
            except Exception:
                log.exception("could not record the failure of event %r", event_id)
                raise error from None
            if not failure.poisoned:
                raise
            log.error(
                "event %r (%s) failed %d times; dropped (the sweep will find its snapshot): %s",
                event_id,
                subject,
                failure.attempts,
                error,
            )
            return f"poisoned after {failure.attempts} attempts"

    def _count_failure(self, event_id: str, subject: str, error: str) -> EventFailure:
        """Record one more failed delivery (the `poison` rows operators look at)."""

        def count() -> EventFailure:
            failure = failed_again(
                self.store.load_event_failure(event_id),
                event_id,
                subject,
                error,
                self.clock(),
                poisoned_at=self.settings.max_event_attempts,
            )
            self.store.save_event_failure(failure)
            return failure

        return retrying(count)

    def _handle_event(self, event: Any) -> str:
        observation = parse_event(event)
        if isinstance(observation, Malformed):
            log.warning("dropping malformed event %r: %s", observation.event_id, observation.problem)
            return f"malformed: {observation.problem}"
        if isinstance(observation, NotOurs):
            return f"ignored: {observation.reason}"
        return self.observe(observation.snapshot_id)

    def observe(self, snapshot_id: ResourceId) -> str:
        """A hint that a snapshot was written: check the table first (duplicates within
        Event Grid's retry window cost no ARM call), then read the snapshot and record it."""
        if not self.settings.in_scope(snapshot_id):
            return "ignored: outside COPY_SOURCE_SCOPES"
        now = self.clock()
        if started_recently(self.caches.started_at(snapshot_id), now):
            return "already handled as copy"  # one of ours: the seen-index says the same
        known = self.store.get_index(snapshot_id)
        if known is not None and seen_recently(known, now):
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
        if known is not None and same_snapshot(known, snapshot):
            self.store.put_index(replace(known, recorded_at=now))  # the same snapshot, written again
            return f"already handled as {known.kind}"
        return self.record(snapshot)

    def record(self, snapshot: Snapshot) -> str:
        """Queue a source snapshot in each of its chains and start what may start."""
        now = self.clock()
        decision = eligibility(snapshot, self.settings.policies, self.settings.source_scopes)
        if isinstance(decision, NotYet):
            # nothing recorded (the seen-index would dedupe the redelivery): Event Grid
            # delivers again and the GET is repeated; the sweep finds it if that runs out
            raise SourceNotSettled(f"{snapshot.id}: {decision.reason}")
        if not isinstance(decision, CopyTo):
            kind = "copy" if snapshot.is_copy else "ignored"
            self.store.put_index(
                IndexEntry(snapshot.id, kind, decision.reason, unique_id=snapshot.unique_id, recorded_at=now)
            )
            log.info("ignoring %s: %s", snapshot.id, decision.reason)
            return f"ignored: {decision.reason}"
        run = Run(self.listings, eager=False)
        results = [self._enqueue(snapshot, region, run) for region in decision.regions]
        self.store.put_index(
            IndexEntry(
                snapshot.id,
                "source",
                family_id=snapshot.family_id or "",
                regions=",".join(decision.regions),
                unique_id=snapshot.unique_id,
                recorded_at=now,
            )
        )
        return "; ".join(results)

    def _enqueue(self, snapshot: Snapshot, region: str, run: Run) -> str:
        job, _, busy = self._arrive(snapshot, region)
        if job.state != CopyState.QUEUED:
            log.info("%s → %s: %s %s", snapshot.id, region, job.state, job.reason)
            return f"{region}: {job.state}"
        # no start to try (and no slot to read): the chain's copy in flight hands over to
        # it when it ends, or the timer gives it a slot when one comes free
        if busy:
            return f"{region}: queued behind the copy in flight"
        if self.caches.seen_full(job.region):
            return f"{region}: queued (the region is at its cap)"
        try:
            started, _ = self.starting.advance(job.chain, job.region, run)
        except (ArmError, Conflict) as error:
            # recorded and waiting: the timer starts it; the event itself is done
            log.warning(
                "%s → %s queued; starting it failed for now (%s): the timer retries", snapshot.id, region, error
            )
            return f"{region}: queued"
        return f"{region}: {'started' if started else 'queued'}"

    def arrive(self, snapshot: Snapshot, region: str) -> tuple[Job, bool]:
        """Queue one snapshot in one chain (or skip it, if a newer one already started).
        Returns the job as stored and whether this call created it."""
        job, created, _ = self._arrive(snapshot, region)
        return job, created

    def _arrive(self, snapshot: Snapshot, region: str) -> tuple[Job, bool, bool]:
        """`arrive`, and whether the chain's head (as this arrival wrote or read it) has a
        copy in flight: then no start can follow (`plan_chain` waits for it to end)."""
        selected = self.select(snapshot, region)
        if selected is None:  # callers asked `eligibility`, which answers from the same policies
            raise ValueError(f"no policy copies {snapshot.id} to {region}")
        target = selected.target
        group = target_group(selected, snapshot.id)
        template = new_head(snapshot, region, group, target.disk_encryption_set_id or "", target.method.value)
        key = snapshot.order_key  # the key its job has
        first, existing = self.store.load_head_and_job(template.key, key)
        if first is None:
            if not self.caches.registered(template.region):
                self.store.register_region(template.region)
                self.caches.note_registered(template.region)
            first = self.store.create_head(template)
        known = [(first, existing)]  # the first attempt uses this read; a retry reads again

        def arrive() -> tuple[Job, bool, ChainHead]:
            head, existing = known.pop() if known else self.store.load_head_and_job(template.key, key)
            if head is None:  # gone since it was created: `retrying` reads again
                raise Conflict(f"head {template.key.partition} is missing")
            if existing is not None:
                return existing, False, head
            placement = self.placed(selected, snapshot, head.target_group)
            candidate = new_job(snapshot, placement, self.clock(), chain_set=chain_set(head))
            groups = head.source_groups + tuple(g for g in source_groups_of(snapshot) if g not in head.source_groups)
            if groups != head.source_groups:  # a group never listed: what was listed so far proves less
                head = replace(head, source_groups=groups, listed_through=None)
            job, written = self.store.add_job_guarded(head, arrival(candidate, head))
            # the head as written: its ETag orders this arrival with a finish's commit
            return job, True, written

        job, created, head = retrying(arrive)
        watermark = head.last_started_key
        if job.state == CopyState.QUEUED:
            self.store.mark_waiting(
                head.region,
                head.key,
                job.queued_at or self.clock(),
                from_key=watermark,
                next_bytes=job.size_bytes,
            )
        return job, created, bool(head.copying_key)

    def start_waiting(self, chain: ChainKey, region: RegionKey) -> bool:
        """Start a chain's next copy now if every rule allows (requests use this)."""
        started, _ = self.starting.advance(chain, region, Run(self.listings, eager=False))
        return started

    def enqueue(self, snapshots: Iterable[Snapshot], regions: Iterable[str]) -> list[tuple[Job, bool]]:
        """On-demand copies (the HTTP API): queue validated snapshots oldest first in the
        given regions, then start what may start, exactly as the event path would.

        Returns every job as it stands afterwards, and whether this call created it.
        Nothing is written to the seen-index: a later event still records the snapshot
        for every configured region.
        """
        targets = tuple(regions)
        arrived: list[tuple[Job, bool]] = []
        for snapshot in sorted(snapshots, key=lambda snap: snap.order_key):
            arrived.extend(self.arrive(snapshot, region) for region in targets)
        run = Run(self.listings, eager=False)
        chains = {job.chain: job.region for job, _ in arrived if job.state == CopyState.QUEUED}
        for chain, region in chains.items():
            try:
                self.starting.advance(chain, region, run)
            except (ArmError, Conflict) as error:
                log.warning("%s queued; starting it failed for now (%s): the timer retries", chain.partition, error)
        return [(self.store.load_job(job.chain, job.key) or job, created) for job, created in arrived]
