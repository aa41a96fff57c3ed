"""Runs a workload through snapcopy (its real functions) or the naive baseline, in
simulated time: Azurite holds the table, the ARM emulator (virtual clock) plays Azure.

The loop takes each snapshot at its time, hands every event the emulator emits to the
system under test at once (Event Grid's usual latency is seconds), fires the poll timer
every POLL_SECONDS and the sweep hourly, and stops when Azure shows every copy done and
the system has nothing left in flight. No real time passes between steps.
"""

from __future__ import annotations

import logging
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from azure.data.tables import TableClient

from local.bench.metrics import CopyRecord, chain_handoffs, seconds_since, slot_refills, spread, timeline
from local.bench.naive import NaiveReplicator
from local.bench.workload import Workload, at
from local.chaos import Backend, VirtualSleepRetry
from local.emulator.clock import VirtualClock
from local.emulator.credential import EmulatorCredential
from local.emulator.events import RequestInfo
from local.emulator.ids import parse_resource_id
from local.emulator.world import World
from local.host import FunctionHost
from local.tables import TableOperations
from shared import runtime
from shared.arm import RETRY_SETTINGS, ArmCompute
from shared.config import load_settings
from shared.service import Replicator
from shared.store import StateStore

SUBSCRIPTION = "0b1e5c3d-7a2f-4e8b-9c6d-5f4a3b2c1d0e"
SOURCE_REGION = "eastus2"
TARGET_REGION = "westus3"
POLL_SECONDS = 60.0  # POLL_SCHEDULE's default: every minute
SWEEP_SECONDS = 3600.0  # SWEEP_SCHEDULE's default: hourly
SWEEP_OFFSET = 17 * 60.0
# for both systems alike: no proxy lookup in the environment on every request (requests
# walks os.environ each time; nothing in this offline world goes through a proxy)
CLIENT_OPTIONS = {"use_env_settings": False}

log = logging.getLogger("snapcopy.bench")


