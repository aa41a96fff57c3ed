"""The chain partitions: each chain's head and its jobs, in creation order; and the chains' directory.

It must not decide what a chain does next: it loads and saves rows, with ETags and batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.model import ChainHead, ChainKey, CopyState, Job
from shared.notices import Notice
from shared.tables.codec import (
    MissingETag,
    chain_entity,
    conditional,
    head_entity,
    head_from,
    job_entity,
    job_from,
    job_update,
    moment,
    result_etag,
)
from shared.tables.gateway import BATCH_LIMIT, Conflict
from shared.tables.keys import CHAIN_HIGH, CHAIN_LOW, CHAINS, HEAD, JOB_PREFIX
from shared.tables.outbox import OutboxRows


class ChainRows(OutboxRows):
    """Chain heads and jobs (`chain|<family>|<region>`), and the `chains` directory.

    Every job write goes through `_announce`: the notices a transition owes are written
    in the same batch as the job (shared/tables/outbox.py)."""

    def load_head(self, chain: ChainKey) -> ChainHead | None:
        entity = self._get(chain.partition, HEAD)
        return None if entity is None else head_from(chain, entity)

    def create_head(self, head: ChainHead) -> ChainHead:
        """Insert the head, or return the one a concurrent handler created first.

        The chain's directory row is written first, so a crash in between leaves at worst
        a directory row without a head (which readers skip), never a head nobody lists."""
        self._upsert(chain_entity(head))
        try:
            etag = self._create(head_entity(head), f"create head {head.key.partition}")
        except Conflict:
            loaded = self.load_head(head.key)
            if loaded is None:  # created and gone again meanwhile: the caller reads again
                raise Conflict(f"head {head.key.partition} changed while it was created") from None
            return loaded
        return replace(head, etag=etag)

    def save_head(self, head: ChainHead, notices: Sequence[Notice] = ()) -> ChainHead:
        """Write a head we read (ETag-conditional), with its notices in the same batch (when
        notices are recorded at all); the head as saved, with its new ETag."""
        if head.etag is None:
            raise MissingETag(f"head {head.key.partition}: a conditional write needs the row's ETag, and none was read")
        what = f"head {head.key.partition}"
        return replace(head, etag=self._write_noticed(head_entity(head), head.etag, head.key.partition, notices, what))

    def load_pending(self, head: ChainHead) -> list[Job]:
        """The chain's jobs newer than its order watermark: the queue and what is copying."""
        # from the started job itself (it may still be copying) on: one range query
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": head.key.partition, "low": JOB_PREFIX + head.last_started_key, "high": JOB_PREFIX + "\x7f"},
        )
        return [job_from(head.key, row) for row in rows]

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
                head = head_from(chain, row)
            else:
                jobs.append(job_from(chain, row))
        return head, jobs

    def load_job(self, chain: ChainKey, key: str) -> Job | None:
        entity = self._get(chain.partition, JOB_PREFIX + key)
        return None if entity is None else job_from(chain, entity)

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
            {"low": CHAIN_LOW, "high": CHAIN_HIGH, "head": HEAD},
        )
        return [head_from(ChainKey(row["FamilyId"], row["Region"]), row) for row in rows]

    def queued_by_chain(self) -> dict[str, list[tuple[str, datetime | None]]]:
        """Every queued job's key and queue time, by chain partition: one range query
        over the chain partitions that returns only queued rows (the sweep's check for
        queues nothing would start)."""
        rows = self._query(
            "PartitionKey ge @low and PartitionKey lt @high and State eq @state",
            {"low": CHAIN_LOW, "high": CHAIN_HIGH, "state": CopyState.QUEUED.value},
            select=["PartitionKey", "RowKey", "QueuedAt"],
        )
        queued: dict[str, list[tuple[str, datetime | None]]] = {}
        for row in rows:
            key = row["RowKey"]
            if key.startswith(JOB_PREFIX):
                queued.setdefault(row["PartitionKey"], []).append(
                    (key.removeprefix(JOB_PREFIX), moment(row.get("QueuedAt")))
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
            yield job_from(chain, row)

    def finished_since(self, chain: ChainKey, since: datetime) -> list[Job]:
        """A chain's jobs that ended at or after `since` (any final state): one query,
        filtered by the service."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high and FinishedAt ge @since",
            {"pk": chain.partition, "low": JOB_PREFIX, "high": JOB_PREFIX + "\x7f", "since": since},
        )
        return [job_from(chain, row) for row in rows]

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
        job, notices = self._announce(job)
        results = self._transact(
            [
                ("create", job_entity(job)),
                ("update", head_entity(head), {"mode": UpdateMode.REPLACE, **conditional(head.etag, "arrival")}),
                *self._outbox(head.key.partition, notices),
            ],
            f"arrival {job.key}",
        )
        self._committed_now(head.key.partition, notices)
        return replace(job, etag=result_etag(results, 0)), replace(head, etag=result_etag(results, 1))

    def add_jobs(self, jobs: Iterable[Job]) -> list[Job]:
        """Insert jobs found by a listing; ones that exist already are left alone (and
        not returned). The inserted jobs back, with their ETags."""
        added = []
        for job in jobs:
            try:
                added.append(self._write_job(replace(job, etag=None)))
            except Conflict:
                continue
        return added

    def save_job(self, job: Job) -> Job:
        """Write a job we read (ETag-conditional); the job as saved, with its new ETag."""
        if job.etag is None:
            raise MissingETag(f"job {job.key}: a conditional write needs the row's ETag, and none was read")
        return self._write_job(job)

    def _write_job(self, job: Job) -> Job:
        """One job (inserted when it has no ETag), with the notices it owes in the same batch."""
        job, notices = self._announce(job)
        etag = self._write_noticed(job_entity(job), job.etag, job.chain.partition, notices, f"job {job.key}")
        return replace(job, etag=etag)

    def save_chain(
        self,
        head: ChainHead,
        jobs: Sequence[Job],
        *,
        overtaken: Sequence[Job] = (),
        also: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """Head and jobs in one batch: all or nothing, conditional on every ETag. `also`:
        more operations of the chain's partition in the same batch (a diff increment's row).

        `overtaken`: queued jobs the head's new watermark has passed, now `skipped`. They
        go in the same batch while it stays within a Table transaction's 100 operations;
        the rest follow in batches of their own, after the atomic part (a crash between
        leaves jobs queued below the watermark, which the sweep skips)."""
        partition = head.key.partition
        operations: list[tuple[Any, ...]] = [
            ("update", head_entity(head), {"mode": UpdateMode.REPLACE, **conditional(head.etag, "chain head")})
        ]
        notices: list[Notice] = []
        for job in jobs:
            self._add_job(operations, notices, job, partition)
        operations.extend(also)
        if len(operations) > BATCH_LIMIT:
            raise ValueError(f"chain {partition}: {len(operations)} rows cannot change in one transaction")
        rest = list(overtaken)
        while rest and self._add_job(operations, notices, rest[0], partition, BATCH_LIMIT):
            rest.pop(0)
        self._transact(operations, f"chain {partition}")
        self._committed_now(partition, notices)
        while rest:
            operations, notices = [], []
            while rest and self._add_job(operations, notices, rest[0], partition, BATCH_LIMIT):
                rest.pop(0)
            try:
                self._transact(operations, f"overtaken {partition}")
                self._committed_now(partition, notices)
            except Conflict:
                continue  # changed meanwhile (skipped by another run, cancelled): theirs stands

    def _add_job(
        self, operations: list[tuple[Any, ...]], notices: list[Notice], job: Job, partition: str, limit: int = 0
    ) -> bool:
        """Add a job's write and its notices to a batch; False (nothing added) when they
        would take it past `limit` operations (0: no limit)."""
        job, owed = self._announce(job)
        kept = self._outbox(partition, owed)
        if limit and len(operations) + 1 + len(kept) > limit:
            return False
        operations.append(job_update(job))
        operations.extend(kept)
        notices.extend(owed)
        return True
