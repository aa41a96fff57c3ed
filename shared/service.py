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
import math
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from shared.arm import ArmError, ComputeApi
from shared.backoff import BACKED_OFF, GuardedArm
from shared.config import Settings
from shared.events import Malformed, NotOurs, parse_event
from shared.ids import ResourceGroupId, ResourceId, Scope
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
    ChainPlan,
    Completed,
    CopyTo,
    Failed,
    NotYet,
    Progress,
    Restart,
    StartRefusal,
    after_refusal,
    arrival,
    assess_copy,
    eligibility,
    new_head,
    new_job,
    observed_source,
    plan_chain,
    release_order,
    source_groups_of,
    stuck_since,
)
from shared.store import CapacityExhausted, Conflict, IndexEntry, StateStore, retrying

log = logging.getLogger("snapcopy")
T = TypeVar("T")

Clock = Callable[[], datetime]
_MOVED_ON = "the copy failed; the chain moved on to its next snapshot"
_CANCEL_TOO_LATE = "a cancel request arrived after CopyStart was sent: the copy continues (ARM cannot stop it)"
# Event Grid retries a delivery for up to 24 hours: within that, a known id is a duplicate.
DEDUPE_WINDOW = timedelta(hours=25)
# The event path lists a resource group at most this often; bursts wait for the timer.
EVENT_LIST_INTERVAL = timedelta(seconds=10)
# A listing is reused (when it proves enough) for at most this long: longer than the
# hourly sweep, whose listing of every source scope refreshes them. The scheduler asks
# for a fresh one whenever a snapshot is newer than what a listing proves, or was still
# being created; staleness otherwise only means a source deleted since is found by its
# PUT's 404 (and skipped) instead of by the listing.
LISTING_KEEP = timedelta(minutes=90)
# Copies a process remembers starting (their write events then cost no Table read).
STARTED_KEPT = 10_000
# Snapshots per ARM LIST page, as assumed when weighing one LIST against several GETs.
ARM_LIST_PAGE = 100
# After this process saw a region at its cap, an arrival there is queued without trying
# to start (no slot read) for this long, or until this process frees a slot there: the
# timer gives slots that come free to waiting chains, in release order. One poll apart.
FULL_REMEMBERED = timedelta(minutes=1)
# A timer run stops starting new work after this long and leaves the rest for the next run:
# well inside host.json's functionTimeout (10 minutes), whatever ARM does.
TICK_BUDGET = timedelta(minutes=4)


class SourceNotSettled(Exception):
    """ARM's answer about a source lacks what ordering needs: ask again later."""


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
    full: int = 0  # regions at the cap (their waiting chains are not counted)
    stuck: int = 0
    healed: int = 0  # slot counters that disagreed with their flight rows, corrected
    deferred: int = 0  # regions or chains left for the next tick (time budget, ARM backing off)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return summary_line(self)


def summary_line(report: Any) -> str:
    """A run report as one log line: `name=value` for each field in order, errors counted."""
    parts = []
    for item in fields(report):
        value = getattr(report, item.name)
        parts.append(f"{item.name}={len(value) if isinstance(value, list) else value}")
    return " ".join(parts)


class Listings:
    """ARM listings of source resource groups, kept per process and shared by triggers.

    A listing is reused while it still proves what a decision needs (the scheduler says
    when it does not); a trigger run lists each group at most once, and the event path
    lists a group at most once per EVENT_LIST_INTERVAL, leaving bursts to the timer. The
    sweep's listings of whole scopes are kept too: a group missing from a subscription's
    listing held no snapshot when it was taken.
    """

    def __init__(self, arm: ComputeApi, clock: Clock) -> None:
        self._arm = arm
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[ResourceGroupId, tuple[list[Snapshot], datetime]] = {}
        self._subscriptions: dict[str, datetime] = {}  # lower-case id -> when listed whole

    def cached(self, group: ResourceGroupId) -> tuple[list[Snapshot], datetime] | None:
        with self._lock:
            entry = self._cache.get(group)
            whole = self._subscriptions.get(group.subscription.lower())
        if whole is not None and (entry is None or entry[1] < whole):
            entry = ([], whole)  # not in the subscription's newer listing: empty then
        if entry is None or self._clock() - entry[1] > LISTING_KEEP:
            return None
        return entry

    def fetch(self, group: ResourceGroupId) -> tuple[list[Snapshot], datetime]:
        listed_at = self._clock()
        try:
            snapshots = self._arm.list_snapshots(group)
        except ArmError as error:
            if error.status != 404:
                raise
            snapshots = []  # the group is gone, and every snapshot in it
        entry = (snapshots, listed_at)
        with self._lock:
            self._cache[group] = entry
        return entry

    def keep(self, scope: Scope, snapshots: Iterable[Snapshot], listed_at: datetime) -> None:
        """Keep a listing of a whole scope (the sweep's), taken at `listed_at`, group by group."""
        groups: dict[ResourceGroupId, list[Snapshot]] = {}
        if scope.resource_group is not None:
            groups[ResourceGroupId(scope.subscription, scope.resource_group)] = []
        for snapshot in snapshots:
            groups.setdefault(_group(snapshot.id), []).append(snapshot)
        with self._lock:
            for group, listed in groups.items():
                current = self._cache.get(group)
                if current is None or current[1] <= listed_at:
                    self._cache[group] = (listed, listed_at)
            if scope.resource_group is None:
                key = scope.subscription.lower()
                self._subscriptions[key] = max(listed_at, self._subscriptions.get(key, listed_at))


