"""W3: does a timer tick slow down as the table fills with history?

Two snapcopy deployments (two subscriptions, each with its own table and its own cap)
carry the same in-flight load, `in_flight` copies of `in_flight` disks, over tables that
already hold `small` and `large` rows of completed history: each old copy leaves its job
row in the chain's own partition and two seen-index rows (its source and its copy). Their
ticks run alternately, round after round on the same simulated minute, so both see the
same machine load; the naive baseline (a full-table scan per tick) is measured the same way.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from local.bench.run import (
    SOURCE_REGION,
    TARGET_REGION,
    Naive,
    Snapcopy,
    System,
    create_disk,
    drop_table,
    new_table,
    take_snapshot,
)
from local.bench.workload import COPY_BYTES_PER_SECOND
from local.chaos import Backend
from local.emulator.ids import parse_resource_id
from shared.ids import ResourceGroupId, ResourceId, TargetResourceGroup
from shared.model import ChainHead, ChainKey, CopyState, Job, RegionKey, order_key, target_snapshot_id
from shared.store import IndexEntry, StateStore, chain_entity, head_entity, index_entity, job_entity

# a fleet spread over resource groups, as in W1: the seen-index has a partition per group
GROUPS = tuple(f"rg-history-{index:02d}" for index in range(20))
SEEDER = Path(__file__).with_name("seed_table.mjs")
NAIVE_ROUNDS = 3  # the baseline's ticks timed (at most): a median of three
SUBSCRIPTIONS = {
    ("snapcopy", "small"): "1a1a1a1a-0000-4000-8000-000000000001",
    ("snapcopy", "large"): "1a1a1a1a-0000-4000-8000-000000000002",
    ("naive", "small"): "1a1a1a1a-0000-4000-8000-000000000003",
    ("naive", "large"): "1a1a1a1a-0000-4000-8000-000000000004",
}


def history_scale(
    backend: Backend,
    *,
    small: int,
    large: int,
    in_flight: int,
    rounds: int,
    seeded: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Seed the four deployments, then time their ticks; `seeded` is called in between
    (the benchmark seeds while W1 and W2 run, and times once they are done)."""
    world, clock = backend.world, backend.clock
    world.reset()
    # copies of 1 TiB disks take hours: the load stays in flight while the ticks are timed
    world.configure(cap=in_flight, copy_bytes_per_second=COPY_BYTES_PER_SECOND, min_copy_seconds=60.0)
    systems: dict[tuple[str, str], System] = {}
    rows: dict[tuple[str, str], int] = {}
    tables: list[str] = []
    seeding = time.perf_counter()
    for (kind, size), subscription in SUBSCRIPTIONS.items():
        table = new_table(f"hist{kind[:5]}{size}")
        tables.append(table)
        history = small if size == "small" else large
        system: System
        if kind == "snapcopy":
            system = Snapcopy(backend, table, in_flight, subscription=subscription)
        else:
            system = Naive(backend, table, in_flight)
        systems[(kind, size)] = system
        disks = [
            create_disk(world, _group(index), f"vm{index:03d}-data", 1024, subscription=subscription)
            for index in range(in_flight)
        ]
        snapshots = [
            take_snapshot(world, disk, _group(index), f"{disk.rsplit('/', 1)[-1]}-now", subscription=subscription)
            for index, disk in enumerate(disks)
        ]
        entities = _history(backend, kind, snapshots, history, subscription)
        rows[(kind, size)] = seed_table(backend.connection_string, table, entities)
        if kind == "snapcopy":  # the timer walks the regions it was told about
            StateStore.from_connection_string(backend.connection_string, table).register_region(
                RegionKey(subscription, TARGET_REGION)
            )
        for event in world.events(drain=True):
            system.deliver(event)
    seeded_seconds = time.perf_counter() - seeding
    if seeded is not None:
        seeded()

    walls: dict[tuple[str, str], list[float]] = defaultdict(list)
    operations: dict[tuple[str, str], list[int]] = defaultdict(list)
    order = list(systems)
    for round_ in range(rounds):
        clock.advance(60)
        for key in order if round_ % 2 == 0 else reversed(order):
            if key[0] == "naive" and round_ >= NAIVE_ROUNDS:
                continue  # its ticks take seconds at 100k rows, and vary little
            before = systems[key].table_operations()["total"]
            began = time.perf_counter()
            systems[key].tick()
            walls[key].append(time.perf_counter() - began)
            operations[key].append(systems[key].table_operations()["total"] - before)
        world.events(drain=True)  # nothing new is taken; copies' own writes are not needed here
    in_flight_now = sum(1 for copy in world.ledger() if copy.in_flight(clock.now()))
    for table in tables:
        drop_table(backend, table)

    def median(key: tuple[str, str]) -> float:
        return statistics.median(walls[key])

    result: dict[str, Any] = {
        "in_flight_per_deployment": in_flight,
        "in_flight_total_at_end": in_flight_now,
        "rounds": rounds,
        "rounds_naive": min(rounds, NAIVE_ROUNDS),
        "history_rows": {f"{kind}/{size}": count for (kind, size), count in rows.items()},
        "seeding_seconds": round(seeded_seconds, 1),
        "tick_seconds_median": {f"{kind}/{size}": round(median((kind, size)), 4) for kind, size in systems},
        "tick_seconds": {
            f"{kind}/{size}": [round(value, 4) for value in walls[(kind, size)]] for kind, size in systems
        },
        # requests per tick (a query page is one): what Azure's latency follows; Azurite
        # also scans the whole table for every query, which the wall times include
        "table_operations_per_tick": {
            f"{kind}/{size}": statistics.median(operations[(kind, size)]) for kind, size in systems
        },
    }
    result["ratio_snapcopy"] = round(median(("snapcopy", "large")) / median(("snapcopy", "small")), 2)
    result["ratio_naive"] = round(median(("naive", "large")) / median(("naive", "small")), 2)
    return result


