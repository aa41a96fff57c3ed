"""The nouns of replication: snapshots as ARM shows them, chains, copy jobs, region slots.

Plain values only: no I/O here, so the scheduler can be tested with literals.

It must not decide (shared/scheduler.py does) nor know a table key (shared/tables/ does).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from shared.ids import ResourceGroupId, ResourceId
from shared.increment_steps import IncrementState, Progress

# snapshotAccessState values from which a snapshot may be copied ("" = not reported)
COPYABLE_ACCESS_STATES = frozenset({"", "available", "availablewithinstantaccess"})
KNOWN_ACCESS_STATES = COPYABLE_ACCESS_STATES | {"pending", "instantaccess"}
STANDARD_SPEED = "Standard"  # a CopyStart copy's default speed (the PUT leaves the field out)
SOURCE_TAG = "snapcopy-source"  # on every copy we make: names its source (loop guard, audit)
MAX_TAGS = 50  # Azure's limit per resource
MAX_SNAPSHOT_NAME = 80
DIFF = "diff"  # a chain's or a job's method when the diff method copies it (policies.Method.DIFF)
DIFF_LANE = DIFF  # the diff method's region partitions (RegionKey.lane)


def lane_of(method: str) -> str:
    """The slot lane of a copy made by `method`."""
    return DIFF_LANE if method == DIFF else ""


class CopyState(StrEnum):
    QUEUED = "queued"
    COPYING = "copying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self not in (CopyState.QUEUED, CopyState.COPYING)


@dataclass(frozen=True)
class CopyOrder:
    """What one CopyStart PUT asks ARM for."""

    source_id: ResourceId
    target_id: ResourceId
    region: str
    tags: dict[str, str]
    copy_speed: str = STANDARD_SPEED  # "Enhanced": creationData.provisionedBandwidthCopySpeed
    disk_encryption_set_id: str = ""  # the copy encrypted with a customer key through this set


@dataclass(frozen=True)
class CopyError:
    code: str
    message: str


@dataclass(frozen=True)
class Snapshot:
    """A snapshot as ARM reports it (source or copy); only the fields snapcopy uses."""

    id: ResourceId
    location: str
    incremental: bool
    family_id: str | None
    time_created: datetime | None  # None: ARM did not say; such a snapshot is read again, never ordered
    provisioning_state: str
    create_option: str
    source_resource_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    size_bytes: int | None = None
    completion_percent: float | None = None
    copy_error: CopyError | None = None
    unique_id: str = ""
    source_unique_id: str = ""  # creationData.sourceUniqueId: which snapshot a copy was made from
    # snapshotAccessState: Premium SSD v2 and Ultra snapshots are `Pending` (or `InstantAccess`)
    # while their own background copy runs; None on API versions that do not report it
    access_state: str | None = None
    encryption_type: str = ""  # properties.encryption.type
    disk_encryption_set_id: str = ""  # properties.encryption.diskEncryptionSetId, if any
    sas_active: bool = False  # diskState ActiveSAS: someone holds read access (the diff method's grants)
    # dataAccessAuthMode AzureActiveDirectory: reading through its SAS also takes an Entra token
    entra_data_access: bool = False

    @property
    def customer_key(self) -> bool:
        """Encrypted with a customer-managed key (through a disk encryption set)."""
        return "customerkey" in self.encryption_type.lower()

    @property
    def is_copy(self) -> bool:
        """A CopyStart copy (ours or anyone's) or anything carrying our tag: never a source."""
        return self.create_option.lower() == "copystart" or SOURCE_TAG in self.tags

    @property
    def is_ready(self) -> bool:
        """Copyable to another region: provisioned, and its own background copy (Premium SSD
        v2, Ultra) finished. No `snapshotAccessState` at all (older API versions) is available."""
        access = (self.access_state or "").lower()
        return self.provisioning_state.lower() == "succeeded" and access in COPYABLE_ACCESS_STATES

    @property
    def access_state_known(self) -> bool:
        return (self.access_state or "").lower() in KNOWN_ACCESS_STATES

    @property
    def is_complete_copy(self) -> bool:
        """A copy ARM reports finished without doubt: 100 percent, or no percent at all but
        `snapshotAccessState` Available. `Succeeded` alone is not enough (it is set at once)."""
        if self.provisioning_state.lower() != "succeeded" or self.copy_error is not None:
            return False
        if self.completion_percent is not None:
            return self.completion_percent >= 100.0
        return (self.access_state or "").lower() in ("available", "availablewithinstantaccess")

    @property
    def order_key(self) -> str:
        if self.time_created is None:
            raise ValueError(f"{self.id} has no timeCreated: it cannot be ordered (read it again)")
        return order_key(self.time_created, self.id.name)

    @property
    def disk_id(self) -> str | None:
        """The source disk, when ARM says the snapshot was taken from one."""
        source = self.source_resource_id or ""
        return source if "/providers/microsoft.compute/disks/" in source.lower() else None


def order_key(time_created: datetime, name: str) -> str:
    """A Table RowKey that sorts in creation order (name breaks ties)."""
    return f"{time_created.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}|{name.lower()}"


@dataclass(frozen=True)
class ChainKey:
    """One chain: a snapshot family copied into one target region, in order, one at a time."""

    family_id: str
    region: str

    @property
    def partition(self) -> str:
        return f"chain|{self.family_id.lower()}|{self.region}"


def blob_name(chain: ChainKey) -> str:
    """The diff method's target page blob of a chain: one per source family and region."""
    return f"{chain.family_id.lower()}-{chain.region}.vhd"


@dataclass(frozen=True)
class RegionKey:
    """Azure's cap applies per target subscription per target region. The diff method's
    chains have a lane of their own (`lane="diff"`): our compute copies them, so Azure's
    CopyStart cap does not count them, and their flights are driven by increments."""

    subscription: str
    region: str
    lane: str = ""  # "" (CopyStart) or DIFF_LANE

    @property
    def partition(self) -> str:
        base = f"region|{self.subscription.lower()}|{self.region}"
        return f"{base}|{self.lane}" if self.lane else base

    @property
    def is_diff(self) -> bool:
        return self.lane == DIFF_LANE


@dataclass(frozen=True)
class Job:
    """One source snapshot's copy into one chain's region."""

    chain: ChainKey
    source_id: ResourceId
    source_time: datetime
    target_id: ResourceId
    source_unique_id: str = ""
    state: CopyState = CopyState.QUEUED
    source_ready: bool = True
    source_percent: float | None = None  # the source's own background copy, while not ready
    source_checked_at: datetime | None = None  # when a GET (or a listing) last saw the source
    attempts: int = 0
    not_before: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    percent: float = 0.0
    error: CopyError | None = None
    reason: str = ""
    etag: str | None = None
    size_bytes: int | None = None  # the source's size as ARM reported it: the copy's expected length
    policy: str = ""  # the replication policy that queued it ("default": COPY_TARGET_REGIONS)
    tags: tuple[tuple[str, str], ...] = ()  # the copy's tags, fixed when it was queued (none: ours only)
    disk_encryption_set_id: str = ""  # the copy's disk encryption set ("": platform-managed keys)
    pruned_at: datetime | None = None  # when retention deleted the copy (state stays succeeded)
    pruned_by: str = ""  # the policy whose `retain` pruned it
    prune_error: str = ""  # why retention did not delete it (a lock, not ours): asked once, never again
    copy_speed: str = STANDARD_SPEED  # CopyStart's provisionedBandwidthCopySpeed ("Enhanced" asks for more)
    method: str = ""  # "diff": copied by the diff method (shared/increments.py); "" or "copyStart": CopyStart
    blob_endpoint: str = ""  # the diff method's target storage account and container
    blob_container: str = ""
    blob_snapshot: str = ""  # the diff method: the blob snapshot that stands for the source in the region
    announced: str = ""  # the last notice recorded for it (shared/notices.py): never announced twice
    announcements: int = 0  # how many it has had: numbers the next one's id

    @property
    def key(self) -> str:
        return order_key(self.source_time, self.source_id.name)

    @property
    def region(self) -> RegionKey:
        """The slot partition the copy counts against: its target's subscription and region
        (and the diff lane for the diff method)."""
        return RegionKey(self.target_id.subscription, self.chain.region, lane_of(self.method))

    @property
    def target(self) -> str:
        """What stands for the source in its region: the copy's snapshot id, or for the diff
        method the blob snapshot's URL (the page blob's own before the increment is done)."""
        if self.method != DIFF:
            return str(self.target_id)
        return self.blob_snapshot or f"{self.blob_endpoint.rstrip('/')}/{self.blob_container}/{blob_name(self.chain)}"

    @property
    def order(self) -> CopyOrder:
        """The CopyStart this job sends (a job from before policies carries our tag only)."""
        tags = dict(self.tags) or {SOURCE_TAG: str(self.source_id)}
        return CopyOrder(
            self.source_id, self.target_id, self.chain.region, tags, self.copy_speed, self.disk_encryption_set_id
        )


@dataclass(frozen=True)
class ChainHead:
    """The chain's summary row: what started last (the order watermark), what is copying."""

    key: ChainKey
    source_groups: tuple[ResourceGroupId, ...]  # every group the family was seen in: listed before a start
    target_group: ResourceGroupId
    disk_id: str = ""
    last_started_key: str = ""
    copying_key: str = ""
    last_completed_key: str = ""
    last_completed_source: str = ""
    last_completed_at: datetime | None = None
    listed_through: datetime | None = None
    disk_encryption_set_id: str = ""  # every copy of a chain uses this one (Azure: one set per family)
    rpo_breached_at: datetime | None = None  # RpoBreached announced, and not recovered since
    method: str = ""  # how the chain copies, fixed when it is made ("diff", or CopyStart)
    diff_base: str = ""  # the diff method: the source snapshot the target blob holds exactly ("": none)
    etag: str | None = None

    @property
    def region(self) -> RegionKey:
        return RegionKey(self.target_group.subscription, self.key.region, lane_of(self.method))


class Phase(StrEnum):
    STARTING = "starting"  # slot reserved, CopyStart PUT not yet known to have landed
    COPYING = "copying"


@dataclass(frozen=True)
class InFlight:
    """A region slot held by one chain's copy (one row per family: at most one in flight)."""

    region: RegionKey
    chain: ChainKey
    job_key: str
    source_id: ResourceId
    target_id: ResourceId
    phase: Phase
    started_at: datetime
    attempt: str = ""  # who drives the start: a restart takes the flight over by changing it
    percent: float = 0.0
    progressed_at: datetime | None = None
    next_poll_at: datetime | None = None
    stuck_since: datetime | None = None  # flagged: no progress for STUCK_AFTER_MINUTES
    etag: str | None = None


@dataclass(frozen=True)
class Waiting:
    """A chain with queued work and no copy in flight, waiting for a slot in its region."""

    region: RegionKey
    chain: ChainKey
    since: datetime
    etag: str | None = None
    # the chain's watermark when it was marked (None: unknown): its queue lies at or after
    # it, so the head and the queue can be read in one query
    from_key: str | None = None
    next_bytes: int | None = None  # the size of the copy it would start next (release order)


@dataclass(frozen=True)
class RegionLoad:
    """One (subscription, region) partition: the slot counter, who holds slots, who waits."""

    key: RegionKey
    in_flight_count: int
    in_flight: tuple[InFlight, ...]
    waiting: tuple[Waiting, ...]
    counter_etag: str | None = None

    @property
    def busy_families(self) -> frozenset[str]:
        return frozenset(flight.chain.family_id.lower() for flight in self.in_flight)


@dataclass(frozen=True)
class Increment:
    """A diff chain's job being copied by increments: its plan and its read access.

    `base_id` is the source snapshot the increment is diffed against ("" for a full copy
    or a re-base); the SAS URLs are the grants the plan read with (they run out at
    `grant_expires`); `stamp` is the blob snapshot once taken."""

    chain: ChainKey
    job_key: str
    state: IncrementState
    generation: int
    chunks: int
    changed_at: datetime
    source_sas: str = ""
    base_sas: str = ""
    base_id: str = ""
    grant_expires: datetime | None = None
    blob: str = ""
    size: int = 0
    stamp: str = ""
    fence: int = 0  # the blob's sequence number while this increment writes it
    plans: int = 0  # how many plans it began (a cap ends an increment that never finishes)
    queued: bool = False  # every chunk of the current plan was put on the queue
    entra: bool = False  # its source's data access takes an Entra token beside the SAS
    etag: str | None = None

    @property
    def progress(self) -> Progress:
        return Progress(
            self.state, self.generation, self.chunks, self.changed_at, self.grant_expires, self.plans, self.queued
        )


@dataclass(frozen=True)
class IndexEntry:
    """What snapcopy decided about one snapshot id the first time it saw it."""

    snapshot_id: ResourceId
    kind: str  # "source" | "copy" | "ignored"
    reason: str = ""
    family_id: str = ""
    regions: str = ""
    unique_id: str = ""  # ARM's uniqueId: tells a recreated snapshot of the same name apart
    recorded_at: datetime | None = None


def target_snapshot_id(source: ResourceId, region: str, group: ResourceGroupId) -> ResourceId:
    """The copy's deterministic id: the same source and region always give the same name.

    `<source>-<region>` when copies sit beside their sources; a short hash of the source id
    is added when copies share a resource group, so equal names from different groups
    cannot collide. Names stay within Azure's 80 characters.
    """
    same_group = group == source.group
    suffix = f"-{region}" if same_group else f"-{short_hash(str(source).lower())}-{region}"
    stem = source.name
    if len(stem) + len(suffix) > MAX_SNAPSHOT_NAME:
        suffix = f"-{short_hash(str(source).lower())}-{region}"
        stem = stem[: MAX_SNAPSHOT_NAME - len(suffix)].rstrip("-.")
    return ResourceId(group.subscription, group.resource_group, "snapshots", stem + suffix)


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