@dataclass
class Run:
    """One trigger run's listing budget: the timer may list any group once per run; an
    event handler only groups not listed in the last EVENT_LIST_INTERVAL."""

    listings: Listings
    eager: bool
    fetched: dict[ResourceGroupId, tuple[list[Snapshot], datetime]] = field(default_factory=dict)
    deadline: datetime | None = None  # a timer run leaves what is left after this for the next one
    failed: dict[ResourceGroupId, ArmError] = field(default_factory=dict)  # listings that failed in this run

    def out_of_time(self, now: datetime) -> bool:
        return self.deadline is not None and now >= self.deadline

    def cached(self, groups: Iterable[ResourceGroupId]) -> tuple[list[Snapshot], datetime] | None:
        entries = [self.fetched.get(group) or self.listings.cached(group) for group in groups]
        if any(entry is None for entry in entries):
            return None
        return _merge([entry for entry in entries if entry is not None])

    def fresh(self, groups: Iterable[ResourceGroupId], now: datetime) -> tuple[list[Snapshot], datetime] | None:
        entries = []
        for group in groups:
            entry = self.fetched.get(group)
            if entry is None:
                if group in self.failed:
                    raise self.failed[group]  # failed once in this run: not asked again until the next
                known = self.listings.cached(group)
                if not self.eager and known is not None and now - known[1] < EVENT_LIST_INTERVAL:
                    return None  # listed moments ago for another event: the timer takes it from here
                try:
                    entry = self.fetched[group] = self.listings.fetch(group)
                except ArmError as error:
                    self.failed[group] = error
                    raise
            entries.append(entry)
        return _merge(entries)


def _merge(entries: list[tuple[list[Snapshot], datetime]]) -> tuple[list[Snapshot], datetime]:
    """Several groups as one listing, as old as its oldest part."""
    return [snap for snapshots, _ in entries for snap in snapshots], min(at for _, at in entries)


@dataclass(frozen=True)
class Known:
    """Rows a starting run has just read or written (with their ETags)."""

    head: ChainHead
    job: Job
    pending: tuple[Job, ...]