def _history(backend: Backend, kind: str, snapshots: list[str], rows: int, subscription: str) -> list[dict[str, Any]]:
    """`rows` rows of completed copies, spread over the disks' chains, older than today."""
    now = backend.clock.now()
    per_copy = 3 if kind == "snapcopy" else 1
    copies = max(rows // per_copy, 0)
    entities: list[dict[str, Any]] = []
    heads: dict[str, tuple[ChainKey, Job]] = {}
    families = {snapshot: _family(backend, snapshot) for snapshot in snapshots}
    for index in range(copies):
        snapshot = snapshots[index % len(snapshots)]
        age = index // len(snapshots) + 1
        group = ResourceId.parse(snapshot).resource_group
        source = ResourceId(subscription, group, "snapshots", f"{snapshot.rsplit('/', 1)[-1][:-4]}-h{age:05d}")
        created = now - timedelta(hours=age)
        chain = ChainKey(families[snapshot], TARGET_REGION)
        target = target_snapshot_id(source, TARGET_REGION, TargetResourceGroup().for_source(subscription, group))
        if kind == "naive":
            entities.append(
                {
                    "PartitionKey": chain.family_id,
                    "RowKey": order_key(created, source.name),
                    "SourceId": str(source),
                    "TargetId": str(target),
                    "State": "succeeded",
                }
            )
            continue
        job = Job(
            chain=chain,
            source_id=source,
            source_time=created,
            target_id=target,
            state=CopyState.SUCCEEDED,
            queued_at=created,
            started_at=created,
            finished_at=created + timedelta(minutes=20),
            percent=100.0,
        )
        entities.append(job_entity(job))
        entities.append(index_entity(IndexEntry(source, "source", regions=TARGET_REGION, recorded_at=created)))
        entities.append(index_entity(IndexEntry(target, "copy", reason=f"copy of {source}", recorded_at=created)))
        if snapshot not in heads or heads[snapshot][1].key < job.key:
            heads[snapshot] = (chain, job)
    if kind == "snapcopy":
        entities.extend(_heads(heads.values(), subscription))
    return entities


def _heads(newest: Iterable[tuple[ChainKey, Job]], subscription: str) -> list[dict[str, Any]]:
    """Chain heads that remember the history: the newest old copy started and completed."""
    heads: list[dict[str, Any]] = []
    for chain, job in newest:
        group = ResourceGroupId(subscription, job.source_id.resource_group)
        head = ChainHead(
            key=chain,
            source_groups=(group,),
            target_group=group,
            last_started_key=job.key,
            last_completed_key=job.key,
            last_completed_source=str(job.source_id),
            last_completed_at=job.finished_at,
            listed_through=job.source_time,
        )
        heads.extend((chain_entity(head), head_entity(head)))
    return heads


def _group(index: int) -> str:
    return GROUPS[index % len(GROUPS)]


def _family(backend: Backend, snapshot_id: str) -> str:
    resource = backend.world.get(parse_resource_id(snapshot_id, "id"))
    family: str = resource["properties"]["incrementalSnapshotFamilyId"]
    return family.lower()


def seed_table(connection_string: str, table: str, entities: Sequence[Mapping[str, Any]]) -> int:
    """Insert rows into a (new) table with the Tables SDK for JavaScript: transactions of up
    to 100 rows of one partition, as the Python SDK would send, at a tenth of its CPU (which
    goes into building each transaction with the `email` package). Returns the rows written."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: the benchmark seeds W3's history with it (Azurite needs it too)")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as rows:
        for entity in entities:
            rows.write(json.dumps(node_entity(entity), separators=(",", ":")))
            rows.write("\n")
        rows.flush()
        done = subprocess.run(
            [node, str(SEEDER), connection_string, table, rows.name], capture_output=True, text=True, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"seeding {table} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    written = int(json.loads(done.stdout.strip().splitlines()[-1])["rows"])
    if written != len(entities):
        raise RuntimeError(f"seeding {table}: {written} of {len(entities)} rows written")
    return written


def node_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """An entity as the JavaScript SDK takes it, typed as the Python SDK would send it:
    datetimes and floats say their Edm type, ints are Int32, None is left out."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        key = {"PartitionKey": "partitionKey", "RowKey": "rowKey"}.get(name, name)
        if value is None:
            continue
        if isinstance(value, bool | str) or (isinstance(value, int) and -(2**31) <= value < 2**31):
            out[key] = value
        elif isinstance(value, float):
            out[key] = {"type": "Double", "value": value}
        elif isinstance(value, datetime):
            stamp = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out[key] = {"type": "DateTime", "value": stamp}
        else:
            raise TypeError(f"{name}: {type(value).__name__} values are not seeded")
    return out


__all__ = ["SOURCE_REGION", "history_scale"]
