"""The emulated Azure: disks, snapshots, CopyStart copies and every rule Azure enforces on them.

Pure Python, no HTTP: the FastAPI app and in-process tests call the same methods. One lock
guards everything, so concurrent requests see the rules applied atomically (the cap and the
one-in-flight rule are check-then-act).
"""

from __future__ import annotations

import copy as copying
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from . import listing
from .access import Grants
from .background import BACKGROUND_COPY_SKUS, COPYABLE_STATES, BackgroundCopy
from .bodies import (
    Encryption,
    encryption_of,
    extra_creation_data,
    os_type_of,
    required_object,
    same_location,
    sku_of,
    tags_of,
)
from .clock import Clock, RealClock, arm_time
from .config import GIB, EmulatorConfig
from .contents import DiskContents
from .copies import CANCELLED_CODE, Copy
from .data_plane import DataPlane
from .errors import ArmError, bad_request, not_found
from .events import DEFAULT_TENANT_ID, RequestInfo, resource_event
from .faults import ArmedFaults, Fault
from .ids import (
    RequestKind,
    ResourceId,
    ResourceKind,
    normalize_location,
    parse_resource_id,
    validate_subscription,
)
from .operations import Operation, Operations, WriteResult
from .resources import DISK_SKUS, SNAPSHOT_SKUS, Disk, Snapshot

REFUSALS = (
    "one_in_flight",
    "order",
    "cap",
    "api_version",
    "not_incremental",
    "same_region",
    "source_not_ready",
    "source_not_available",
    "source_not_found",
    "encryption",
    "family_limit",
)
# Azure: a disk may have at most 500 incremental snapshots; the emulator counts a family's
# snapshots per region (the source's own, or the copies in a target region).
MAX_FAMILY_SNAPSHOTS = 500
SOURCE_DELETED_CODE = "CopySourceNotFound"
_MAX_DISK_GB = 32767
_MAX_V2_DISK_GB = 65536  # Premium SSD v2 and Ultra disks


@dataclass
class _State:
    """Everything `reset()` clears."""

    config: EmulatorConfig
    disks: dict[str, Disk] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    copies: list[Copy] = field(default_factory=list)
    in_flight: list[Copy] = field(default_factory=list)
    chains: defaultdict[tuple[str, str], list[Copy]] = field(default_factory=lambda: defaultdict(list))
    operations: Operations = field(default_factory=Operations)
    events: list[dict[str, Any]] = field(default_factory=list)
    tombstones: dict[ResourceKind, listing.Tombstones] = field(
        default_factory=lambda: {"disks": listing.Tombstones(), "snapshots": listing.Tombstones()}
    )
    requests: Counter[str] = field(default_factory=Counter)
    refusals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))
    copies_started: int = 0
    faults: ArmedFaults = field(default_factory=ArmedFaults)
    locks: dict[str, str] = field(default_factory=dict)  # resource key -> lock level (CanNotDelete, ReadOnly)
    deleted: list[dict[str, Any]] = field(default_factory=list)  # every snapshot deleted, as it was then
    grants: Grants = field(default_factory=Grants)  # read access to snapshots (data_plane.py)


