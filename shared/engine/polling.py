"""One timer run: poll the copies in flight region by region, finish what ended, and give
free slots to waiting chains in release order.

Each region, flight and chain is isolated (an error is recorded and the run goes on), and
the run stops taking on work after TICK_BUDGET, leaving the rest for the next one.

It must not judge a copy (shared/progress.py does) nor start one by itself (the Starter does).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from shared.arm import ArmError
from shared.engine.backoff import BACKED_OFF
from shared.engine.finishing import Finisher
from shared.engine.listings import Run
from shared.engine.parts import Deps, Part
from shared.engine.reports import TickReport
from shared.engine.starting import Starter
from shared.ids import ResourceGroupId
from shared.model import CopyState, InFlight, Phase, RegionKey, RegionLoad, Snapshot
from shared.notices import stuck_notice
from shared.progress import Completed, Failed, Progress, Restart, assess_copy, stuck_since
from shared.refusals import StartRefusal
from shared.scheduler import made_from, name_taken, release_order
from shared.store import Conflict

log = logging.getLogger("snapcopy")
T = TypeVar("T")

# Snapshots per ARM LIST page, as assumed when weighing one LIST against several GETs.
ARM_LIST_PAGE = 100
# A timer run stops starting new work after this long and leaves the rest for the next run:
# well inside host.json's functionTimeout (10 minutes), whatever ARM does.
TICK_BUDGET = timedelta(minutes=4)


class Poller(Part):
    """Runs the timer's tick."""

    def __init__(self, deps: Deps, starting: Starter, finishing: Finisher) -> None:
        super().__init__(deps)
        self.starting = starting
        self.finishing = finishing
        self.lane = starting.lane

    def tick(self) -> TickReport:
        """Poll every copy in flight, finish what finished, start what may start.

        Each region, flight and chain is isolated: an error is recorded in the report
        (`errors`) and the tick goes on with the rest. Work past TICK_BUDGET is left for
        the next tick (`deferred`), so a tick ends well inside the function timeout."""
        report = TickReport()
        began = self.clock()
        run = Run(self.listings, eager=True, deadline=began + TICK_BUDGET)
        for region in rotated(self.store.list_regions(), int(began.timestamp() // 60)):
            report.regions += 1
            if run.out_of_time(self.clock()):
                report.deferred += 1
                continue
            try:
                self._tick_region(region, run, report)
            except Exception as error:  # one region's trouble must not starve the others
                report.errors.append(f"{region.partition}: {error}")
                log.exception("tick: %s failed (the next tick retries)", region.partition)
        if report.deferred:
            log.warning(
                "tick: %d region(s) or chain(s) left for the next tick (time budget or ARM backing off)",
                report.deferred,
            )
        log.info("tick: %s", report.summary())
        return report

    def _tick_region(self, region: RegionKey, run: Run, report: TickReport) -> None:
        load = self.note_load(self._healed(self.store.load_flights(region), report))
        if region.is_diff:
            self._tick_increments(load, run, report)
            return
        self.metrics.in_flight(region.region, region.subscription, load.in_flight_count)
        before = (report.completed, report.failed, report.restarted)
        now = self.clock()
        report.in_flight += load.in_flight_count
        due = [
            flight
            for flight in load.in_flight
            if flight.phase == Phase.STARTING or flight.next_poll_at is None or flight.next_poll_at <= now
        ]
        # copies not polled this tick keep their flag; polled ones are judged afresh in _poll
        report.stuck += sum(1 for flight in load.in_flight if flight not in due and flight.stuck_since is not None)
        by_group: dict[ResourceGroupId, list[InFlight]] = {}
        for flight in due:
            by_group.setdefault(flight.target_id.group, []).append(flight)
        targets: dict[ResourceGroupId, dict[str, Snapshot | None]] = {}
        for group, flights in sorted(by_group.items(), key=lambda item: str(item[0])):
            if run.out_of_time(self.clock()):
                report.deferred += 1
                break
            try:
                targets[group] = self._read_targets(group, flights)
            except ArmError as error:
                if error.status == 404:
                    targets[group] = {}  # the target group is gone: its copies are too
                    continue
                if backed_off(error):
                    report.deferred += 1
                    continue
                report.errors.append(f"read {group}: {error}")
                log.error("tick: cannot read copies in %s: %s (next tick retries)", group, error)
        handoffs: set[str] = set()  # chains whose copy ended with more queued: their next goes first
        for flight in due:
            group = flight.target_id.group
            if group not in targets:
                continue
            report.polled += 1
            try:
                if self._poll(flight, targets[group].get(flight.target_id.name.lower()), now, report):
                    handoffs.add(flight.chain.family_id.lower())
            except Conflict:
                log.info("%s changed under the tick; the next tick looks again", flight.chain.partition)
            except Exception as error:  # this copy's trouble is its own: the others are polled
                if backed_off(error):
                    report.deferred += 1
                    continue
                report.errors.append(f"{flight.chain.partition}: {error}")
                log.exception(
                    "tick: polling %s → %s failed (the next tick retries)", flight.source_id, flight.target_id
                )
        ended = (report.completed, report.failed, report.restarted) != before
        self._release(region, run, report, flights=None if ended else load, handoffs=frozenset(handoffs))

    def _tick_increments(self, load: RegionLoad, run: Run, report: TickReport) -> None:
        """The diff lane: each increment in flight takes its next step (no ARM copy to read)."""
        report.in_flight += load.in_flight_count
        ended = False
        for flight in load.in_flight:
            if run.out_of_time(self.clock()):
                report.deferred += 1
                break
            report.polled += 1
            try:
                done = self.lane.step(flight)
            except Conflict:
                log.info("%s changed under the tick; the next tick looks again", flight.chain.partition)
                continue
            except Exception as error:  # this increment's trouble is its own
                if backed_off(error):
                    report.deferred += 1
                    continue
                report.errors.append(f"{flight.chain.partition}: {error}")
                log.exception(
                    "tick: increment %s → %s failed (the next tick retries)", flight.source_id, load.key.region
                )
                continue
            ended = ended or done in ("finish", "released", "failed")
        self._release(load.key, run, report, flights=None if ended else load)

    def _healed(self, load: RegionLoad, report: TickReport) -> RegionLoad:
        """A slot counter that disagrees with the flight rows it counts (a crash between
        two batches, a hand edit) is set right before the tick relies on it."""
        if not self.heal_counter(load, "tick"):
            return load
        report.healed += 1
        return self.store.load_flights(load.key)

    def _read_targets(self, group: ResourceGroupId, flights: list[InFlight]) -> dict[str, Snapshot | None]:
        """The due copies' targets in one group, by name, at the fewest ARM requests: one
        GET each while that costs no more than listing the group (its LIST pages, as the
        group's last listing showed), else one LIST for them all."""
        if len(flights) <= self.caches.list_pages(group):
            return {flight.target_id.name.lower(): self.arm.get_snapshot(flight.target_id) for flight in flights}
        listed = self.arm.list_snapshots(group)
        self.caches.note_list_pages(group, math.ceil(len(listed) / ARM_LIST_PAGE))
        found: dict[str, Snapshot | None] = {snap.id.name.lower(): snap for snap in listed}
        for flight in flights:  # a LIST may lag behind writes: only a GET says a copy is gone
            name = flight.target_id.name.lower()
            if name not in found:
                found[name] = self.arm.get_snapshot(flight.target_id)
        return found

    def _poll(self, flight: InFlight, target: Snapshot | None, now: datetime, report: TickReport) -> bool:
        """Judge one copy by its target; True when it ended and its chain has more queued."""
        if flight.phase == Phase.STARTING and target is not None:
            # the PUT landed but its run never confirmed it (died, or is slow): confirm it
            job = self.store.load_job(flight.chain, flight.job_key)
            if job is not None and not made_from(target, job):
                self.starting.refused(job, flight, StartRefusal(name_taken(job), retryable=False))
                return False
            self.starting.commit(flight)
            current = self.store.load_flight(flight.region, flight.chain)
            if current is None or current.attempt != flight.attempt:
                return False
            flight = current
        outcome = assess_copy(flight, target, now)
        if isinstance(outcome, Progress):
            stuck = stuck_since(flight, outcome.changed, now, self.settings.stuck_after)
            report.stuck += int(stuck is not None)
            if flight.phase == Phase.COPYING and (
                outcome.changed or outcome.next_poll_at != flight.next_poll_at or stuck != flight.stuck_since
            ):
                saved = replace(
                    flight,
                    percent=outcome.percent,
                    progressed_at=now if outcome.changed else flight.progressed_at,
                    next_poll_at=outcome.next_poll_at,
                    stuck_since=stuck,
                )
                newly_stuck = stuck is not None and flight.stuck_since is None
                quiet = (stuck or now) - (flight.progressed_at or flight.started_at)
                self.store.save_flight(saved, [stuck_notice(saved, stuck, quiet)] if stuck and newly_stuck else [])
                self._say_if_stuck(flight, stuck, outcome.percent)
        elif isinstance(outcome, Completed):
            report.completed += 1
            return self.finishing.finish(flight, CopyState.SUCCEEDED, None)
        elif isinstance(outcome, Failed):
            report.failed += 1
            return self.finishing.finish(flight, CopyState.FAILED, outcome.error)
        elif isinstance(outcome, Restart):
            report.restarted += 1
            self.starting.restart(flight)
        return False

    def _say_if_stuck(self, flight: InFlight, stuck: datetime | None, percent: float) -> None:
        if stuck is not None and flight.stuck_since is None:
            quiet = stuck - (flight.progressed_at or flight.started_at)
            log.warning(
                "copy stuck: %s → %s has shown no progress for %d min (at %.1f%%); ARM still reports it copying",
                flight.source_id,
                flight.target_id,
                quiet.total_seconds() // 60,
                percent,
            )
        elif stuck is None and flight.stuck_since is not None:
            log.info("copy moving again: %s → %s at %.1f%%", flight.source_id, flight.target_id, percent)

    def _release(
        self,
        region: RegionKey,
        run: Run,
        report: TickReport,
        flights: RegionLoad | None = None,
        handoffs: frozenset[str] = frozenset(),
    ) -> None:
        """Give free slots to waiting chains in `release_order`: first the `handoffs`
        (families whose copy this tick saw end), then the largest next copy. `flights`:
        the region's flights as this tick read them, when no copy has ended since (so no
        slot came free)."""
        if self.note_load(flights or self.store.load_flights(region)).in_flight_count >= self.cap(region):
            report.full += 1  # no slot to give: the waiting chains are not even read
            return
        load = self.note_load(self.store.load_region(region))
        candidates = release_order(
            load.waiting, load.busy_families, handoffs, now=self.clock(), fair_wait=self.settings.fair_wait
        )
        report.waiting += len(candidates)
        for waiting in candidates:
            if load.in_flight_count >= self.cap(region):
                break
            if run.out_of_time(self.clock()) or self.arm.paused_until(region.subscription) is not None:
                report.deferred += 1  # the rest wait for the next tick, in the same order
                break
            try:
                started, after = self.starting.advance(waiting.chain, region, run, load=load, waiting=waiting)
            except Conflict as error:
                log.info("tick: %s changed under the tick (%s); looking again", waiting.chain.partition, error)
                after, started = self.store.load_region(region), False
            except Exception as error:  # this chain's trouble is its own: the others go on
                after, started = None, False
                if backed_off(error):
                    report.deferred += 1  # its source's subscription is paused: the next tick
                    continue
                report.errors.append(f"{waiting.chain.partition}: {error}")
                log.error("tick: cannot advance %s: %s", waiting.chain.partition, error)
            load = after or load
            report.started += int(started)


def backed_off(error: BaseException) -> bool:
    """Refused by GuardedArm without a request: ARM is being left alone, not failing now."""
    return isinstance(error, ArmError) and error.code == BACKED_OFF


def rotated(items: list[T], turn: int) -> list[T]:
    """`items` starting at `turn` (modulo): runs cut short by a time budget start elsewhere
    each time, so the same last items are not the ones left over every run."""
    if not items:
        return items
    start = turn % len(items)
    return items[start:] + items[:start]