class Replicator:
    """Runs the triggers: an event, a timer tick. Created once per process."""

    def __init__(self, settings: Settings, store: StateStore, arm: ComputeApi, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.store = store
        self.arm = arm if isinstance(arm, GuardedArm) else GuardedArm(arm, clock)
        self.clock = clock
        self.listings = Listings(self.arm, clock)  # through the gate: a paused subscription is not listed
        self.last_tick = TickReport()
        self._list_pages: dict[ResourceGroupId, int] = {}  # per target group, from its last LIST
        # copies this process started lately (target id -> when): their own write
        # events are known without a Table read; the seen-index serves other processes
        self._started: dict[ResourceId, datetime] = {}  # ResourceId compares case-insensitively
        self._started_lock = threading.Lock()
        # regions (partition) this process last saw at the cap, and when: see FULL_REMEMBERED
        self._full: dict[str, datetime] = {}

    @property
    def cap(self) -> int:
        return self.settings.max_copies_per_region

    # --- the event path ----------------------------------------------------------------

    def handle_event(self, event: Any) -> str:
        """One Event Grid delivery. Returns what happened, for the log.

        A failure is raised so Event Grid redelivers, until the same event has failed
        EVENT_MAX_ATTEMPTS times: then it is recorded (`poison` rows) and dropped. Dropping
        loses nothing for good: events are hints, and the sweep lists the sources."""
        try:
            return self._handle_event(event)
        except Exception as error:
            try:
                attempts = self.store.note_event_failure(
                    str(getattr(event, "id", "") or ""),
                    str(getattr(event, "subject", "") or ""),
                    f"{type(error).__name__}: {error}",
                    self.clock(),
                    poisoned_at=self.settings.max_event_attempts,
                )
            except Exception:
                log.exception("could not record the failure of event %r", getattr(event, "id", ""))
                raise error from None
            if attempts < self.settings.max_event_attempts:
                raise
            log.error(
                "event %r (%s) failed %d times; dropped (the sweep will find its snapshot): %s",
                getattr(event, "id", ""),
                getattr(event, "subject", ""),
                attempts,
                error,
            )
            return f"poisoned after {attempts} attempts"

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
        with self._started_lock:
            started = self._started.get(snapshot_id)
        if started is not None and now - started < DEDUPE_WINDOW:
            return "already handled as copy"  # one of ours: the seen-index says the same
        known = self.store.get_index(snapshot_id)
        if known is not None and (known.recorded_at is None or now - known.recorded_at < DEDUPE_WINDOW):
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
        if known is not None and known.unique_id and known.unique_id == snapshot.unique_id:
            self.store.put_index(replace(known, recorded_at=now))  # the same snapshot, written again
            return f"already handled as {known.kind}"
        return self.record(snapshot)

    def record(self, snapshot: Snapshot) -> str:
        """Queue a source snapshot in each of its chains and start what may start."""
        now = self.clock()
        decision = eligibility(snapshot, self.settings.target_regions, self.settings.source_scopes)
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
        if self._seen_full(job.region):
            return f"{region}: queued (the region is at its cap)"
        try:
            started, _ = self._advance(job.chain, job.region, run)
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
        template = new_head(snapshot, region, self.settings.target_resource_group)
        key = snapshot.order_key  # the key its job has
        first, existing = self.store.load_head_and_job(template.key, key)
        if first is None:
            self.store.register_region(template.region)
            first = self.store.create_head(template)
        known = [(first, existing)]  # the first attempt uses this read; a retry reads again

        def arrive() -> tuple[Job, bool, ChainHead]:
            head, existing = known.pop() if known else self.store.load_head_and_job(template.key, key)
            assert head is not None
            if existing is not None:
                return existing, False, head
            candidate = new_job(snapshot, region, self.settings.target_resource_group, self.clock())
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
                template.region,
                template.key,
                job.queued_at or self.clock(),
                from_key=watermark,
                next_bytes=job.size_bytes,
            )
        return job, created, bool(head.copying_key)

    def start_waiting(self, chain: ChainKey, region: RegionKey) -> bool:
        """Start a chain's next copy now if every rule allows (requests use this)."""
        started, _ = self._advance(chain, region, Run(self.listings, eager=False))
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
                self._advance(chain, region, run)
            except (ArmError, Conflict) as error:
                log.warning("%s queued; starting it failed for now (%s): the timer retries", chain.partition, error)
        return [(self.store.load_job(job.chain, job.key) or job, created) for job, created in arrived]

    # --- the timer path ----------------------------------------------------------------

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
        self.last_tick = report
        return report

    def _tick_region(self, region: RegionKey, run: Run, report: TickReport) -> None:
        load = self._note_load(self._healed(self.store.load_flights(region), report))
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
            by_group.setdefault(_group(flight.target_id), []).append(flight)
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
                if _backed_off(error):
                    report.deferred += 1
                    continue
                report.errors.append(f"read {group}: {error}")
                log.error("tick: cannot read copies in %s: %s (next tick retries)", group, error)
        handoffs: set[str] = set()  # chains whose copy ended with more queued: their next goes first
        for flight in due:
            group = _group(flight.target_id)
            if group not in targets:
                continue
            report.polled += 1
            try:
                if self._poll(flight, targets[group].get(flight.target_id.name.lower()), now, report):
                    handoffs.add(flight.chain.family_id.lower())
            except Conflict:
                log.info("%s changed under the tick; the next tick looks again", flight.chain.partition)
            except Exception as error:  # this copy's trouble is its own: the others are polled
                if _backed_off(error):
                    report.deferred += 1
                    continue
                report.errors.append(f"{flight.chain.partition}: {error}")
                log.exception(
                    "tick: polling %s → %s failed (the next tick retries)", flight.source_id, flight.target_id
                )
        ended = (report.completed, report.failed, report.restarted) != before
        self._release(region, run, report, flights=None if ended else load, handoffs=frozenset(handoffs))

    def _healed(self, load: RegionLoad, report: TickReport) -> RegionLoad:
        """A slot counter that disagrees with the flight rows it counts (a crash between
        two batches, a hand edit) is set right before the tick relies on it."""
        if load.in_flight_count == len(load.in_flight):
            return load
        try:
            self.store.correct_counter(load)
        except Conflict:
            return load  # it moved: a live trigger is at work; the next tick looks again
        report.healed += 1
        log.error(
            "tick: %s counted %d copies in flight but tracks %d; corrected",
            load.key.partition,
            load.in_flight_count,
            len(load.in_flight),
        )
        return self.store.load_flights(load.key)

    def _read_targets(self, group: ResourceGroupId, flights: list[InFlight]) -> dict[str, Snapshot | None]:
        """The due copies' targets in one group, by name, at the fewest ARM requests: one
        GET each while that costs no more than listing the group (its LIST pages, as the
        group's last listing showed), else one LIST for them all."""
        if len(flights) <= self._list_pages.get(group, 1):
            return {flight.target_id.name.lower(): self.arm.get_snapshot(flight.target_id) for flight in flights}
        listed = self.arm.list_snapshots(group)
        self._list_pages[group] = max(1, math.ceil(len(listed) / ARM_LIST_PAGE))
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
            if job is not None and not _made_from(target, job):
                self._refused(job, flight, StartRefusal(_name_taken(job), retryable=False))
                return False
            self._commit(flight)
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
                self.store.save_flight(
                    replace(
                        flight,
                        percent=outcome.percent,
                        progressed_at=now if outcome.changed else flight.progressed_at,
                        next_poll_at=outcome.next_poll_at,
                        stuck_since=stuck,
                    )
                )
                self._say_if_stuck(flight, stuck, outcome.percent)
        elif isinstance(outcome, Completed):
            report.completed += 1
            return self._finish(flight, CopyState.SUCCEEDED, None)
        elif isinstance(outcome, Failed):
            report.failed += 1
            return self._finish(flight, CopyState.FAILED, outcome.error)
        elif isinstance(outcome, Restart):
            report.restarted += 1
            self._restart(flight)
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
        if self._note_load(flights or self.store.load_flights(region)).in_flight_count >= self.cap:
            report.full += 1  # no slot to give: the waiting chains are not even read
            return
        load = self._note_load(self.store.load_region(region))
        candidates = release_order(
            load.waiting, load.busy_families, handoffs, now=self.clock(), fair_wait=self.settings.fair_wait
        )
        report.waiting += len(candidates)
        for waiting in candidates:
            if load.in_flight_count >= self.cap:
                break
            if run.out_of_time(self.clock()) or self.arm.paused_until(region.subscription) is not None:
                report.deferred += 1  # the rest wait for the next tick, in the same order
                break
            try:
                started, after = self._advance(waiting.chain, region, run, load=load, waiting=waiting)
            except Conflict as error:
                log.info("tick: %s changed under the tick (%s); looking again", waiting.chain.partition, error)
                after, started = self.store.load_region(region), False
            except Exception as error:  # this chain's trouble is its own: the others go on
                after, started = None, False
                if _backed_off(error):
                    report.deferred += 1  # its source's subscription is paused: the next tick
                    continue
                report.errors.append(f"{waiting.chain.partition}: {error}")
                log.error("tick: cannot advance %s: %s", waiting.chain.partition, error)
            load = after or load
            report.started += int(started)

    # --- starting ----------------------------------------------------------------------

    def _advance(
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
            return self._note_load(self.store.load_region(region) if whole else self.store.load_slot(region, chain))

        load = load or fresh()
        if chain.family_id in load.busy_families or load.in_flight_count >= self.cap:
            return False, load
        if waiting is None:
            waiting = next((item for item in load.waiting if item.chain == chain), None)
        head, pending = self._chain(chain, waiting)
        if head is None:
            return False, load
        now = self.clock()
        plan = plan_chain(head, pending, now)
        if plan.needs_listing:
            groups = {*head.source_groups} | {_group(job.source_id) for job in pending if job.state == CopyState.QUEUED}
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
                    target_group=self.settings.target_resource_group,
                )
                if not plan.needs_listing:
                    break
            # the jobs first, the promise after: a head must never vouch for snapshots
            # ("everything older than T is known") that no job row records yet
            added = self.store.add_jobs(plan.add)
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
        checked = plan.check is not None and plan.start is None
        if checked:
            plan, pending = self._check_source(head, pending, plan, now)
        if plan.start is None:
            if plan.wait == "nothing queued" and waiting is not None:
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
            load = self._note_load(self.store.reserve_slot(load, flight, self.cap))
        except CapacityExhausted:
            return False, self._note_load(load)
        except Conflict:
            log.info("%s: slot taken concurrently; looking again", chain.partition)
            return False, fresh()
        flight = next(item for item in load.in_flight if item.chain == chain)
        current = self.store.load_job(chain, job.key)
        if current is None or current.state != CopyState.QUEUED or (current.not_before or now) > now:
            # cancelled (or held) after the plan read it: the slot is not needed after all
            log.info("%s: %s changed before its start; not starting it", chain.partition, job.key)
            self._hand_back(flight)
            return False, fresh()
        self.store.put_index(IndexEntry(job.target_id, "copy", reason=f"copy of {job.source_id}", recorded_at=now))
        self._remember_copy(job.target_id, now)
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
            log.info("job %s changed concurrently; the next run looks again", job.key)
            return plan, pending
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
        return plan_chain(head, pending, now), pending

    def _remember_copy(self, target_id: ResourceId, now: datetime) -> None:
        """Note a copy this process is starting (as the seen-index does), within bounds."""
        with self._started_lock:
            self._started[target_id] = now
            if len(self._started) > STARTED_KEPT:
                self._started = {key: at for key, at in self._started.items() if now - at < DEDUPE_WINDOW}
                while len(self._started) > STARTED_KEPT:
                    del self._started[next(iter(self._started))]  # the oldest first

    def _note_load(self, load: RegionLoad) -> RegionLoad:
        """Remember whether the region was at its cap when read (see FULL_REMEMBERED)."""
        if load.in_flight_count >= self.cap:
            self._full[load.key.partition] = self.clock()
        else:
            self._full.pop(load.key.partition, None)
        return load

    def _seen_full(self, region: RegionKey) -> bool:
        seen = self._full.get(region.partition)
        return seen is not None and self.clock() - seen < FULL_REMEMBERED

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

        result: ChainHead = retrying(save)
        return result

    def _drive(self, job: Job, flight: InFlight, known: Known | None = None) -> bool:
        """PUT the copy for a slot this run holds. True while the slot stays taken.

        A definite refusal (4xx) gives the slot back; an ambiguous failure (5xx, a lost
        connection) keeps it: the copy may exist, and the tick's listing will tell."""
        try:
            made = self.arm.start_copy(
                job.source_id, job.target_id, flight.region.region, {SOURCE_TAG: str(job.source_id)}
            )
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
                    self._save_quietly(
                        replace(stored, attempts=stored.attempts + 1, error=CopyError(error.code, error.message))
                    )
                return True
            refusal = error.as_refusal()
            if refusal.source_missing and self.arm.get_snapshot(job.source_id) is not None:
                # the 404 was about something else (the target resource group, say)
                refusal = replace(refusal, source_missing=False, retryable=False)
            self._refused(stored, flight, refusal)
            return False
        if made is None:
            # accepted without a body snapcopy can read (an empty 202, say): a GET tells
            made = self._read_back(job)
            if made is None:  # outcome unknown: the slot stays taken; the tick settles it
                stored = self.store.load_job(job.chain, job.key) or job
                if stored.state == CopyState.QUEUED:  # an unconfirmed try counts, as for a 5xx
                    unconfirmed = CopyError("StartNotConfirmed", "ARM accepted CopyStart but no GET shows the copy yet")
                    self._save_quietly(replace(stored, attempts=stored.attempts + 1, error=unconfirmed))
                return True
        if not _made_from(made, job):
            stored = self.store.load_job(job.chain, job.key) or job
            self._refused(stored, flight, StartRefusal(_name_taken(job), retryable=False))
            return False
        self._commit(flight, known)
        log.info("copy started: %s → %s", job.source_id, job.target_id)
        return True

    def _read_back(self, job: Job) -> Snapshot | None:
        """The copy ARM accepted, read with a GET; None when that cannot tell yet."""
        try:
            return self.arm.get_snapshot(job.target_id)
        except ArmError as error:
            log.warning("cannot read back %s (%s); the tick checks whether it landed", job.target_id, error)
            return None

    def _refused(self, stored: Job, flight: InFlight, refusal: StartRefusal) -> None:
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
            self._finish(current, CopyState.FAILED, refusal.error)  # clears the head too
            return
        if stored.state == CopyState.QUEUED:
            self._save_quietly(updated)
        self._give_back(current)
        self.store.mark_waiting(
            flight.region, flight.chain, stored.queued_at or self.clock(), next_bytes=stored.size_bytes
        )

    def _commit(self, flight: InFlight, known: Known | None = None) -> None:
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

        def commit_chain() -> None:
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
                return  # committed already (or finished by a tick)
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
                replace(head, copying_key=job.key, last_started_key=watermark),
                [started],
                overtaken=_overtaken(head, pending, job.key, flight.started_at),
            )

        retrying(commit_chain)
        if current.phase == Phase.STARTING:
            with contextlib.suppress(Conflict):
                self.store.save_flight(replace(current, phase=Phase.COPYING))

    def _restart(self, flight: InFlight) -> None:
        """A start nobody confirmed within the grace: take it over and PUT again (idempotent)."""
        job = self.store.load_job(flight.chain, flight.job_key)
        if job is None or job.state.is_final:
            self._hand_back(flight)
            return
        if job.state == CopyState.COPYING:
            # committed, but the flight never said so: confirm it; the next poll judges the copy
            self._commit(flight)
            return
        if self.arm.paused_until(flight.target_id.subscription) is not None:
            return  # ARM is backing off there: the next tick re-drives it, spending nothing now
        if job.attempts >= self.settings.max_start_attempts:
            if self.arm.get_snapshot(job.target_id) is not None:
                self._commit(flight)  # it did land; the listing was behind
                return
            error = job.error or CopyError("StartNotConfirmed", "ARM never confirmed the CopyStart")
            self._refused(job, flight, StartRefusal(error, retryable=False))
            return
        try:
            taken = self.store.save_flight(replace(flight, attempt=uuid.uuid4().hex, started_at=self.clock()))
        except Conflict:
            return  # another run took it over first
        log.warning("re-driving an unconfirmed start: %s → %s", flight.source_id, flight.target_id)
        self._drive(job, taken)

    # --- finishing ---------------------------------------------------------------------

    def finish(self, flight: InFlight, state: CopyState, error: CopyError | None) -> None:
        """Record a copy's end and free its slot (the sweep finishes orphans this way)."""
        self._finish(flight, state, error)

    def _finish(self, flight: InFlight, state: CopyState, error: CopyError | None) -> bool:
        """Record a copy's end and free its slot; True when its chain has more queued."""
        now = self.clock()
        left: list[tuple[str, list[Job]]] = []  # the watermark and queue once recorded, as the commit saw them

        def commit() -> None:
            left.clear()
            head, rows = self.store.load_chain_from(flight.chain, flight.job_key)
            job = next((item for item in rows if item.key == flight.job_key), None)
            if head is None or job is None:
                return
            if job.state.is_final and head.copying_key != job.key:
                return  # finished by an earlier run that died before releasing the slot
            final = replace(
                job,
                state=state,
                finished_at=now,
                error=error,
                started_at=job.started_at or flight.started_at,
                percent=100.0 if state == CopyState.SUCCEEDED else flight.percent,
                reason="" if state == CopyState.SUCCEEDED else _MOVED_ON,
            )
            changes: dict[str, Any] = {
                "copying_key": "" if head.copying_key == job.key else head.copying_key,
                "last_started_key": max(head.last_started_key, job.key),
            }
            if state == CopyState.SUCCEEDED:
                changes.update(
                    last_completed_key=job.key, last_completed_source=str(job.source_id), last_completed_at=now
                )
            overtaken: list[Job] = []
            if job.state == CopyState.QUEUED:  # never started: what queued before it is overtaken
                pending = self.store.load_pending(head) if head.last_started_key < job.key else rows
                overtaken = _overtaken(head, pending, job.key, now)
            self.store.save_chain(replace(head, **changes), [final], overtaken=overtaken)
            watermark = changes["last_started_key"]
            left.append((watermark, [item for item in rows if item.state == CopyState.QUEUED and item.key > watermark]))

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
        return self._hand_back(flight, left[0] if left else None)

    def _give_back(self, flight: InFlight) -> None:
        """Release the slot, if this attempt still holds it."""

        def release() -> None:
            load = self.store.load_slot(flight.region, flight.chain)
            current = next((item for item in load.in_flight if item.chain == flight.chain), None)
            if current is None or current.attempt != flight.attempt:
                return
            self.store.release_slot(load, current)
            self._full.pop(flight.region.partition, None)

        retrying(release)

    def _hand_back(self, flight: InFlight, queued: tuple[str, list[Job]] | None = None) -> bool:
        """After a copy ends: give its slot back (if this attempt still holds it) and, in
        the same batch, keep the chain in line by its oldest queued job, or drop its wait
        marker when nothing is left.

        The marker is read before the queue, so a job that arrives (and marks the chain)
        meanwhile is never dropped. `queued` is the queue as the finish just saw it: good
        enough to keep a marker, but not to drop one that exists (an arrival may have
        touched it since); then the queue is read again. `queued`: (watermark, jobs).
        Returns whether the chain has more queued."""

        def release() -> bool:
            load = self.store.load_slot(flight.region, flight.chain)
            current = next((item for item in load.in_flight if item.chain == flight.chain), None)
            waiting = next((item for item in load.waiting if item.chain == flight.chain), None)
            watermark, left = queued or (None, [])
            if queued is None or (not left and waiting is not None):
                watermark, left = self._queued(flight.chain, flight.job_key)
            wait = None
            if left:  # in line by its oldest queued job, which starts next
                since = min(job.queued_at or self.clock() for job in left)
                wait = Waiting(flight.region, flight.chain, since, from_key=watermark, next_bytes=left[0].size_bytes)
            drop = waiting if not left else None
            if current is not None and current.attempt == flight.attempt:
                self.store.release_slot(load, current, wait=wait, drop=drop)
                self._full.pop(flight.region.partition, None)
            elif wait is not None:
                self.store.set_waiting(wait)
            elif drop is not None:
                self.store.clear_waiting(drop)
            return wait is not None

        more: bool = retrying(release)
        return more

    def _queued(self, chain: ChainKey, low: str) -> tuple[str | None, list[Job]]:
        """The chain's watermark and queued jobs (those from the watermark on), read now."""
        head, pending = self.store.load_queue(chain, low)
        if head is None:
            return None, []
        return head.last_started_key, [job for job in pending if job.state == CopyState.QUEUED]

    def _save_quietly(self, job: Job) -> None:
        try:
            self.store.save_job(job)
        except Conflict:
            log.info("job %s changed concurrently; keeping the other writer's version", job.key)


