"""The shell's one entry: every trigger (Event Grid, timer, HTTP, the sweep) goes through here.

`Replicator` builds the engine's parts from one set of dependencies (settings, store,
ARM, clock) and hands each call to the part that owns it:

| part | module | owns |
|---|---|---|
| intake | `engine/intake.py` | events and requests → job rows, with dedupe; starts what may start |
| starting | `engine/starting.py` | the start protocol: reserve, PUT, commit, mark |
| finishing | `engine/finishing.py` | the finish protocol: commit, give the slot back, keep the chain in line |
| lane | `engine/diff_lane.py` | the diff method's increments: begun, chunk by chunk, stepped by the timer, ended |
| polling | `engine/polling.py` | one timer run, region by region |
| sweeper | `engine/sweep.py` | the hourly reconciliation: lost events, stranded work, orphans |
| operator | `engine/operator.py` | operators' requests (copy, backfill, retry, cancel, status) |
| explainer | `engine/explain.py` | the policies in effect, and what they make of a snapshot |
| pruner | `engine/pruner.py` | the retention run: deletes the copies no policy keeps |
| notifier | `engine/notifier.py` | publishes the outbox: every entry point ends with `flush` |

Every decision comes from `shared.scheduler`; the parts read what a decision needs, ask,
and carry out the answer in a crash-safe order (each protocol's module says which).

It must not decide anything itself, nor touch a row or ARM: it hands each call on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.arm import ComputeApi
from shared.chunk_messages import ChunkMessage
from shared.config import Settings
from shared.engine.access import Access
from shared.engine.backoff import GuardedArm
from shared.engine.caches import Caches
from shared.engine.diff_lane import DiffLane
from shared.engine.differ import Differ
from shared.engine.explain import Evaluation, Explainer
from shared.engine.finishing import Finisher
from shared.engine.intake import Intake
from shared.engine.listings import Listings
from shared.engine.notifier import Delivery, Notifier
from shared.engine.operator import DEFAULT_PAGE, MAX_PAGE, Accepted, ChainStatus, LiveCopy, Operator
from shared.engine.parts import Clock, Deps, DiffIo, Part, utc_now
from shared.engine.polling import Poller
from shared.engine.pruner import Pruner, PruneReport
from shared.engine.reports import TickReport
from shared.engine.starting import Starter
from shared.engine.status import RegionStatus, Status
from shared.engine.sweep import Reconciler, SweepReport
from shared.ids import ResourceId
from shared.model import ChainKey, CopyError, CopyState, InFlight, Job, RegionKey, Snapshot
from shared.store import StateStore
from shared.telemetry import Metrics
from shared.topic import Topic

# what the HTTP layer speaks in: it reaches the engine through here only
__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "Accepted",
    "ChainStatus",
    "Clock",
    "Evaluation",
    "Explainer",
    "LiveCopy",
    "Operator",
    "RegionStatus",
    "Replicator",
    "utc_now",
]


class Replicator(Part):
    """Runs the triggers over one process's parts. Created once per process; its
    dependencies (settings, store, arm, clock, listings) are the parts' own."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        arm: ComputeApi,
        clock: Clock = utc_now,
        *,
        topic: Topic | None = None,
        metrics: Metrics | None = None,
        diff: DiffIo | None = None,
    ) -> None:
        caches = Caches(clock)
        guarded = GuardedArm(arm, caches, clock)
        # listings go through the gate: a paused subscription is not listed either
        listings = Listings(guarded, caches, clock)
        super().__init__(Deps(settings, store, guarded, clock, caches, listings, topic, metrics or Metrics(), diff))
        store.announcing = topic is not None  # transitions record their notices only when someone listens
        self.notifier = Notifier(self.deps)
        self.finishing = Finisher(self.deps)
        self.access = Access(self.deps)
        self.lane = DiffLane(self.deps, Differ(self.deps, self.access), self.finishing)
        self.starting = Starter(self.deps, self.finishing, self.lane)
        self.polling = Poller(self.deps, self.starting, self.finishing)
        self.intake = Intake(self.deps, self.starting)
        self.operator = Operator(self.deps, self.intake)  # operators' requests (the HTTP API)
        self.sweeper = Reconciler(self.deps, self.intake, self.finishing, self.access)
        self.explainer = Explainer(self.deps)  # operators' questions about the policies
        self.pruner = Pruner(self.deps)
        self.status = Status(self.deps, self.operator)  # GET /api/status

    # --- the entry points ----------------------------------------------------------------

    def handle_event(self, event: Any) -> str:
        """One Event Grid delivery (see Intake.handle_event)."""
        try:
            return self.intake.handle_event(event)
        finally:
            self.flush()

    def flush(self) -> Delivery:
        """Publish the notices this process committed (every entry point ends with it; the
        HTTP layer calls it after each request)."""
        return self.notifier.flush()

    def observe(self, snapshot_id: ResourceId) -> str:
        return self.intake.observe(snapshot_id)

    def record(self, snapshot: Snapshot) -> str:
        return self.intake.record(snapshot)

    def arrive(self, snapshot: Snapshot, region: str) -> tuple[Job, bool]:
        return self.intake.arrive(snapshot, region)

    def enqueue(self, snapshots: Iterable[Snapshot], regions: Iterable[str]) -> list[tuple[Job, bool]]:
        return self.intake.enqueue(snapshots, regions)

    def start_waiting(self, chain: ChainKey, region: RegionKey) -> bool:
        return self.intake.start_waiting(chain, region)

    def tick(self) -> TickReport:
        """One timer run (see Poller.tick), then the notices: its own, and those a failed
        publish left in the outbox."""
        try:
            return self.polling.tick()
        finally:
            self.flush()
            self.notifier.resend()

    def prune(self) -> PruneReport:
        """One retention run (see Pruner.prune)."""
        try:
            return self.pruner.prune()
        finally:
            self.flush()

    def sweep(self) -> SweepReport:
        """One reconciliation sweep (see Reconciler.sweep); it also finds outbox rows a
        crash left unmarked (the next timer run sends them)."""
        try:
            return self.sweeper.sweep()
        finally:
            self.flush()
            self.notifier.collect_strays()

    def copy_chunk(self, message: str) -> None:
        """One chunk of a diff increment, as the queue trigger hands it over (see DiffLane.chunk)."""
        try:
            self.lane.chunk(ChunkMessage.decode(message))
        finally:
            self.flush()

    def chunk_poisoned(self, message: str) -> None:
        """A chunk the queue gave up on: its increment fails with the reason (DiffLane.poisoned)."""
        try:
            self.lane.poisoned(ChunkMessage.decode(message))
        finally:
            self.flush()

    def finish(self, flight: InFlight, state: CopyState, error: CopyError | None) -> None:
        """Record a copy's end and free its slot (the sweep finishes orphans this way)."""
        self.finishing.finish(flight, state, error)