class World(DataPlane):
    """The in-memory Azure the emulator serves. Thread-safe.

    Copy-order watermark: for a (snapshot family, target region), the newest source
    `timeCreated` among copies ever started there that have not failed. Deleting the
    target does not lower it (Azure's chain in that region still has that snapshot);
    a failed copy does not count, since it leaves no usable snapshot behind.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        config: EmulatorConfig | None = None,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.tenant_id = tenant_id
        self._initial_config = config or EmulatorConfig()
        self._lock = threading.RLock()
        self._state = _State(self._initial_config)

    # -- configuration, counters, events -------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        return self._state.config

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change any `EmulatorConfig` field (`cap`, `copy_bytes_per_second`, `list_lag_seconds`, ...).

        Copies (and background copies) already started keep the duration they started with.
        """
        with self._lock:
            self._state.config = replace(self._state.config, **changes)
            return self._state.config

    def reset(self) -> None:
        """Forget every resource, copy, event, counter and fault; restore the initial config.

        The clock is left alone: time never goes backward.
        """
        with self._lock:
            self._state = _State(self._initial_config)

    def count_request(self, key: str) -> None:
        with self._lock:
            self._state.requests[key] += 1

    def snapshot_tags(self, snapshot_id: str) -> dict[str, str] | None:
        """A snapshot's tags (None: no such snapshot), read in-process by the checks."""
        rid = parse_resource_id(snapshot_id, "snapshot_id")
        with self._lock:
            snapshot = self._state.snapshots.get(rid.key)
            return None if snapshot is None else dict(snapshot.tags)

    def deletions(self) -> list[dict[str, Any]]:
        """Every snapshot deleted so far, as it was when deleted (ground truth for checks)."""
        with self._lock:
            return [dict(item) for item in self._state.deleted]

    def lock(self, resource_id: str, level: str = "CanNotDelete") -> None:
        """Put a management lock on a disk or snapshot: ARM then refuses to delete it."""
        if level not in ("CanNotDelete", "ReadOnly"):
            raise ValueError(f"lock level must be CanNotDelete or ReadOnly, got {level!r}")
        rid = parse_resource_id(resource_id, "resource_id")
        with self._lock:
            self._state.locks[rid.key] = level

    def count_refusal(self, name: str) -> None:
        with self._lock:
            self._state.refusals[name] += 1

    def counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(sorted(self._state.requests.items())),
                "refusals": dict(self._state.refusals),
                "copies_started": self._state.copies_started,
            }

    def events(self, drain: bool = False) -> list[dict[str, Any]]:
        """Events emitted so far, oldest first; `drain` removes them from the sink."""
        with self._lock:
            events = copying.deepcopy(self._state.events)
            if drain:
                self._state.events.clear()
            return events

    def copies(self) -> list[dict[str, Any]]:
        """Ground truth about every copy ever started, in start order."""
        with self._lock:
            now = self.clock.now()
            return [copy.to_admin(now) for copy in self._state.copies]

    def ledger(self) -> list[Copy]:
        """Every copy ever started, in start order, as values (benchmarks read times from it)."""
        with self._lock:
            return [replace(copy) for copy in self._state.copies]

    # -- faults --------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._state.faults.add(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._state.faults.describe()

    def faults_read_bodies(self) -> bool:
        """Whether an armed fault filters on the request body (the gateway then reads it first)."""
        with self._lock:
            return self._state.faults.read_bodies()

    def take_fault(self, method: str, kind: RequestKind, path: str, body: bytes | None = None) -> Fault | None:
        """The first armed fault matching this request, used up by one."""
        with self._lock:
            return self._state.faults.take(method, kind, path, body)

    # -- generic reads and deletes -------------------------------------------------------

    def get(self, rid: ResourceId) -> dict[str, Any]:
        with self._lock:
            resource = self._table(rid.kind).get(rid.key)
            if resource is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            return resource.to_arm(self.clock.now())

    def list_resources(
        self,
        kind: ResourceKind,
        subscription: str,
        resource_group: str | None = None,
        *,
        token: str | None = None,
        count: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the disks or snapshots of a subscription or resource group, in id order,
        and the `$skiptoken` of the next page (None on the last).

        The listing is the collection as of `now - list_lag_seconds` (fixed by its first page,
        carried by the token): what was created later is missing, what was deleted later still
        shows; see `listing`. Only the page asked for is rendered.
        """
        validate_subscription(subscription)
        scope = f"/subscriptions/{subscription}/resourcegroups/".lower()
        if resource_group is not None:
            scope += f"{resource_group}/".lower()
        cursor = listing.Cursor.from_token(token) if token is not None else None
        with self._lock:
            now = self.clock.now()
            lag = self.config.list_lag_seconds
            tombstones = self._state.tombstones[kind]
            tombstones.prune(now, lag)
            cursor = cursor or listing.Cursor(now - timedelta(seconds=lag))
            resources, following = listing.page(self._table(kind), tombstones, scope, cursor, count)
            return [r.to_arm(now) for r in resources], following.token() if following else None

    def delete(self, rid: ResourceId, request: RequestInfo) -> bool:
        """Delete a disk or snapshot; False if it did not exist.

        Deleting a snapshot fails the copies it is the source of (`CopySourceNotFound`) and,
        if it is an unfinished copy itself, cancels that copy.
        """
        with self._lock:
            now = self.clock.now()
            if rid.key in self._state.locks:  # a management lock (or an immutability policy) on it
                raise ArmError(
                    409,
                    "ScopeLocked",
                    f"The scope '{rid.arm_id}' cannot perform delete operation because following scope(s) are "
                    f"locked: '{rid.arm_id}'. Please remove the lock and try again.",
                )
            resource: Disk | Snapshot | None
            if rid.kind == "disks":
                resource = self._state.disks.pop(rid.key, None)
            else:
                resource = self._state.snapshots.pop(rid.key, None)
            if resource is None:
                return False
            if isinstance(resource, Snapshot):
                self._state.grants.revoke(rid.key)  # its SAS dies with it
                self._state.deleted.append(
                    {
                        "id": resource.rid.arm_id,
                        "create_option": resource.create_option,
                        "tags": dict(resource.tags),
                        "copy_state": resource.copy.state(now) if resource.copy is not None else None,
                        "source_unique_id": resource.source_unique_id,
                    }
                )
                for running in self._in_flight(now):
                    if running.source_id.lower() == rid.key:
                        running.fail(
                            now,
                            SOURCE_DELETED_CODE,
                            "The source snapshot was deleted before the copy completed.",
                        )
                if resource.copy is not None:
                    resource.copy.target_deleted = True
                    resource.copy.fail(
                        now, CANCELLED_CODE, "The target snapshot was deleted before the copy completed."
                    )
            tombstones = self._state.tombstones[rid.kind]
            tombstones.add(resource, now)
            tombstones.prune(now, self.config.list_lag_seconds)
            self._emit(rid, "delete", request, now)
            return True

    def get_operation(self, subscription: str, location: str, name: str) -> dict[str, Any]:
        """The operation's status (the `Azure-AsyncOperation` URL)."""
        with self._lock:
            return self._state.operations.find(subscription, location, name).to_arm()

    def operation_result(self, subscription: str, location: str, name: str) -> dict[str, Any] | None:
        """What the operation's `Location` (monitor) URL answers once it is done: the resource's
        body, or None (204) if the resource is gone since."""
        with self._lock:
            operation = self._state.operations.find(subscription, location, name)
            if operation.result is not None:
                return operation.result
            rid = operation.resource
            resource = self._table(rid.kind).get(rid.key)
            return resource.to_arm(self.clock.now()) if resource is not None else None

    def new_operation(self, rid: ResourceId) -> Operation:
        """A (finished) async operation about an existing resource, for a write answered 202
        although it created nothing (an injected answer shape, see `Fault.answer`)."""
        with self._lock:
            resource = self._table(rid.kind).get(rid.key)
            if resource is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            return self._state.operations.start(rid, resource.location, self.clock.now())

    # -- disks ---------------------------------------------------------------------------

    def put_disk(self, rid: ResourceId, body: Mapping[str, Any], request: RequestInfo) -> WriteResult:
        """Create (202 + operation) or update (tags, sku, growing size) an empty managed disk."""
        rid.validate()
        location = normalize_location(body.get("location"), rid.type)
        properties = required_object(body, "properties")
        creation = required_object(properties, "creationData", "properties.")
        if creation.get("createOption") != "Empty":
            raise bad_request(
                f"createOption '{creation.get('createOption')}' is not supported for disks by the emulator; "
                "use 'Empty'.",
                "InvalidParameter",
            )
        sku = sku_of(body, DISK_SKUS, "Premium_LRS")
        size = properties.get("diskSizeGB")
        largest = _MAX_V2_DISK_GB if sku in BACKGROUND_COPY_SKUS else _MAX_DISK_GB
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= largest:
            raise bad_request(
                f"properties.diskSizeGB must be an integer from 1 to {largest} for {sku}, got {size!r}.",
                "InvalidParameter",
            )
        tags = tags_of(body)
        os_type = os_type_of(properties)
        encryption = encryption_of(properties) or Encryption()
        with self._lock:
            now = self.clock.now()
            existing = self._state.disks.get(rid.key)
            if existing is not None:
                same_location(existing.rid, existing.location, location)
                if size < existing.size_gb:
                    raise bad_request(f"Disk '{rid.name}' cannot shrink from {existing.size_gb} GB to {size} GB.")
                existing.tags, existing.size_gb, existing.sku = tags, size, sku
                if existing.contents is not None:
                    existing.contents.grow(size * GIB)
                self._emit(rid, "write", request, now)
                return WriteResult(rid, existing.to_arm(now))
            disk = Disk(
                rid=rid,
                location=location,
                tags=tags,
                sku=sku,
                size_gb=size,
                os_type=os_type,
                unique_id=str(uuid.uuid4()),
                family_id=str(uuid.uuid4()),
                time_created=now,
                encryption=encryption,
                contents=DiskContents(size * GIB),
            )
            self._state.disks[rid.key] = disk
            return self._created(disk, request, now)

    # -- snapshots -----------------------------------------------------------------------

    def put_snapshot(self, rid: ResourceId, body: Mapping[str, Any], request: RequestInfo) -> WriteResult:
        """Create a snapshot of a disk (`Copy`) or start a cross-region copy (`CopyStart`).

        A PUT to an existing snapshot with the same creationData is an idempotent update
        (tags only, 200, no rule checked, no copy started); changing creationData is refused.
        A snapshot of a Premium SSD v2 or Ultra disk starts its own background copy.
        """
        rid.validate()
        location = normalize_location(body.get("location"), rid.type)
        properties = required_object(body, "properties")
        creation = required_object(properties, "creationData", "properties.")
        option = creation.get("createOption")
        if option not in ("Copy", "CopyStart"):
            raise bad_request(
                f"createOption '{option}' is not supported by the emulator: use 'Copy' (from a disk) "
                "or 'CopyStart' (from a snapshot in another region).",
                "InvalidParameter",
            )
        source_text = creation.get("sourceResourceId")
        if not isinstance(source_text, str) or not source_text:
            raise bad_request(
                f"properties.creationData.sourceResourceId is required for createOption '{option}'.",
                "InvalidParameter",
            )
        source_rid = parse_resource_id(source_text, "properties.creationData.sourceResourceId")
        incremental = properties.get("incremental", False)
        if not isinstance(incremental, bool):
            raise bad_request("properties.incremental must be a boolean.", "InvalidParameter")
        extra = extra_creation_data(creation)
        encryption = encryption_of(properties)
        tags = tags_of(body)
        sku = sku_of(body, SNAPSHOT_SKUS, "Standard_ZRS")
        access_mode = properties.get("dataAccessAuthMode", "None")
        if access_mode not in ("None", "AzureActiveDirectory"):
            raise bad_request(
                f"properties.dataAccessAuthMode must be 'None' or 'AzureActiveDirectory', got {access_mode!r}.",
                "InvalidParameter",
            )
        with self._lock:
            now = self.clock.now()
            existing = self._state.snapshots.get(rid.key)
            if existing is not None:
                same_location(existing.rid, existing.location, location)
                if (
                    existing.create_option != option
                    or existing.source_id.lower() != source_rid.key
                    or existing.incremental != incremental
                ):
                    raise ArmError(
                        409,
                        "PropertyChangeNotAllowed",
                        f"Changing property 'creationData' (or 'incremental') of snapshot '{rid.name}' is not allowed.",
                    )
                existing.tags = tags
                self._emit(rid, "write", request, now)
                return WriteResult(rid, existing.to_arm(now))
            start = self._snapshot_of_disk if option == "Copy" else self._start_copy
            snapshot = start(
                source_rid,
                incremental,
                rid=rid,
                location=location,
                tags=tags,
                sku=sku,
                extra=extra,
                encryption=encryption,
                now=now,
            )
            snapshot.data_access_auth_mode = access_mode
            self._state.snapshots[rid.key] = snapshot
            return self._created(snapshot, request, now)

    def patch(self, rid: ResourceId, body: Mapping[str, Any], request: RequestInfo) -> dict[str, Any]:
        """Update tags (the only PATCH the emulator supports) and emit a write event."""
        tags = tags_of(body) if "tags" in body else None
        if body.get("properties"):
            raise bad_request("The emulator supports PATCH of 'tags' only.", "InvalidParameter")
        with self._lock:
            now = self.clock.now()
            resource = self._table(rid.kind).get(rid.key)
            if resource is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            if tags is not None:
                resource.tags = tags
            self._emit(rid, "write", request, now)
            return resource.to_arm(now)

    def fail_copy(self, target_id: str, code: str, message: str) -> dict[str, Any]:
        """Fail an in-flight copy as Azure would (`copyCompletionError`), freezing its progress."""
        rid = parse_resource_id(target_id, "target_id")
        with self._lock:
            now = self.clock.now()
            snapshot = self._state.snapshots.get(rid.key)
            if snapshot is None or snapshot.copy is None:
                raise ArmError(404, "ResourceNotFound", f"No CopyStart target snapshot '{target_id}'.")
            if not snapshot.copy.fail(now, code, message):
                raise ArmError(
                    409,
                    "CopyNotInFlight",
                    f"The copy to '{target_id}' is {snapshot.copy.state(now)}, not copying.",
                )
            return snapshot.copy.to_admin(now)

    # -- rules -----------------------------------------------------------------------------

    def _snapshot_of_disk(
        self,
        source_rid: ResourceId,
        incremental: bool,
        *,
        rid: ResourceId,
        location: str,
        tags: dict[str, str],
        sku: str,
        extra: dict[str, Any],
        encryption: Encryption | None,
        now: datetime,
    ) -> Snapshot:
        if source_rid.kind != "disks":
            raise bad_request("createOption 'Copy' from a snapshot is not supported by the emulator; copy from a disk.")
        disk = self._state.disks.get(source_rid.key)
        if disk is None:
            raise not_found(source_rid.type, source_rid.name, source_rid.resource_group)
        if disk.location != location:
            raise bad_request(
                f"The snapshot must be in the location of its source disk '{disk.rid.name}' "
                f"('{disk.location}'), not '{location}'."
            )
        if encryption is not None and (
            encryption.type != disk.encryption.type or not encryption.same_set(disk.encryption)
        ):
            raise self._refuse(
                "encryption",
                400,
                f"The snapshot's encryption must be its disk's ({disk.encryption.type}, "
                f"{disk.encryption.disk_encryption_set_id or 'no disk encryption set'}): a disk and all of its "
                "incremental snapshots must have the same disk encryption set.",
            )
        if incremental:
            self._check_family_room(disk.family_id, location)
        background = None
        if disk.sku in BACKGROUND_COPY_SKUS:
            duration = self.config.source_copy_seconds(disk.size_gb * GIB)
            background = BackgroundCopy(now, duration, extra.get("instantAccessDurationMinutes"))
        return Snapshot(
            rid=rid,
            location=location,
            tags=tags,
            sku=sku,
            create_option="Copy",
            source_id=disk.rid.arm_id,
            source_unique_id=disk.unique_id,
            size_gb=disk.size_gb,
            incremental=incremental,
            family_id=disk.family_id if incremental else None,
            os_type=disk.os_type,
            unique_id=str(uuid.uuid4()),
            time_created=now,
            background=background,
            extra_creation_data=extra,
            encryption=disk.encryption,
            image=disk.contents.image() if disk.contents is not None else None,
        )

    def _start_copy(
        self,
        source_rid: ResourceId,
        incremental: bool,
        *,
        rid: ResourceId,
        location: str,
        tags: dict[str, str],
        sku: str,
        extra: dict[str, Any],
        encryption: Encryption | None,
        now: datetime,
    ) -> Snapshot:
        """Start a copy into `location` once Azure's CopyStart rules allow it."""
        source = self._copy_source(source_rid, incremental, rid, location, now)
        family = source.family_id
        assert family is not None  # checked by _copy_source
        target_encryption = encryption or Encryption()
        self._check_copy_encryption(source, family, location, target_encryption, now)
        self._check_family_room(family, location)
        copy = Copy(
            source_id=source.rid.arm_id,
            target_id=rid.arm_id,
            family_id=family,
            region=location,
            subscription=rid.subscription,
            source_time_created=source.time_created,
            started_at=now,
            duration_seconds=self.config.copy_seconds(source.size_bytes)
            / (self.config.enhanced_copy_factor if extra.get("provisionedBandwidthCopySpeed") == "Enhanced" else 1.0),
        )
        self._state.copies.append(copy)
        self._state.in_flight.append(copy)
        self._state.chains[(family, location)].append(copy)
        self._state.copies_started += 1
        return Snapshot(
            rid=rid,
            location=location,
            tags=tags,
            sku=sku,
            create_option="CopyStart",
            source_id=source.rid.arm_id,
            source_unique_id=source.unique_id,
            size_gb=source.size_gb,
            incremental=True,
            family_id=family,
            os_type=source.os_type,
            unique_id=str(uuid.uuid4()),
            time_created=now,
            copy=copy,
            extra_creation_data=extra,
            encryption=target_encryption,
        )

    def _copy_source(
        self, source_rid: ResourceId, incremental: bool, target: ResourceId, location: str, now: datetime
    ) -> Snapshot:
        """The source snapshot, if every rule allows copying it into `location` now (checked in this order).

        The permanent copy-order refusal is checked before the passing one-in-flight one, so a
        caller learns that an older snapshot can never be copied even while a newer one copies.
        """
        if source_rid.kind != "snapshots":
            raise bad_request(f"CopyStart needs a snapshot as its source; '{source_rid.arm_id}' is not one.")
        source = self._state.snapshots.get(source_rid.key)
        if source is None:
            self.count_refusal("source_not_found")
            raise not_found(source_rid.type, source_rid.name, source_rid.resource_group)
        if not incremental:
            message = "CopyStart is only supported for incremental snapshots: set properties.incremental to true."
            raise self._refuse("not_incremental", 400, message)
        if not source.incremental or source.family_id is None:
            message = f"The source snapshot '{source.rid.arm_id}' is not incremental; CopyStart needs one that is."
            raise self._refuse("not_incremental", 400, message)
        if source.location == location:
            message = f"The source snapshot is in '{location}'; CopyStart copies to a different region only."
            raise self._refuse("same_region", 400, message)
        if not source.usable_as_copy_source(now):
            message = (
                f"The source snapshot '{source.rid.arm_id}' is not ready to be copied: it is itself a copy "
                "that has not completed."
            )
            raise self._refuse("source_not_ready", 409, message)
        access_state = source.access_state(now)
        if access_state not in COPYABLE_STATES:
            percent = source.background.percent(now) if source.background is not None else 0.0
            message = (
                f"The source snapshot '{source.rid.arm_id}' cannot be copied to another region yet: its "
                f"snapshotAccessState is '{access_state}' (completionPercent {percent}). A snapshot of a "
                "Premium SSD v2 or Ultra disk can be copied once its background data copy completes."
            )
            raise self._refuse("source_not_available", 409, message)
        family = source.family_id
        newest = self._watermark(family, location, now)
        if newest is not None and source.time_created < newest:
            message = (
                f"A newer snapshot of incremental snapshot family '{family}' (created {arm_time(newest)}) "
                f"has already been copied to '{location}'; snapshots must be copied in creation order."
            )
            raise self._refuse("order", 409, message)
        in_flight = self._in_flight(now)
        for running in in_flight:
            if running.family_id == family and running.region == location:
                message = (
                    f"A copy of '{running.source_id}' (same incremental snapshot family) to '{location}' "
                    "is in progress; only one copy per family per region may be in flight."
                )
                raise self._refuse("one_in_flight", 409, message)
        subscription, cap = target.subscription.lower(), self.config.cap
        if sum(c.subscription.lower() == subscription and c.region == location for c in in_flight) >= cap:
            message = (
                f"The limit of {cap} snapshot copies (CopyStart) in flight per subscription per region "
                f"has been reached for subscription '{target.subscription}' in '{location}'; retry after "
                "some complete."
            )
            raise self._refuse("cap", 409, message)
        return source

    def _watermark(self, family: str, region: str, now: datetime) -> datetime | None:
        """Newest source timeCreated copied (or copying) into `region` for `family`; see class doc."""
        started = [
            c.source_time_created for c in self._state.chains.get((family, region), []) if c.state(now) != "failed"
        ]
        return max(started, default=None)

    def _in_flight(self, now: datetime) -> list[Copy]:
        """Copies still copying; finished ones are dropped so rule checks cost O(in flight)."""
        self._state.in_flight = [c for c in self._state.in_flight if c.in_flight(now)]
        return self._state.in_flight

    def _check_family_room(self, family: str, location: str) -> None:
        """At most MAX_FAMILY_SNAPSHOTS incremental snapshots of one family in one region."""
        count = sum(
            1 for item in self._state.snapshots.values() if item.family_id == family and item.location == location
        )
        if count >= MAX_FAMILY_SNAPSHOTS:
            message = (
                f"Incremental snapshot family '{family}' already has {count} snapshots in '{location}'; a disk may "
                f"have at most {MAX_FAMILY_SNAPSHOTS} incremental snapshots. Delete some and try again."
            )
            raise self._refuse("family_limit", 400, message)

    def _check_copy_encryption(
        self, source: Snapshot, family: str, location: str, encryption: Encryption, now: datetime
    ) -> None:
        """A customer-key source needs a disk encryption set on its copy, and every copy of a
        family in one region uses the same set (a disk and all of its incremental snapshots
        must have the same disk encryption set)."""
        if source.encryption.customer_key and not encryption.customer_key:
            message = (
                f"The source snapshot '{source.rid.arm_id}' is encrypted with a customer-managed key; its copy to "
                f"'{location}' needs properties.encryption.diskEncryptionSetId (a disk encryption set in '{location}')."
            )
            raise self._refuse("encryption", 400, message)
        for other in self._state.snapshots.values():
            if other.copy is None or other.family_id != family or other.location != location:
                continue
            if other.copy.state(now) == "failed":
                continue
            if not other.encryption.same_set(encryption):
                used = other.encryption.disk_encryption_set_id or "no disk encryption set"
                message = (
                    f"Copies of incremental snapshot family '{family}' in '{location}' use {used}; a disk and all of "
                    "its incremental snapshots must have the same disk encryption set."
                )
                raise self._refuse("encryption", 400, message)

    def _refuse(self, name: str, status: int, message: str) -> ArmError:
        """Count a rule refusal; 400 for a request Azure would never accept, 409 for a state conflict."""
        self.count_refusal(name)
        return ArmError(status, "BadRequest" if status == 400 else "OperationNotAllowed", message)

    # -- bookkeeping -----------------------------------------------------------------------

    def _table(self, kind: ResourceKind) -> Mapping[str, Disk | Snapshot]:
        return self._state.disks if kind == "disks" else self._state.snapshots

    def _created(self, resource: Disk | Snapshot, request: RequestInfo, now: datetime) -> WriteResult:
        operation = self._state.operations.start(resource.rid, resource.location, now)
        self._emit(resource.rid, "write", request, now)
        return WriteResult(resource.rid, resource.to_arm(now, provisioning_state="Updating"), operation)

    def _emit(self, rid: ResourceId, action: Literal["write", "delete"], request: RequestInfo, now: datetime) -> None:
        self._state.events.append(resource_event(rid, action, request, now, self.tenant_id))