def _made_from(target: Snapshot, job: Job) -> bool:
    """Whether a copy ARM shows under the job's target name was made from the job's source."""
    return not (job.source_unique_id and target.source_unique_id and target.source_unique_id != job.source_unique_id)


def _name_taken(job: Job) -> CopyError:
    return CopyError(
        "TargetNameTaken",
        f"{job.target_id.name} already holds a copy of an earlier snapshot that had the same name; "
        "delete or rename it, then retry",
    )


def _overtaken(head: ChainHead, pending: list[Job], key: str, when: datetime) -> list[Job]:
    """Queued jobs older than `key`: once `key` started they can never be copied."""
    watermark = replace(head, last_started_key=key)
    return [
        arrival(replace(item, queued_at=when), watermark)
        for item in pending
        if item.state == CopyState.QUEUED and item.key < key
    ]


def _backed_off(error: BaseException) -> bool:
    """Refused by GuardedArm without a request: ARM is being left alone, not failing now."""
    return isinstance(error, ArmError) and error.code == BACKED_OFF


def rotated(items: list[T], turn: int) -> list[T]:
    """`items` starting at `turn` (modulo): runs cut short by a time budget start elsewhere
    each time, so the same last items are not the ones left over every run."""
    if not items:
        return items
    start = turn % len(items)
    return items[start:] + items[:start]


def _group(resource: ResourceId) -> ResourceGroupId:
    return ResourceGroupId(resource.subscription, resource.resource_group)
