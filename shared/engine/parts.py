"""What every part of the engine shares: its dependencies, and a few words they all use.

`Deps` is built once per process (service.Replicator) and handed to each part; a part
reads `settings`, `store`, `arm`, `clock`, `caches`, `listings`, `topic` and `metrics` through it, so a test
that swaps the settings of a running Replicator changes them for every part at once.

It must not hold a protocol: each part owns its own (intake, starting, finishing, …).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.storage.blob import ContainerClient

from shared.chunk_queue import ChunkQueue
from shared.config import DEFAULT_PARALLEL_RANGES, Settings
from shared.engine.backoff import GuardedArm
from shared.engine.caches import Caches
from shared.engine.listings import Listings
from shared.ids import ResourceGroupId
from shared.model import MAX_TAGS, Job, RegionKey, RegionLoad, Snapshot
from shared.placement import Placement, Selected, Selector, place, selector
from shared.policies import Mode
from shared.store import Conflict, StateStore
from shared.telemetry import Metrics
from shared.topic import Topic

log = logging.getLogger("snapcopy")

Clock = Callable[[], datetime]

# The diff lane's bound: no Azure cap applies (the queue and DIFF_MAX_PARALLEL_RANGES bound
# the work), but a slot counter needs one.
DIFF_LANE_CAP = 10_000


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DiffIo:
    """What the diff method reads and writes through, beside ARM and the table."""

    queue: ChunkQueue
    containers: Callable[[str, str], ContainerClient]  # (blob endpoint, container) -> client
    source_options: dict[str, Any] = field(default_factory=dict)  # blob client options for SAS reads
    # the app's identity, for sources whose data access takes an Entra token beside the SAS
    credential: Any = None
    # DIFF_MAX_PARALLEL_RANGES: range copies at once in this process, whatever the queue hands over
    ranges: threading.Semaphore = field(default_factory=lambda: threading.BoundedSemaphore(DEFAULT_PARALLEL_RANGES))


@dataclass
class Deps:
    """The engine's dependencies, one set per process."""

    settings: Settings
    store: StateStore
    arm: GuardedArm
    clock: Clock
    caches: Caches
    listings: Listings
    topic: Topic | None = None  # NOTIFY_TOPIC_ENDPOINT's publisher (None: no notices)
    metrics: Metrics = field(default_factory=Metrics)  # OpenTelemetry (no-op unless the runtime exports)
    diff: DiffIo | None = None  # the diff method's queue and storage (None: no policy copies by diff)


def log_dropped_tags(source: str, region: str, names: tuple[str, ...]) -> None:
    """Source tags that did not fit on a copy (ARM's 50): never dropped silently."""
    log.warning(
        "%s: %d source tag(s) not carried to its copy in %s (ARM allows %d tags): %s",
        source,
        len(names),
        region,
        MAX_TAGS,
        ", ".join(names),
    )


class Part:
    """A part of the engine: reads its dependencies through the shared `Deps`."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings for every part at once (tests change a running process's)."""
        self.deps.settings = settings

    @property
    def store(self) -> StateStore:
        return self.deps.store

    @property
    def arm(self) -> GuardedArm:
        return self.deps.arm

    @property
    def clock(self) -> Clock:
        return self.deps.clock

    @property
    def caches(self) -> Caches:
        return self.deps.caches

    @property
    def listings(self) -> Listings:
        return self.deps.listings

    @property
    def metrics(self) -> Metrics:
        return self.deps.metrics

    @property
    def select(self) -> Selector:
        """Which policy target copies a snapshot into a region (from the current settings)."""
        return selector(self.settings.policies, self.settings.source_scopes)

    @property
    def latest_policies(self) -> frozenset[str]:
        """The policies in mode `latest` (their chains copy only the newest queued snapshot)."""
        return frozenset(policy.name for policy in self.settings.policies if policy.mode is Mode.LATEST)

    def placed(self, selected: Selected, snapshot: Snapshot, group: ResourceGroupId) -> Placement:
        """Where and how a copy goes; source tags past ARM's limit are logged, not lost silently."""
        placement = place(selected, snapshot, group)
        if placement.dropped_tags:
            log_dropped_tags(str(snapshot.id), placement.region, placement.dropped_tags)
        return placement

    def cap(self, region: RegionKey) -> int:
        """Copies a region partition may hold in flight: Azure's CopyStart cap, or for the
        diff lane (our compute copies) a bound only the counter needs."""
        return DIFF_LANE_CAP if region.is_diff else self.settings.max_copies_per_region

    def note_load(self, load: RegionLoad) -> RegionLoad:
        """A region as just read; the caches remember whether it was at the cap."""
        return self.caches.note_load(load, self.cap(load.key))

    def heal_counter(self, load: RegionLoad, who: str) -> bool:
        """Set a region's slot counter to the flight rows it counts, when they disagree (a
        crash between two batches, a hand edit); True when it was corrected. A counter that
        moved meanwhile is left alone: a live trigger is at work, and the next run looks again."""
        if load.in_flight_count == len(load.in_flight):
            return False
        try:
            self.store.correct_counter(load)
        except Conflict:
            return False
        log.error(
            "%s: %s counted %d copies in flight but tracks %d; corrected",
            who,
            load.key.partition,
            load.in_flight_count,
            len(load.in_flight),
        )
        return True

    def save_quietly(self, job: Job) -> None:
        """Write a job we read; if someone changed it meanwhile, theirs stands."""
        try:
            self.store.save_job(job)
        except Conflict:
            log.info("job %s changed concurrently; keeping the other writer's version", job.key)
