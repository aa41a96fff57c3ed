"""A diff chain's increments in flight (`inc|<job key>`) and their done chunks
(`chunk|<job key>|<generation>|<index>`), in the chain's partition beside the job.

A done chunk is a row created once: a chunk copied twice records nothing new, and
counting the rows of a generation says whether every chunk of its plan is done.

It must not decide what an increment does next (shared/increment_steps.py does).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.increment_steps import IncrementState
from shared.model import ChainKey, Increment
from shared.tables.codec import EPOCH, Entity, conditional, etag_of, moment
from shared.tables.gateway import Conflict, TableGateway
from shared.tables.keys import CHUNK_PREFIX, INCREMENT_PREFIX, chunk_key


def increment_entity(increment: Increment) -> Entity:
    return {
        "PartitionKey": increment.chain.partition,
        "RowKey": INCREMENT_PREFIX + increment.job_key,
        "State": increment.state.value,
        "Generation": float(increment.generation),  # a clock reading in ms: past Int32
        "Chunks": increment.chunks,
        "ChangedAt": increment.changed_at,
        "SourceSas": increment.source_sas,
        "BaseSas": increment.base_sas,
        "BaseId": increment.base_id,
        "GrantExpires": increment.grant_expires,
        "Blob": increment.blob,
        # a double: exact for any disk size, and no Int64 wrapper to unpack
        "Size": float(increment.size),
        "Stamp": increment.stamp,
        "Fence": float(increment.fence),
        "Plans": increment.plans,
        "Queued": increment.queued,
        "Entra": increment.entra,
    }


def increment_from(chain: ChainKey, entity: Any) -> Increment:
    changed = moment(entity.get("ChangedAt"))
    if changed is None:
        raise ValueError(f"increment row {entity.get('RowKey')!r} has no ChangedAt")
    return Increment(
        chain=chain,
        job_key=str(entity["RowKey"]).removeprefix(INCREMENT_PREFIX),
        state=IncrementState(entity["State"]),
        generation=int(entity.get("Generation", 0)),
        chunks=int(entity.get("Chunks", 0)),
        changed_at=changed,
        source_sas=entity.get("SourceSas", "") or "",
        base_sas=entity.get("BaseSas", "") or "",
        base_id=entity.get("BaseId", "") or "",
        grant_expires=moment(entity.get("GrantExpires")),
        blob=entity.get("Blob", "") or "",
        size=int(entity.get("Size", 0) or 0),
        stamp=entity.get("Stamp", "") or "",
        fence=int(entity.get("Fence", 0) or 0),
        plans=int(entity.get("Plans", 0) or 0),
        queued=bool(entity.get("Queued", False)),
        entra=bool(entity.get("Entra", False)),
        etag=etag_of(entity),
    )


def increment_write(increment: Increment) -> tuple[Any, ...]:
    """A batch operation writing an increment: conditional on its ETag, or an insert."""
    entity = increment_entity(increment)
    if increment.etag is None:
        return ("create", entity)
    what = f"increment {increment.job_key}"
    return ("update", entity, {"mode": UpdateMode.REPLACE, **conditional(increment.etag, what)})


def increment_delete(increment: Increment) -> tuple[Any, ...]:
    """A batch operation deleting an increment's row as read (it finished, in the same batch)."""
    key = {"PartitionKey": increment.chain.partition, "RowKey": INCREMENT_PREFIX + increment.job_key}
    return ("delete", key, conditional(increment.etag, f"increment {increment.job_key}"))


class IncrementRows(TableGateway):
    """Increments and their done chunks."""

    def load_increment(self, chain: ChainKey, job_key: str) -> Increment | None:
        entity = self._get(chain.partition, INCREMENT_PREFIX + job_key)
        return None if entity is None else increment_from(chain, entity)

    def save_increment(self, increment: Increment) -> Increment:
        """Insert a new increment, or write one read (ETag-conditional); `Conflict` when
        another run changed it first."""
        results = self._transact([increment_write(increment)], f"increment {increment.job_key}")
        etag = results[0].get("etag") if results else None
        return replace(increment, etag=str(etag) if etag else None)

    def record_chunk(self, chain: ChainKey, job_key: str, generation: int, index: int, at: datetime) -> bool:
        """Record a chunk as done at `at`; False when it was recorded already (copied twice)."""
        entity = {"PartitionKey": chain.partition, "RowKey": chunk_key(job_key, generation, index), "DoneAt": at}
        try:
            self._create(entity, f"chunk {index} of {job_key}")
        except Conflict:
            return False
        return True

    def forget_chunk(self, chain: ChainKey, job_key: str, generation: int, index: int) -> None:
        """Drop a done-chunk row recorded after its increment ended (nothing reads it again)."""
        self._delete_rows(chain.partition, [chunk_key(job_key, generation, index)], f"chunk {index} of {job_key}")

    def chunks_done(self, chain: ChainKey, job_key: str, generation: int) -> dict[int, datetime]:
        """A generation's done chunks: each index and when it was done (one range query)."""
        low = chunk_key(job_key, generation, 0)
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": chain.partition, "low": low, "high": low[: -len("000000")] + "~"},
            select=["RowKey", "DoneAt"],
        )
        return {int(row["RowKey"].rsplit("|", 1)[-1]): moment(row.get("DoneAt")) or EPOCH for row in rows}

    def drop_chunks(self, chain: ChainKey, job_key: str) -> int:
        """Delete every done-chunk row of a job, of every generation; how many."""
        low = CHUNK_PREFIX + job_key + "|"
        rows = list(
            self._query(
                "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                {"pk": chain.partition, "low": low, "high": low[:-1] + "}"},
                select=["RowKey"],
            )
        )
        self._delete_rows(chain.partition, [row["RowKey"] for row in rows], f"chunks of {job_key}")
        return len(rows)