def new_table(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def drop_table(backend: Backend, table: str) -> None:
    TableClient.from_connection_string(backend.connection_string, table).delete_table()


class System(Protocol):
    name: str

    def deliver(self, event: dict[str, Any]) -> None: ...

    def tick(self) -> None: ...

    def sweep(self) -> None: ...

    def table_operations(self) -> dict[str, int]: ...

    def settled(self) -> bool: ...


class Snapcopy:
    """snapcopy's functions, invoked as the Functions host invokes them."""

    name = "snapcopy"

    def __init__(self, backend: Backend, table: str, cap: int, *, subscription: str = SUBSCRIPTION) -> None:
        settings = load_settings(
            {
                "COPY_TARGET_REGIONS": TARGET_REGION,
                "COPY_SOURCE_SCOPES": f"/subscriptions/{subscription}",
                "STATE_CONNECTION_STRING": backend.connection_string,
                "STATE_TABLE_NAME": table,
                "ARM_ENDPOINT": backend.arm_url,
                "ARM_CA_BUNDLE": backend.ca_path,
                "MAX_COPIES_PER_REGION": str(cap),
            }
        )
        policy = VirtualSleepRetry(backend.clock, **RETRY_SETTINGS)
        self.operations = TableOperations()
        self.replicator: Replicator = runtime.build(
            settings,
            clock=backend.clock.now,
            arm_retry={"retry_policy": policy},
            client_options=CLIENT_OPTIONS,
            table_options=self.operations.options(),
            credential=EmulatorCredential(),
        )
        # a second view of the table for the harness's own reads (not counted against snapcopy)
        self.checker = StateStore.from_connection_string(backend.connection_string, table)
        self.host = FunctionHost()

    def _installed(self) -> FunctionHost:
        runtime.install(self.replicator)
        return self.host

    def deliver(self, event: dict[str, Any]) -> None:
        self._installed().deliver_event(event)

    def tick(self) -> None:
        self._installed().run_timer()

    def sweep(self) -> None:
        self._installed().run_timer(function="sweep_sources")

    def table_operations(self) -> dict[str, int]:
        counter = self.operations
        return {"total": counter.total, **dict(sorted(counter.by_kind.items()))}

    def settled(self) -> bool:
        regions = self.checker.list_regions()
        return all(
            not load.in_flight and not load.waiting for load in (self.checker.load_region(key) for key in regions)
        )


class Naive:
    """The naive baseline behind the same interface."""

    name = "naive"

    def __init__(self, backend: Backend, table: str, cap: int) -> None:
        policy = VirtualSleepRetry(backend.clock, **RETRY_SETTINGS)
        arm = ArmCompute(
            EmulatorCredential(),
            endpoint=backend.arm_url,
            ca_bundle=backend.ca_path,
            client_options={"retry_policy": policy, **CLIENT_OPTIONS},
        )
        self.operations = TableOperations()
        client = TableClient.from_connection_string(
            backend.connection_string, table, **CLIENT_OPTIONS, **self.operations.options()
        )
        self.replicator = NaiveReplicator(client, arm, TARGET_REGION, cap, backend.clock.now)
        self.checker = TableClient.from_connection_string(backend.connection_string, table)

    def deliver(self, event: dict[str, Any]) -> None:
        self.replicator.deliver(event)

    def tick(self) -> None:
        self.replicator.tick()

    def sweep(self) -> None:
        self.replicator.sweep()

    def table_operations(self) -> dict[str, int]:
        counter = self.operations
        return {"total": counter.total, **dict(sorted(counter.by_kind.items()))}

    def settled(self) -> bool:
        return not any(row["State"] in ("queued", "copying") for row in self.checker.list_entities())


@dataclass
class RunResult:
    workload: str
    system: str
    copies_expected: int
    copies_completed: int
    makespan_seconds: float | None
    lower_bound_seconds: float
    lower_bound: dict[str, float]
    chain_handoff: dict[str, float | int | None]
    slot_refill: dict[str, float | int | None]
    arm_requests: dict[str, int]
    table_operations: dict[str, int]
    refusals: dict[str, int]
    ticks: int
    tick_seconds_median: float
    wall_seconds: float
    errors: list[str] = field(default_factory=list)
    timeline: dict[str, list[float]] = field(default_factory=dict)

    @property
    def arm_per_copy(self) -> float | None:
        return _per(self.arm_requests.get("total", 0), self.copies_completed)

    @property
    def table_per_copy(self) -> float | None:
        return _per(self.table_operations.get("total", 0), self.copies_completed)

    @property
    def makespan_ratio(self) -> float | None:
        if self.makespan_seconds is None or not self.lower_bound_seconds:
            return None
        return self.makespan_seconds / self.lower_bound_seconds


def _per(total: int, copies: int) -> float | None:
    return round(total / copies, 2) if copies else None


def simulate(
    workload: Workload,
    backend: Backend,
    make_system: Callable[[Backend, str, int], System],
    *,
    on_tick: Callable[[int, int], None] | None = None,
    max_hours: float = 72.0,
) -> RunResult:
    """Run one workload to the end through one system; the figures come from Azure's ledger."""
    world, clock = backend.world, backend.clock
    world.reset()
    config = workload.config
    world.configure(
        cap=config.cap, copy_bytes_per_second=config.copy_bytes_per_second, min_copy_seconds=config.min_copy_seconds
    )
    _align(clock)
    start = clock.now()
    table = new_table(f"bench{workload.name.lower()}")
    system = make_system(backend, table, workload.cap)
    disk_ids = {disk.name: create_disk(world, disk.group, disk.name, disk.size_gb) for disk in workload.disks}
    arrivals = sorted(workload.arrivals, key=lambda item: item.at_seconds)
    created: dict[str, float] = {}  # source snapshot id (lower) -> seconds after start
    disk_of: dict[str, str] = {}
    errors: list[str] = []
    tick_walls: list[float] = []
    began = time.perf_counter()
    expected = len(arrivals)
    last_finish: datetime | None = None
    ticks, index = 0, 0

    def deliver() -> None:
        for event in world.events(drain=True):
            try:
                system.deliver(event)
            except Exception as error:  # Event Grid would redeliver; the bench notes it
                errors.append(f"event {event.get('subject', '')}: {error}")

    while True:
        next_tick = at(start, (ticks + 1) * POLL_SECONDS)
        while index < len(arrivals) and at(start, arrivals[index].at_seconds) <= next_tick:
            arrival = arrivals[index]
            _advance_to(clock, at(start, arrival.at_seconds))
            snapshot_id = take_snapshot(world, disk_ids[arrival.disk.name], arrival.disk.group, arrival.name)
            created[snapshot_id.lower()] = arrival.at_seconds
            disk_of[snapshot_id.lower()] = arrival.disk.name
            deliver()
            index += 1
        _advance_to(clock, next_tick)
        ticks += 1
        deliver()
        tick_began = time.perf_counter()
        try:
            system.tick()
        except Exception as error:
            errors.append(f"tick {ticks}: {error}")
        tick_walls.append(time.perf_counter() - tick_began)
        deliver()
        elapsed = ticks * POLL_SECONDS
        if elapsed % SWEEP_SECONDS == SWEEP_OFFSET:
            try:
                system.sweep()
            except Exception as error:
                errors.append(f"sweep at {elapsed:.0f} s: {error}")
            deliver()
        if on_tick is not None:
            on_tick(ticks, world.counters()["copies_started"])
        if last_finish is None and world.counters()["copies_started"] >= expected:
            last_finish = max(copy.finishes_at for copy in world.ledger())
        if last_finish is not None and clock.now() >= last_finish and system.settled():
            break
        if elapsed > max_hours * 3600:
            errors.append(f"stopped after {max_hours} simulated hours with copies unfinished")
            break

    wall = time.perf_counter() - began
    records = _records(world, start, created, disk_of)
    finished = [record.finished for record in records if record.finished is not None]
    completed = sum(1 for record in records if record.finished is not None)
    makespan = max(finished) if completed == expected and finished else None
    bound = workload.lower_bound()
    counters = world.counters()
    requests = dict(counters["requests"])
    result = RunResult(
        workload=workload.name,
        system=system.name,
        copies_expected=expected,
        copies_completed=completed,
        makespan_seconds=round(makespan, 1) if makespan is not None else None,
        lower_bound_seconds=round(bound.seconds, 1),
        lower_bound={
            "longest_chain_seconds": round(bound.longest_chain, 1),
            "capacity_seconds": round(bound.capacity, 1),
            "total_copy_seconds": round(bound.total_copy_seconds, 1),
        },
        chain_handoff=spread(chain_handoffs(records)),
        slot_refill=spread(slot_refills(records)),
        arm_requests={"total": sum(requests.values()), **requests},
        table_operations=system.table_operations(),
        refusals={name: count for name, count in counters["refusals"].items() if count},
        ticks=ticks,
        tick_seconds_median=round(statistics.median(tick_walls), 4) if tick_walls else 0.0,
        wall_seconds=round(wall, 1),
        errors=errors[:20],
        timeline=timeline(
            records, end=(makespan or ticks * POLL_SECONDS), step=max(POLL_SECONDS, (makespan or 0) / 240)
        ),
    )
    drop_table(backend, table)
    return result


def _records(world: World, start: datetime, created: dict[str, float], disk_of: dict[str, str]) -> list[CopyRecord]:
    """One record per source snapshot: its first successful copy, or its last attempt."""
    now = world.clock.now()
    by_source: dict[str, Any] = {}
    for copy in world.ledger():
        key = copy.source_id.lower()
        if key not in created:
            continue
        current = by_source.get(key)
        if current is None or current.state(now) != "succeeded":
            by_source[key] = copy
    records = []
    for key, made in created.items():
        found = by_source.get(key)
        if found is None:
            records.append(CopyRecord(disk_of[key], made, None, None, 0.0))
            continue
        done = found.state(now) == "succeeded"
        records.append(
            CopyRecord(
                disk_of[key],
                made,
                seconds_since(start, found.started_at),
                seconds_since(start, found.finishes_at) if done else None,
                found.duration_seconds,
            )
        )
    return records


def _align(clock: VirtualClock) -> None:
    """Start on a whole minute, as a timer schedule would see it."""
    now = clock.now()
    clock.advance(60 - now.second - now.microsecond / 1e6 if now.second or now.microsecond else 0)


def _advance_to(clock: VirtualClock, moment: datetime) -> None:
    gap = (moment - clock.now()).total_seconds()
    if gap > 0:
        clock.advance(gap)


def create_disk(world: World, group: str, name: str, size_gb: int, *, subscription: str = SUBSCRIPTION) -> str:
    disk_id = f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}"
    body = {"location": SOURCE_REGION, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size_gb}}
    world.put_disk(parse_resource_id(disk_id, "id"), body, RequestInfo("PUT"))
    return disk_id


def take_snapshot(world: World, disk_id: str, group: str, name: str, *, subscription: str = SUBSCRIPTION) -> str:
    """The user's backup job takes a snapshot (straight into the emulator: not counted as ours)."""
    snapshot_id = f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/snapshots/{name}"
    body = {
        "location": SOURCE_REGION,
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": disk_id}, "incremental": True},
    }
    world.put_snapshot(parse_resource_id(snapshot_id, "id"), body, RequestInfo("PUT"))
    return snapshot_id


def make_snapcopy(backend: Backend, table: str, cap: int) -> System:
    return Snapcopy(backend, table, cap)


def make_naive(backend: Backend, table: str, cap: int) -> System:
    return Naive(backend, table, cap)
