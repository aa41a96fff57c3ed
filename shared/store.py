"""Replication state in Azure Table Storage: chains, jobs, region slots, the seen-index.

One table, four kinds of partition (DESIGN.md §3):

| PartitionKey                 | RowKey              | holds                                          |
|------------------------------|---------------------|------------------------------------------------|
| `chain|<family>|<region>`    | `head`              | order watermark, what is copying, last done    |
|                              | `job|<time>|<name>` | one source snapshot's copy, sorted by creation |
| `region|<sub>|<region>`      | `counter`           | copies in flight (Azure's cap counts these)    |
|                              | `flight|<family>`   | the one copy of that family in flight          |
|                              | `wait|<family>`     | a chain with queued work waiting for a slot    |
| `regions`                    | `<sub>|<region>`    | the region partitions the timer visits         |
| `chains`                     | `<family>|<region>` | every chain, with its disk (status, filters)   |
| `snap|<sub>:<rg>`            | `<name>`            | snapshots already handled (dedupes events)     |

Every change is an ETag-conditional write or a same-partition batch, so concurrent
handlers never lose an update: the loser gets `Conflict` and re-reads.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.ids import ResourceGroupId, ResourceId, parse_resource_group
from shared.model import (
    ChainHead,
    ChainKey,
    CopyError,
    CopyState,
    InFlight,
    Job,
    Phase,
    RegionKey,
    RegionLoad,
    Waiting,
)

log = logging.getLogger(__name__)

HEAD = "head"
COUNTER = "counter"
JOB_PREFIX = "job|"
FLIGHT_PREFIX = "flight|"
WAIT_PREFIX = "wait|"
DIRECTORY = "regions"
POISON = "poison"
_SAFE_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
CHAINS = "chains"
_CHAIN_LOW, _CHAIN_HIGH = "chain|", "chain}"  # every chain partition, and nothing else
_BATCH_LIMIT = 100  # operations in one Table transaction (Azure's limit)
CONFLICT_PAUSE = 0.02  # seconds: the first pause after a lost ETag race (then doubling, jittered)
CONFLICT_PAUSE_MAX = 0.5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Entity = dict[str, Any]


class Conflict(Exception):
    """A conditional write lost a race (ETag changed, or the row already exists)."""


class CapacityExhausted(Exception):
    """The region partition has no free slot."""


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


class OperationCounter:
    """Counts Table operations (benchmarks report them per completed copy)."""

    def __init__(self) -> None:
        self.total = 0
        self.by_kind: dict[str, int] = {}

    def add(self, kind: str, count: int = 1) -> None:
        self.total += count
        self.by_kind[kind] = self.by_kind.get(kind, 0) + count


class MissingETag(ValueError):
    """A write that must be conditional was asked for without the ETag it is conditional on:
    a bug, refused loudly rather than turned into an unconditional overwrite."""


def _conditional(etag: str | None, what: str) -> dict[str, Any]:
    if not etag:
        raise MissingETag(f"{what}: a conditional write needs the row's ETag, and none was read")
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def _etag(entity: Any) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    value = metadata.get("etag")
    return str(value) if value else None


def _result_etag(results: list[Any], index: int) -> str | None:
    value = results[index].get("etag") if len(results) > index else None
    return str(value) if value else None


def _dt(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


class StateStore:
    """The repository over one Table; created once per process and shared."""

    def __init__(self, table: TableClient, *, counter: OperationCounter | None = None) -> None:
        self._table = table
        self._ready = False
        self._registered: set[str] = set()  # region partitions this process wrote to the directory
        self.operations = counter or OperationCounter()

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str, **client_options: Any) -> StateStore:
        service = TableServiceClient.from_connection_string(connection_string, **client_options)
        return cls(service.get_table_client(table_name))

    @classmethod
    def from_endpoint(cls, endpoint: str, table_name: str, credential: Any, **client_options: Any) -> StateStore:
        service = TableServiceClient(endpoint=endpoint, credential=credential, **client_options)
        return cls(service.get_table_client(table_name))

    # --- plumbing --------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the table on first use (idempotent, once per process)."""
        if self._ready:
            return
        try:
            self._table.create_table()
            self.operations.add("create_table")
        except ResourceExistsError:
            pass
        self._ready = True

    def _get(self, partition: str, row: str) -> Any | None:
        self.ensure_table()
        self.operations.add("get")
        try:
            return self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    def _query(self, query_filter: str, parameters: dict[str, str], select: list[str] | None = None) -> Iterator[Any]:
        """Parameterised queries only: the SDK escapes every value (no OData injection).

        Counted per page: each page is one request (and one billed transaction)."""
        self.ensure_table()
        pages = self._table.query_entities(query_filter, parameters=parameters, select=select).by_page()
        for page in pages:
            self.operations.add("query")
            yield from page

    def _transact(self, operations: list[tuple[Any, ...]], what: str) -> list[Any]:
        """Submit same-partition operations as one atomic transaction; per-op metadata back.

        Never split: a batch over Azure's 100 operations is a bug of the caller, refused."""
        if len(operations) > _BATCH_LIMIT:
            raise ValueError(f"{what}: {len(operations)} operations exceed a transaction's {_BATCH_LIMIT}")
        self.ensure_table()
        self.operations.add("batch")
        try:
            return list(self._table.submit_transaction(operations))  # type: ignore[arg-type]
        except TableTransactionError as error:
            if error.status_code in (404, 409, 412):
                raise Conflict(f"{what}: {error.status_code} {error.message}") from error
            raise

    def _update(self, entity: Entity, etag: str | None, what: str) -> str | None:
        """Replace a row we read, if unchanged (ETag); its new ETag back, or `Conflict`."""
        self.ensure_table()
        self.operations.add("update")
        try:
            metadata = self._table.update_entity(entity, mode=UpdateMode.REPLACE, **_conditional(etag, what))
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise Conflict(what) from error
        except HttpResponseError as error:
            if error.status_code == 412:
                raise Conflict(what) from error
            raise
        new_etag = (metadata or {}).get("etag")
        return str(new_etag) if new_etag else None

    def _create(self, entity: Entity, what: str) -> str | None:
        """Insert a row that must not exist yet; its ETag back, or `Conflict`."""
        self.ensure_table()
        self.operations.add("create")
        try:
            metadata = self._table.create_entity(entity)
        except ResourceExistsError as error:
            raise Conflict(what) from error
        etag = (metadata or {}).get("etag")
        return str(etag) if etag else None

    # --- the seen-index --------------------------------------------------------------

    def get_index(self, snapshot_id: ResourceId) -> IndexEntry | None:
        entity = self._get(_index_partition(snapshot_id), snapshot_id.name.lower())
        return None if entity is None else _index_from(entity)

    def index_of_group(self, group: ResourceGroupId) -> dict[str, IndexEntry]:
        """Every seen-index row of one resource group, by snapshot name (lower-case):
        one partition query, so the sweep need not look chain by chain."""
        rows = self._query(
            "PartitionKey eq @pk", {"pk": f"snap|{group.subscription.lower()}:{group.resource_group.lower()}"}
        )
        return {row["RowKey"]: _index_from(row) for row in rows}

    def put_index(self, entry: IndexEntry) -> None:
        self.ensure_table()
        self.operations.add("upsert")
        self._table.upsert_entity(index_entity(entry), mode=UpdateMode.REPLACE)

    # --- chains ----------------------------------------------------------------------

    def load_head(self, chain: ChainKey) -> ChainHead | None:
        entity = self._get(chain.partition, HEAD)
        return None if entity is None else _head_from(chain, entity)

    def create_head(self, head: ChainHead) -> ChainHead:
        """Insert the head, or return the one a concurrent handler created first.

        The chain's directory row is written first, so a crash in between leaves at worst
        a directory row without a head (which readers skip), never a head nobody lists."""
        self.ensure_table()
        self.operations.add("upsert")
        self._table.upsert_entity(chain_entity(head), mode=UpdateMode.REPLACE)
        try:
            etag = self._create(head_entity(head), f"create head {head.key.partition}")
        except Conflict:
            loaded = self.load_head(head.key)
            assert loaded is not None
            return loaded
        return replace(head, etag=etag)

    def save_head(self, head: ChainHead) -> ChainHead:
        """Write a head we read (ETag-conditional); the head as saved, with its new ETag."""
        etag = self._update(head_entity(head), head.etag, f"head {head.key.partition}")
        return replace(head, etag=etag)

    def load_pending(self, head: ChainHead) -> list[Job]:
        """The chain's jobs newer than its order watermark: the queue and what is copying."""
        # from the started job itself (it may still be copying) on: one range query
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": head.key.partition, "low": JOB_PREFIX + head.last_started_key, "high": JOB_PREFIX + "\x7f"},
        )
        return [_job_from(head.key, row) for row in rows]

    def load_chain_from(self, chain: ChainKey, low: str) -> tuple[ChainHead | None, list[Job]]:
        """The head and the chain's jobs from `low` on, in one query (a finish knows its
        job's key, which no job it needs is older than: one read instead of three)."""
        return self._head_and_jobs(
            chain,
            # spaces around the parentheses: the SDK finds @names by splitting on spaces
            "PartitionKey eq @pk and ( RowKey eq @head or ( RowKey ge @low and RowKey lt @high ) )",
            {"pk": chain.partition, "head": HEAD, "low": JOB_PREFIX + low, "high": JOB_PREFIX + "\x7f"},
        )

    def load_queue(self, chain: ChainKey, low: str) -> tuple[ChainHead | None, list[Job]]:
        """The head and the jobs from its watermark on (what `load_pending` gives), read
        from `low` on: one query when `low` is at or below the watermark, else a second."""
        head, rows = self.load_chain_from(chain, low)
        if head is None:
            return None, []
        if head.last_started_key < low:
            return head, self.load_pending(head)
        return head, [job for job in rows if job.key >= head.last_started_key]

    def load_head_and_job(self, chain: ChainKey, key: str) -> tuple[ChainHead | None, Job | None]:
        """The head and one job, in one query (an arrival needs both)."""
        head, jobs = self._head_and_jobs(
            chain,
            "PartitionKey eq @pk and ( RowKey eq @head or RowKey eq @job )",
            {"pk": chain.partition, "head": HEAD, "job": JOB_PREFIX + key},
        )
        return head, (jobs[0] if jobs else None)

    def _head_and_jobs(
        self, chain: ChainKey, query: str, parameters: dict[str, str]
    ) -> tuple[ChainHead | None, list[Job]]:
        """One query over a chain's partition that returns its head and some jobs."""
        head: ChainHead | None = None
        jobs: list[Job] = []
        for row in self._query(query, parameters):
            if row["RowKey"] == HEAD:
                head = _head_from(chain, row)
            else:
                jobs.append(_job_from(chain, row))
        return head, jobs

    def load_job(self, chain: ChainKey, key: str) -> Job | None:
        entity = self._get(chain.partition, JOB_PREFIX + key)
        return None if entity is None else _job_from(chain, entity)

    def list_chains(self, *, disk_id: str | None = None, region: str | None = None) -> list[ChainKey]:
        """Chains from the directory (one small partition), in partition order; the filters
        are parameters of the query, never text pasted into it."""
        conditions, parameters = ["PartitionKey eq @pk"], {"pk": CHAINS}
        if disk_id is not None:
            conditions.append("DiskKey eq @disk")
            parameters["disk"] = disk_id.lower()
        if region is not None:
            conditions.append("Region eq @region")
            parameters["region"] = region
        rows = self._query(" and ".join(conditions), parameters)
        return sorted((ChainKey(row["FamilyId"], row["Region"]) for row in rows), key=lambda key: key.partition)

    def list_heads(self) -> list[ChainHead]:
        """Every chain head, in partition order: one range query over the chain
        partitions (a page per 1,000 heads), not one read per chain."""
        rows = self._query(
            "PartitionKey ge @low and PartitionKey lt @high and RowKey eq @head",
            {"low": _CHAIN_LOW, "high": _CHAIN_HIGH, "head": HEAD},
        )
        return [_head_from(ChainKey(row["FamilyId"], row["Region"]), row) for row in rows]

    def queued_by_chain(self) -> dict[str, list[tuple[str, datetime | None]]]:
        """Every queued job's key and queue time, by chain partition: one range query
        over the chain partitions that returns only queued rows (the sweep's check for
        queues nothing would start)."""
        rows = self._query(
            "PartitionKey ge @low and PartitionKey lt @high and State eq @state",
            {"low": _CHAIN_LOW, "high": _CHAIN_HIGH, "state": CopyState.QUEUED.value},
            select=["PartitionKey", "RowKey", "QueuedAt"],
        )
        queued: dict[str, list[tuple[str, datetime | None]]] = {}
        for row in rows:
            key = row["RowKey"]
            if key.startswith(JOB_PREFIX):
                queued.setdefault(row["PartitionKey"], []).append(
                    (key.removeprefix(JOB_PREFIX), _dt(row.get("QueuedAt")))
                )
        return queued

    def list_jobs(self, chain: ChainKey) -> list[Job]:
        """Every job of a chain, oldest first (status views and tests; not on hot paths)."""
        return list(self.iter_jobs(chain))

    def iter_jobs(self, chain: ChainKey, *, after: str = "", state: CopyState | None = None) -> Iterator[Job]:
        """A chain's jobs oldest first, lazily (pages are read as the caller consumes them),
        optionally only those after a job key and in one state."""
        conditions = ["PartitionKey eq @pk", "RowKey gt @low", "RowKey lt @high"]
        parameters = {"pk": chain.partition, "low": JOB_PREFIX + after, "high": JOB_PREFIX + "\x7f"}
        if state is not None:
            conditions.append("State eq @state")
            parameters["state"] = state.value
        for row in self._query(" and ".join(conditions), parameters):
            yield _job_from(chain, row)

    def job_keys(self, chain: ChainKey, low: str) -> set[str]:
        """The keys of a chain's jobs from `low` on (keys only: the sweep's comparison)."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": chain.partition, "low": JOB_PREFIX + low, "high": JOB_PREFIX + "\x7f"},
            select=["RowKey"],
        )
        return {row["RowKey"].removeprefix(JOB_PREFIX) for row in rows}

    def add_job_guarded(self, head: ChainHead, job: Job) -> tuple[Job, ChainHead]:
        """Insert a job together with an ETag-conditional touch of its head, in one batch;
        both back as stored (with their new ETags).

        A start commits the head conditionally too, so an arrival and a start serialise:
        either the start sees the new job (and skips it if it is older), or the arrival
        sees the start's watermark. Raises `Conflict` when the head moved, or when the job
        exists already: re-read, retry.
        """
        results = self._transact(
            [
                ("create", job_entity(job)),
                ("update", head_entity(head), {"mode": UpdateMode.REPLACE, **_conditional(head.etag, "arrival")}),
            ],
            f"arrival {job.key}",
        )
        return replace(job, etag=_result_etag(results, 0)), replace(head, etag=_result_etag(results, 1))

    def add_jobs(self, jobs: Iterable[Job]) -> list[Job]:
        """Insert jobs found by a listing; ones that exist already are left alone (and
        not returned). The inserted jobs back, with their ETags."""
        added = []
        for job in jobs:
            try:
                added.append(replace(job, etag=self._create(job_entity(job), f"job {job.key}")))
            except Conflict:
                continue
        return added

    def save_job(self, job: Job) -> Job:
        """Write a job we read (ETag-conditional); the job as saved, with its new ETag."""
        return replace(job, etag=self._update(job_entity(job), job.etag, f"job {job.key}"))

    def save_chain(self, head: ChainHead, jobs: Sequence[Job], *, overtaken: Sequence[Job] = ()) -> None:
        """Head and jobs in one batch: all or nothing, conditional on every ETag.

        `overtaken`: queued jobs the head's new watermark has passed, now `skipped`. They
        go in the same batch while it stays within a Table transaction's 100 operations;
        the rest follow in batches of their own, after the atomic part (a crash between
        leaves jobs queued below the watermark, which the sweep skips)."""
        room = _BATCH_LIMIT - 1 - len(jobs)
        if room < 0:
            raise ValueError(f"chain {head.key.partition}: {len(jobs) + 1} rows cannot change in one transaction")
        operations = [
            ("update", head_entity(head), {"mode": UpdateMode.REPLACE, **_conditional(head.etag, "chain head")}),
            *(_job_update(job) for job in (*jobs, *overtaken[:room])),
        ]
        self._transact(operations, f"chain {head.key.partition}")
        rest = overtaken[room:]
        for start in range(0, len(rest), _BATCH_LIMIT):
            try:
                self._transact(
                    [_job_update(job) for job in rest[start : start + _BATCH_LIMIT]], f"overtaken {head.key.partition}"
                )
            except Conflict:
                continue  # changed meanwhile (skipped by another run, cancelled): theirs stands

    # --- regions ---------------------------------------------------------------------

    def register_region(self, region: RegionKey) -> None:
        """Record a region partition in the directory the timer walks (once per process:
        the row is never removed, and every new chain would write it again)."""
        if region.partition in self._registered:
            return
        self.ensure_table()
        self.operations.add("upsert")
        self._table.upsert_entity(
            {
                "PartitionKey": DIRECTORY,
                "RowKey": f"{region.subscription.lower()}|{region.region}",
                "Subscription": region.subscription,
                "Region": region.region,
            },
            mode=UpdateMode.MERGE,
        )
        self._registered.add(region.partition)

    def list_regions(self) -> list[RegionKey]:
        rows = self._query("PartitionKey eq @pk", {"pk": DIRECTORY})
        return sorted((RegionKey(row["Subscription"], row["Region"]) for row in rows), key=lambda key: key.partition)

    def load_region(self, region: RegionKey) -> RegionLoad:
        """One partition query: the counter, the flights and the waiting chains."""
        return self._region_rows(region, "PartitionKey eq @pk", {"pk": region.partition})

    def load_flights(self, region: RegionKey) -> RegionLoad:
        """The counter and the copies in flight, without the waiting chains (of which a
        backlog may hold thousands): what polling and a full region need."""
        return self._region_rows(
            region,
            "PartitionKey eq @pk and ( RowKey eq @counter or ( RowKey ge @low and RowKey lt @high ) )",
            {"pk": region.partition, "counter": COUNTER, "low": FLIGHT_PREFIX, "high": FLIGHT_PREFIX[:-1] + "}"},
        )

    def _region_rows(self, region: RegionKey, query: str, parameters: dict[str, str]) -> RegionLoad:
        count, etag = 0, None
        flights: list[InFlight] = []
        waiting: list[Waiting] = []
        for row in self._query(query, parameters):
            key = row["RowKey"]
            if key == COUNTER:
                count, etag = int(row.get("InFlight", 0)), _etag(row)
            elif key.startswith(FLIGHT_PREFIX):
                flights.append(_flight_from(region, row))
            elif key.startswith(WAIT_PREFIX):
                waiting.append(_waiting_from(region, ChainKey(row["FamilyId"], region.region), row))
        return RegionLoad(region, count, tuple(flights), tuple(waiting), etag)

    def reserve_slot(self, load: RegionLoad, flight: InFlight, cap: int) -> RegionLoad:
        """Take one slot: counter + 1 and the family's flight row, atomically.

        Fails with `CapacityExhausted` at the cap and with `Conflict` if the counter moved
        or the family already holds a slot (the one-in-flight rule, kept by the table).
        """
        if load.in_flight_count >= cap:
            raise CapacityExhausted(f"{load.key.partition}: {load.in_flight_count}/{cap} copies in flight")
        counter = _counter_entity(load.key, load.in_flight_count + 1)
        if load.counter_etag is None:
            first: tuple[Any, ...] = ("create", counter)
        else:
            first = ("update", counter, {"mode": UpdateMode.REPLACE, **_conditional(load.counter_etag, "counter")})
        results = self._transact([first, ("create", _flight_entity(flight))], f"reserve {flight.chain.partition}")
        return replace(
            load,
            in_flight_count=load.in_flight_count + 1,
            in_flight=(*load.in_flight, replace(flight, etag=_result_etag(results, 1))),
            counter_etag=_result_etag(results, 0),
        )

    def correct_counter(self, load: RegionLoad) -> None:
        """Set the slot counter to the number of flight rows it must equal (ETag-conditional)."""
        counter = _counter_entity(load.key, len(load.in_flight))
        if load.counter_etag is None:  # no counter row at all: the flights it should count exist
            self._create(counter, f"counter {load.key.partition}")
            return
        self._update(counter, load.counter_etag, f"counter {load.key.partition}")

    def release_slot(
        self,
        load: RegionLoad,
        flight: InFlight,
        *,
        wait: Waiting | None = None,
        drop: Waiting | None = None,
    ) -> None:
        """Give a slot back: counter - 1 and the flight row deleted, atomically; in the
        same batch, the chain's wait marker set to `wait` (it has more queued) or
        `drop`ped (unless touched since it was read: then the whole batch conflicts)."""
        counter = _counter_entity(load.key, max(load.in_flight_count - 1, 0))
        operations: list[tuple[Any, ...]] = [
            ("update", counter, {"mode": UpdateMode.REPLACE, **_conditional(load.counter_etag, "counter")}),
            (
                "delete",
                {"PartitionKey": load.key.partition, "RowKey": FLIGHT_PREFIX + flight.chain.family_id},
                _conditional(flight.etag, "flight"),
            ),
        ]
        if wait is not None:
            operations.append(("upsert", _wait_entity(wait), {"mode": UpdateMode.REPLACE}))
        elif drop is not None:
            marker = {"PartitionKey": load.key.partition, "RowKey": WAIT_PREFIX + flight.chain.family_id}
            operations.append(("delete", marker, _conditional(drop.etag, "wait marker")))
        self._transact(operations, f"release {flight.chain.partition}")

    def load_slot(self, region: RegionKey, chain: ChainKey) -> RegionLoad:
        """The region as one chain needs it: the counter, the chain's flight row and its wait
        marker (one query, at most three rows). Starting or finishing one chain's copy needs
        no more, however many chains the region holds."""
        # spaces around the parentheses: the SDK finds @names by splitting on spaces
        return self._region_rows(
            region,
            "PartitionKey eq @pk and ( RowKey eq @counter or RowKey eq @flight or RowKey eq @wait )",
            {
                "pk": region.partition,
                "counter": COUNTER,
                "flight": FLIGHT_PREFIX + chain.family_id,
                "wait": WAIT_PREFIX + chain.family_id,
            },
        )

    def save_flight(self, flight: InFlight) -> InFlight:
        """Write a flight row we read (ETag-conditional): a run that lost the flight to
        another (a restart, a finish) gets `Conflict` and must stop touching it."""
        etag = self._update(_flight_entity(flight), flight.etag, f"flight {flight.chain.partition} changed or is gone")
        return replace(flight, etag=etag)

    def load_flight(self, region: RegionKey, chain: ChainKey) -> InFlight | None:
        entity = self._get(region.partition, FLIGHT_PREFIX + chain.family_id)
        return None if entity is None else _flight_from(region, entity)

    def mark_waiting(
        self,
        region: RegionKey,
        chain: ChainKey,
        since: datetime,
        *,
        from_key: str | None = None,
        next_bytes: int | None = None,
    ) -> None:
        """Say the chain has queued work. A marker already there is only touched: it keeps
        its `since`, `from_key` and `next_bytes` (all about the oldest queued job, which
        starts next), and its ETag changes, so a concurrent `clear_waiting` cannot drop it."""
        entity = _wait_entity(Waiting(region, chain, since, from_key=from_key, next_bytes=next_bytes))
        for _ in range(5):
            try:
                self._create(entity, "wait")
                return
            except Conflict:
                self.operations.add("update")
                touch = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], "Touched": since}
                try:
                    self._table.update_entity(touch, mode=UpdateMode.MERGE)
                    return
                except ResourceNotFoundError:
                    continue  # cleared between our create and our touch: create it again
        raise Conflict(f"wait marker {chain.partition} keeps changing")

    def set_waiting(self, marker: Waiting) -> None:
        """Set the chain's place in line (by its oldest queued job), whatever it was."""
        self.ensure_table()
        self.operations.add("upsert")
        self._table.upsert_entity(_wait_entity(marker), mode=UpdateMode.REPLACE)

    def clear_waiting(self, waiting: Waiting) -> None:
        """Drop the marker unless someone touched it since we read it."""
        self.ensure_table()
        self.operations.add("delete")
        try:
            self._table.delete_entity(
                waiting.region.partition,
                WAIT_PREFIX + waiting.chain.family_id,
                **_conditional(waiting.etag, "wait marker"),
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass
        except HttpResponseError as error:
            if error.status_code != 412:
                raise

    def find_waiting(self, region: RegionKey, chain: ChainKey) -> Waiting | None:
        row = self._get(region.partition, WAIT_PREFIX + chain.family_id)
        if row is None:
            return None
        return _waiting_from(region, chain, row)

    def note_event_failure(self, event_id: str, subject: str, error: str, now: datetime, *, poisoned_at: int) -> int:
        """Count one more failed delivery of an event; returns how many so far. At
        `poisoned_at` the row is marked poisoned (what operators look for)."""
        key = event_id if _SAFE_KEY_RE.fullmatch(event_id) else hashlib.sha256(event_id.encode()).hexdigest()

        def count() -> int:
            row = self._get(POISON, key)
            attempts = (int(row.get("Attempts", 0)) if row is not None else 0) + 1
            entity = {
                "PartitionKey": POISON,
                "RowKey": key,
                "EventId": event_id[:256],
                "Subject": subject[:512],
                "Attempts": attempts,
                "FirstFailedAt": row.get("FirstFailedAt") if row is not None else now,
                "LastFailedAt": now,
                "LastError": error[:1000],
                "Poisoned": attempts >= poisoned_at,
            }
            if row is None:
                self._create(entity, f"poison {key}")
            else:
                self._update(entity, _etag(row), f"poison {key}")
            return attempts

        result: int = retrying(count)
        return result

    def rows(self, partition_prefix: str) -> list[Entity]:
        """Raw rows whose PartitionKey starts with a prefix (diagnostics and tests)."""
        rows = self._query(
            "PartitionKey ge @low and PartitionKey lt @high",
            {"low": partition_prefix, "high": partition_prefix + "\x7f"},
        )
        return [dict(row) for row in rows]


def retrying(action: Callable[[], Any], attempts: int = 5) -> Any:
    """Run a read-decide-write step again when it loses an ETag race, after a short
    random pause that doubles each time (full jitter): racers on a hot row (a region's
    counter) spread out instead of colliding again in lockstep."""
    for attempt in range(attempts):
        try:
            return action()
        except Conflict:
            if attempt == attempts - 1:
                raise
            log.debug("conflict, retrying (%d)", attempt + 1)
            time.sleep(random.uniform(0.0, min(CONFLICT_PAUSE_MAX, CONFLICT_PAUSE * 2**attempt)))
    return None


# --- entity mapping ------------------------------------------------------------------------


def _index_partition(snapshot_id: ResourceId) -> str:
    return f"snap|{snapshot_id.resource_group_key}"


def index_entity(entry: IndexEntry) -> Entity:
    """A seen-index row (public, like `job_entity`: the benchmark writes history with them)."""
    return {
        "PartitionKey": _index_partition(entry.snapshot_id),
        "RowKey": entry.snapshot_id.name.lower(),
        "SnapshotId": str(entry.snapshot_id),
        "Kind": entry.kind,
        "Reason": entry.reason,
        "FamilyId": entry.family_id,
        "Regions": entry.regions,
        "UniqueId": entry.unique_id,
        "RecordedAt": entry.recorded_at,
    }


def _index_from(entity: Any) -> IndexEntry:
    return IndexEntry(
        snapshot_id=ResourceId.parse(entity["SnapshotId"]),
        kind=entity.get("Kind", ""),
        reason=entity.get("Reason", ""),
        family_id=entity.get("FamilyId", ""),
        regions=entity.get("Regions", ""),
        unique_id=entity.get("UniqueId", "") or "",
        recorded_at=_dt(entity.get("RecordedAt")),
    )


def head_entity(head: ChainHead) -> Entity:
    return {
        "PartitionKey": head.key.partition,
        "RowKey": HEAD,
        "FamilyId": head.key.family_id,
        "Region": head.key.region,
        "SourceGroups": ",".join(str(group) for group in head.source_groups),
        "TargetGroup": str(head.target_group),
        "DiskId": head.disk_id,
        "LastStartedKey": head.last_started_key,
        "CopyingKey": head.copying_key,
        "LastCompletedKey": head.last_completed_key,
        "LastCompletedSource": head.last_completed_source,
        "LastCompletedAt": head.last_completed_at,
        # not "ListedThrough": rows before 2026-12 held a listing's time there, which vouches
        # for nothing under today's rule (docs: README, "The replication rules")
        "VouchedThrough": head.listed_through,
    }


def chain_entity(head: ChainHead) -> Entity:
    return {
        "PartitionKey": CHAINS,
        "RowKey": f"{head.key.family_id.lower()}|{head.key.region}",
        "FamilyId": head.key.family_id,
        "Region": head.key.region,
        "DiskId": head.disk_id,
        "DiskKey": head.disk_id.lower(),
    }


def _head_from(chain: ChainKey, entity: Any) -> ChainHead:
    return ChainHead(
        key=chain,
        source_groups=tuple(parse_resource_group(part) for part in entity["SourceGroups"].split(",") if part),
        target_group=parse_resource_group(entity["TargetGroup"]),
        disk_id=entity.get("DiskId", "") or "",
        last_started_key=entity.get("LastStartedKey", "") or "",
        copying_key=entity.get("CopyingKey", "") or "",
        last_completed_key=entity.get("LastCompletedKey", "") or "",
        last_completed_source=entity.get("LastCompletedSource", "") or "",
        last_completed_at=_dt(entity.get("LastCompletedAt")),
        listed_through=_dt(entity.get("VouchedThrough")),
        etag=_etag(entity),
    )


def job_entity(job: Job) -> Entity:
    return {
        "PartitionKey": job.chain.partition,
        "RowKey": JOB_PREFIX + job.key,
        "SourceId": str(job.source_id),
        "SourceTime": job.source_time,
        "SourceUniqueId": job.source_unique_id,
        "TargetId": str(job.target_id),
        "State": job.state.value,
        "SourceReady": job.source_ready,
        "SourcePercent": job.source_percent,
        "SourceCheckedAt": job.source_checked_at,
        "Attempts": job.attempts,
        "NotBefore": job.not_before,
        "QueuedAt": job.queued_at,
        "StartedAt": job.started_at,
        "FinishedAt": job.finished_at,
        "Percent": float(job.percent),
        "ErrorCode": job.error.code if job.error else "",
        "ErrorMessage": job.error.message if job.error else "",
        "Reason": job.reason,
        # a double: exact for any disk size, and no Int64 wrapper to unpack
        "SizeBytes": float(job.size_bytes) if job.size_bytes is not None else None,
    }


def _job_update(job: Job) -> tuple[Any, ...]:
    """A batch operation writing a job: conditional on the ETag it was read with; a job
    never read (no ETag) is inserted, and fails the batch if it exists after all."""
    if job.etag is None:
        return ("create", job_entity(job))
    return ("update", job_entity(job), {"mode": UpdateMode.REPLACE, **_conditional(job.etag, f"job {job.key}")})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _size(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _job_from(chain: ChainKey, entity: Any) -> Job:
    code = entity.get("ErrorCode") or ""
    source_time = _dt(entity.get("SourceTime"))
    assert source_time is not None
    return Job(
        chain=chain,
        source_id=ResourceId.parse(entity["SourceId"]),
        source_time=source_time,
        source_unique_id=entity.get("SourceUniqueId", "") or "",
        target_id=ResourceId.parse(entity["TargetId"]),
        state=CopyState(entity.get("State", "queued")),
        # a queued row from before snapshotAccessState was read: its readiness is a guess,
        # so one GET checks it before any start
        source_ready=bool(entity.get("SourceReady", True))
        and (entity.get("SourceCheckedAt") is not None or entity.get("State", "queued") != "queued"),
        source_percent=_number(entity.get("SourcePercent")),
        source_checked_at=_dt(entity.get("SourceCheckedAt")),
        attempts=int(entity.get("Attempts", 0)),
        not_before=_dt(entity.get("NotBefore")),
        queued_at=_dt(entity.get("QueuedAt")),
        started_at=_dt(entity.get("StartedAt")),
        finished_at=_dt(entity.get("FinishedAt")),
        percent=float(entity.get("Percent", 0.0)),
        error=CopyError(code, entity.get("ErrorMessage", "")) if code else None,
        reason=entity.get("Reason", "") or "",
        etag=_etag(entity),
        size_bytes=_size(entity.get("SizeBytes")),
    )


def _wait_entity(marker: Waiting) -> Entity:
    entity: Entity = {
        "PartitionKey": marker.region.partition,
        "RowKey": WAIT_PREFIX + marker.chain.family_id,
        "FamilyId": marker.chain.family_id,
        "Since": marker.since,
        "Touched": marker.since,
    }
    if marker.from_key is not None:
        entity["From"] = marker.from_key
    if marker.next_bytes is not None:
        entity["NextBytes"] = float(marker.next_bytes)
    return entity


def _waiting_from(region: RegionKey, chain: ChainKey, row: Any) -> Waiting:
    return Waiting(
        region, chain, _dt(row.get("Since")) or _EPOCH, _etag(row), row.get("From"), _size(row.get("NextBytes"))
    )


def _counter_entity(region: RegionKey, count: int) -> Entity:
    return {
        "PartitionKey": region.partition,
        "RowKey": COUNTER,
        "InFlight": count,
        "Subscription": region.subscription,
        "Region": region.region,
    }


def _flight_entity(flight: InFlight) -> Entity:
    return {
        "PartitionKey": flight.region.partition,
        "RowKey": FLIGHT_PREFIX + flight.chain.family_id,
        "FamilyId": flight.chain.family_id,
        "JobKey": flight.job_key,
        "SourceId": str(flight.source_id),
        "TargetId": str(flight.target_id),
        "Phase": flight.phase.value,
        "Attempt": flight.attempt,
        "StartedAt": flight.started_at,
        "Percent": float(flight.percent),
        "ProgressedAt": flight.progressed_at,
        "StuckSince": flight.stuck_since,
        "NextPollAt": flight.next_poll_at,
    }


def _flight_from(region: RegionKey, entity: Any) -> InFlight:
    started = _dt(entity.get("StartedAt"))
    assert started is not None
    return InFlight(
        region=region,
        chain=ChainKey(entity["FamilyId"], region.region),
        job_key=entity["JobKey"],
        source_id=ResourceId.parse(entity["SourceId"]),
        target_id=ResourceId.parse(entity["TargetId"]),
        phase=Phase(entity.get("Phase", "copying")),
        attempt=entity.get("Attempt", "") or "",
        started_at=started,
        percent=float(entity.get("Percent", 0.0)),
        progressed_at=_dt(entity.get("ProgressedAt")),
        stuck_since=_dt(entity.get("StuckSince")),
        next_poll_at=_dt(entity.get("NextPollAt")),
        etag=_etag(entity),
    )
