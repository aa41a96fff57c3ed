"""The reconciliation sweep: ARM's snapshot list is the truth, events only hints.

Events get lost, dead-lettered, or arrive while the app is down for a day. Once an hour
(SWEEP_SCHEDULE) the sweep lists the incremental snapshots in the source scopes and
queues every one the chains do not know yet, through the same arrival as an event (so a
snapshot older than one already started is recorded `skipped`, with the reason, never
dropped). It then repairs state that disagrees with itself or with ARM: a region's slot
counter that is not the number of its flight rows, and a chain whose head says a copy is
in flight while no flight row (so no poll) tracks it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.admission import CopyTo, arrival, eligibility
from shared.arm import ArmError
from shared.dedupe import handled_for
from shared.engine.access import Access
from shared.engine.differ import held_by
from shared.engine.finishing import Finisher
from shared.engine.intake import Intake
from shared.engine.parts import Deps, Part
from shared.engine.polling import rotated
from shared.engine.reports import summary_line
from shared.engine.rpo_watch import RpoWatch
from shared.ids import ResourceGroupId, Scope
from shared.model import ChainHead, ChainKey, CopyState, InFlight, Phase, RegionLoad, Snapshot
from shared.progress import Completed, Failed, assess_copy
from shared.store import Conflict, IndexEntry

log = logging.getLogger("snapcopy")

# Listing scopes stops after this long (the repairs still run): well inside host.json's
# functionTimeout (10 minutes), whatever ARM does; the next hourly sweep lists the rest.
SWEEP_BUDGET = timedelta(minutes=5)
_UNLIMITED = 1_000_000  # adopting a copy ARM already runs records the truth, cap or not


@dataclass
class SweepReport:
    """What one sweep found and fixed (logged, and returned for tests and the demo)."""

    scopes: int = 0
    listed: int = 0
    found: int = 0
    skipped: int = 0
    counters_fixed: int = 0
    orphans: int = 0
    stranded: int = 0  # chains with queued work nothing would start, queued again (or skipped, if overtaken)
    deferred: int = 0  # scopes left for the next sweep (time budget)
    rpo_breaches: int = 0  # chains whose RPO went over RPO_ALERT_MINUTES since the last sweep
    grants_revoked: int = 0  # snapshots' read access nobody held any more, revoked
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return summary_line(self)


class Reconciler(Part):
    """Runs the sweep: queues through the Intake what no event reported, finishes orphans
    through the Finisher."""

    def __init__(self, deps: Deps, intake: Intake, finishing: Finisher, access: Access) -> None:
        super().__init__(deps)
        self.intake = intake
        self.finishing = finishing
        self.access = access
        self.rpo_watch = RpoWatch(deps)

    def sweep(self) -> SweepReport:
        """List the scopes and queue what no event reported, then repair state. Scopes
        past SWEEP_BUDGET are left for the next sweep; the repairs always run."""
        report = SweepReport()
        began = self.clock()
        deadline = began + SWEEP_BUDGET
        for scope in rotated(self.scopes(), int(began.timestamp() // 3600)):
            report.scopes += 1
            if self.clock() >= deadline:
                report.deferred += 1
                continue
            listed_at = self.clock()
            try:
                listed = self._list(scope)
            except ArmError as error:
                report.errors.append(f"list {scope}: {error}")
                log.error("sweep: cannot list %s: %s (the next sweep retries)", scope, error)
                continue
            report.listed += len(listed)
            self.listings.keep(scope, listed, listed_at)  # starts reuse it
            self._enqueue_missing(listed, report)
        self._repair_heads(report, self._repair_regions(report))
        try:
            report.grants_revoked = self.access.sweep(self._increment_alive)
        except Exception as error:  # the grants' trouble must not hide the rest of the report
            report.errors.append(f"read access: {error}")
            log.exception("sweep: cannot check the read access grants (the next sweep retries)")
        if report.deferred:
            log.warning("sweep: %d scope(s) left for the next sweep (time budget)", report.deferred)
        log.info("sweep: %s", report.summary())
        return report

    def _increment_alive(self, name: str) -> bool:
        """Whether the increment a grant's holder names is still in flight."""
        held = held_by(name)
        return held is not None and self.store.load_increment(*held) is not None

    def scopes(self) -> list[Scope]:
        """COPY_SOURCE_SCOPES and every policy's own `sources.scopes`; when none is set,
        every subscription a chain has seen (a disk in a subscription snapcopy never heard
        of cannot be found: set the scopes to cover it)."""
        named = [*self.settings.source_scopes, *(s for p in self.settings.policies for s in p.scopes)]
        if named and all(policy.scopes or self.settings.source_scopes for policy in self.settings.policies):
            return _widest(named)
        subscriptions = {
            group.subscription.lower(): group.subscription
            for head in self.store.list_heads()
            for group in head.source_groups
        }
        return [Scope(subscription, None) for subscription in sorted(subscriptions.values())]

    def _list(self, scope: Scope) -> list[Snapshot]:
        if scope.resource_group is None:
            return self.arm.list_subscription_snapshots(scope.subscription)
        return self.arm.list_snapshots(ResourceGroupId(scope.subscription, scope.resource_group))

    def _enqueue_missing(self, listed: Iterable[Snapshot], report: SweepReport) -> None:
        """Queue what no event reported. A snapshot the seen-index records as handled for a
        region (its event queued it there) is known without reading its chain: one index
        query per resource group replaces one job query per chain."""
        by_chain: dict[ChainKey, list[Snapshot]] = {}
        indexes: dict[ResourceGroupId, dict[str, IndexEntry]] = {}
        for snapshot in listed:
            decision = eligibility(snapshot, self.settings.policies, self.settings.source_scopes)
            if not isinstance(decision, CopyTo) or snapshot.family_id is None:
                continue
            group = snapshot.id.group
            if group not in indexes:
                indexes[group] = self.store.index_of_group(group)
            entry = indexes[group].get(snapshot.id.name.lower())
            for region in decision.regions:
                if handled_for(entry, snapshot, region):
                    continue
                by_chain.setdefault(ChainKey(snapshot.family_id.lower(), region), []).append(snapshot)
        for chain, snapshots in sorted(by_chain.items(), key=lambda item: item[0].partition):
            snapshots.sort(key=lambda snap: snap.order_key)
            known = self.store.job_keys(chain, snapshots[0].order_key)
            for snapshot in snapshots:
                if snapshot.order_key in known:
                    continue
                try:
                    job, created = self.intake.arrive(snapshot, chain.region)
                except Conflict as error:
                    report.errors.append(f"{chain.partition}: {error}")
                    continue
                if not created:
                    continue
                report.found += 1
                report.skipped += int(job.state == CopyState.SKIPPED)
                log.warning(
                    "sweep found %s, which no event reported: %s for %s %s",
                    snapshot.id,
                    job.state,
                    chain.region,
                    job.reason,
                )

    def _repair_regions(self, report: SweepReport) -> dict[str, RegionLoad]:
        """Correct slot counters that disagree with their flight rows; every region's
        rows back, by partition, for the heads' check."""
        loads: dict[str, RegionLoad] = {}
        for region in self.store.list_regions():
            load = loads[region.partition] = self.store.load_region(region)
            report.counters_fixed += int(self.heal_counter(load, "sweep"))
        return loads

    def _repair_heads(self, report: SweepReport, loads: dict[str, RegionLoad]) -> None:
        """Find copies nothing polls and queues nothing starts, from three reads however
        many chains there are (the regions' rows, every head, every queued job); a chain
        that looks wrong is read again on its own before anything is changed, since
        those reads were not taken at one instant."""
        heads = self.store.list_heads()
        queued = self.store.queued_by_chain()
        report.rpo_breaches = self.rpo_watch.check(heads, queued, report.errors)
        for head in heads:
            try:
                self._repair_head(head, loads, queued, report)
            except Exception as error:  # this chain's trouble is its own: the others are checked
                report.errors.append(f"{head.key.partition}: {error}")
                log.exception("sweep: cannot check %s (the next sweep retries)", head.key.partition)

    def _repair_head(
        self,
        head: ChainHead,
        loads: dict[str, RegionLoad],
        queued: dict[str, list[tuple[str, datetime | None]]],
        report: SweepReport,
    ) -> None:
        load = loads.get(head.region.partition)
        if load is None:
            load = loads[head.region.partition] = self.store.load_region(head.region)
        flight = next((item for item in load.in_flight if item.chain.partition == head.key.partition), None)
        keys = [key for key, _ in queued.get(head.key.partition, [])]
        if any(key < head.last_started_key for key in keys):
            report.stranded += self._skip_overtaken(head)
        if not head.copying_key:
            waiting = any(item.chain.partition == head.key.partition for item in load.waiting)
            pending = [key for key in keys if key >= head.last_started_key]
            if pending and not waiting and flight is None:
                report.stranded += int(self._queue_stranded(head))
            return
        if flight is not None and flight.job_key == head.copying_key:
            return
        flight = self.store.load_flight(head.region, head.key)
        if flight is not None and flight.job_key == head.copying_key:
            return
        if self._adopt(head):
            report.orphans += 1

    def _skip_overtaken(self, head: ChainHead) -> int:
        """Queued jobs older than the chain's watermark can never be copied (Azure's copy
        order) and nothing reads them again: record them skipped, with the reason (a run
        died between a start's commit and its last batch of overtaken jobs)."""
        current = self.store.load_head(head.key)
        if current is None:
            return 0
        stale = [
            job
            for job in self.store.iter_jobs(head.key, state=CopyState.QUEUED)
            if job.key < current.last_started_key and job.key != current.copying_key
        ]
        for job in stale:
            try:
                self.store.save_job(arrival(replace(job, queued_at=self.clock()), current))
            except Conflict:
                continue
        if stale:
            log.error(
                "sweep: %s had %d queued copies older than its watermark; skipped", head.key.partition, len(stale)
            )
        return len(stale)

    def _queue_stranded(self, head: ChainHead) -> bool:
        """Queued work with no wait marker and no copy in flight is never released by the
        timer (a run died between inserting a job and marking its chain): mark it."""
        queued = [job for job in self.store.load_pending(head) if job.state == CopyState.QUEUED]
        if not queued or self.store.find_waiting(head.region, head.key) is not None:
            return False
        if self.store.load_flight(head.region, head.key) is not None:
            return False
        since = min(job.queued_at or self.clock() for job in queued)
        self.store.mark_waiting(
            head.region, head.key, since, from_key=head.last_started_key, next_bytes=queued[0].size_bytes
        )
        log.error("sweep: %s had %d queued copies nothing would start; queued again", head.key.partition, len(queued))
        return True

    def _adopt(self, head: ChainHead) -> bool:
        """A copy the head says is in flight, tracked by no flight row: ask ARM about its
        target, then finish it or give it a flight row so the timer polls it again."""
        job = self.store.load_job(head.key, head.copying_key)
        if job is None or job.state != CopyState.COPYING:
            return False
        # read again: a trigger may have finished (or started) it since the head was read
        current = self.store.load_head(head.key)
        if current is None or current.copying_key != job.key:
            return False
        flight = InFlight(
            region=head.region,
            chain=head.key,
            job_key=job.key,
            source_id=job.source_id,
            target_id=job.target_id,
            phase=Phase.COPYING,
            started_at=job.started_at or self.clock(),
            attempt="sweep",
            percent=job.percent,
        )
        if head.region.is_diff:  # an increment: the timer's steps judge it from its rows
            log.error(
                "sweep: increment %s → %s had no flight; the timer drives it again", job.source_id, head.key.region
            )
            self.store.reserve_slot(self.store.load_region(head.region), flight, _UNLIMITED)
            return True
        target = self.arm.get_snapshot(job.target_id)
        outcome = assess_copy(flight, target, self.clock())
        log.error("sweep: %s → %s was copying with nothing polling it: %s", job.source_id, job.target_id, outcome)
        if isinstance(outcome, Completed):
            self.finishing.finish(flight, CopyState.SUCCEEDED, None)
        elif isinstance(outcome, Failed):
            self.finishing.finish(flight, CopyState.FAILED, outcome.error)
        else:  # still copying (or just started and not listed yet): poll it again
            self.store.reserve_slot(self.store.load_region(head.region), flight, _UNLIMITED)
        return True


def _widest(scopes: list[Scope]) -> list[Scope]:
    """The scopes once each, a resource group dropped when its subscription is listed whole."""
    whole = {scope.subscription.lower() for scope in scopes if scope.resource_group is None}
    kept: dict[str, Scope] = {}
    for scope in scopes:
        if scope.resource_group is not None and scope.subscription.lower() in whole:
            continue
        kept.setdefault(str(scope).lower(), scope)
    return list(kept.values())
