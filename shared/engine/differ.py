"""The diff method's increments, in a crash-safe order (docs/diff-copy.md):

1. start: the job `copying`, the head's watermark and the increment `planning`, one batch;
2. plan: read access to the snapshot (and to the chain's diff base), the ranges (the
   managed-disk diff, or a full copy and a re-base), the chunks; the blob prepared and
   fenced; the increment `copying`; one queue message per chunk; the base let go;
3. copy (a queue message): one chunk, then its done row; the chunk that finds every chunk
   done finishes;
4. finish: the increment claimed `finishing`, the blob snapshot taken (once), then the job
   `succeeded`, the head (last completed, diff base) and the increment's row gone, one
   batch; the done rows dropped; the snapshot's read access let go.

A run that dies between two steps leaves a state the timer finishes (shared/increment_steps.py
says how; wiring it into the timer is the next step of issue 23).

It must not decide the chunks (shared/increments.py) nor who may hold read access
(shared/grants.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from azure.storage.blob import ContainerClient

from shared.arm import ArmError
from shared.chunk_messages import ChunkMessage
from shared.chunk_queue import ChunkQueue
from shared.engine.access import Access
from shared.engine.parts import Deps, Part
from shared.ids import ResourceId
from shared.increment_steps import IncrementState, all_done
from shared.increments import outside, plan
from shared.model import ChainHead, ChainKey, CopyState, Increment, Job
from shared.pageblobs import SOURCE_KEY, SourceSnapshot, TargetBlob, copy_chunk
from shared.store import Conflict
from shared.tables.increments import increment_delete, increment_write

log = logging.getLogger("snapcopy")


class NoReadAccess(Exception):
    """A chunk found no live grant for its source (released, or being renewed)."""


@dataclass(frozen=True)
class DiffIo:
    """What the diff method reads and writes through, beside ARM and the table."""

    queue: ChunkQueue
    containers: Callable[[str, str], ContainerClient]  # (blob endpoint, container) -> client
    source_options: dict[str, Any] = field(default_factory=dict)  # blob client options for SAS reads


def holder(chain: ChainKey, job_key: str) -> str:
    """An increment's name as a holder of read access."""
    return f"{chain.partition}|{job_key}"


def blob_name(chain: ChainKey) -> str:
    """The target page blob of a chain: one per source family and region."""
    return f"{chain.family_id.lower()}-{chain.region}.vhd"


class Differ(Part):
    """Starts, plans, copies and finishes increments."""

    def __init__(self, deps: Deps, access: Access, io: DiffIo) -> None:
        super().__init__(deps)
        self.access = access
        self.io = io

    def start(self, head: ChainHead, job: Job) -> Increment | None:
        """Commit the job's start (raises `Conflict` when the head or job moved: read again),
        then plan it. The planned increment back, or None while it waits for read access."""
        now = self.clock()
        started = replace(job, state=CopyState.COPYING, started_at=now, source_ready=True, not_before=None, error=None)
        moved = replace(head, copying_key=job.key, last_started_key=max(head.last_started_key, job.key))
        increment = Increment(job.chain, job.key, IncrementState.PLANNING, 0, 0, now, blob=blob_name(job.chain))
        self.store.save_chain(moved, [started], also=[increment_write(increment)])
        return self.plan(job.chain, job.key)

    def plan(self, chain: ChainKey, key: str) -> Increment | None:
        """Step 2 (again, after a planner died): None while read access must wait, or when
        another planner claimed the plan first."""
        increment = self.store.load_increment(chain, key)
        head, job = self.store.load_head_and_job(chain, key)
        if increment is None or head is None or job is None or increment.state is not IncrementState.PLANNING:
            return increment
        now = self.clock()
        try:  # claim this plan: a new generation and a higher fence (of two planners, one goes on)
            fence = max(increment.fence + 1, int(now.timestamp() * 1000))
            increment = self.store.save_increment(
                replace(increment, generation=increment.generation + 1, fence=fence, changed_at=now)
            )
        except Conflict:
            return None
        name = holder(chain, key)
        grant = self.access.acquire(job.source_id, chain.family_id, name)
        if grant is None:
            return None
        base = ResourceId.parse(head.diff_base, kind="snapshots") if head.diff_base else None
        base_grant = None
        if base is not None:
            try:
                base_grant = self.access.acquire(base, chain.family_id, name)
            except ArmError as error:
                if error.status != 404:
                    raise
                base = None  # the base snapshot is gone: re-base
        source = SourceSnapshot(grant.sas, **self.io.source_options)
        size = source.size()
        target = TargetBlob(self.io.containers(job.blob_endpoint, job.blob_container), increment.blob)
        target.prepare(size, increment.fence)
        # a diff only onto the blob that holds its base exactly (a new or other blob re-bases)
        diffable = base_grant is not None and target.holds() == head.diff_base
        if diffable and base_grant is not None:
            changed, cleared = source.ranges(base_grant.sas)
        else:  # a full copy, clearing what the blob holds beyond the source (a re-base)
            changed, _ = source.ranges()
            cleared = outside(target.allocated(), changed)
        if base is not None:
            self.access.release(base, chain.family_id, name)  # only the ranges needed it
        chunks = plan(changed, cleared, size=size)
        planned = replace(
            increment,
            state=IncrementState.COPYING,
            chunks=len(chunks),
            changed_at=now,
            source_sas=grant.sas,
            base_id=head.diff_base if diffable else "",
            grant_expires=grant.expires,
            size=size,
        )
        try:
            planned = self.store.save_increment(planned)
        except Conflict:
            return None  # a later plan claimed it meanwhile: it goes on
        self.io.queue.send([ChunkMessage(chain, key, planned.generation, chunk) for chunk in chunks])
        log.info(
            "increment planned: %s → %s, %d chunk(s), %s",
            job.source_id,
            chain.region,
            len(chunks),
            f"diff against {head.diff_base}" if planned.base_id else "a full copy",
        )
        if not chunks:
            self.finish(chain, key)
        return planned

    def copy(self, message: ChunkMessage) -> bool:
        """Step 3: one chunk (a queue message); False when the message is of no current
        plan (dropped). Raises when the chunk could not be copied: the queue retries it."""
        chain, key = message.chain, message.job_key
        increment = self.store.load_increment(chain, key)
        if (
            increment is None
            or increment.generation != message.generation
            or increment.state is not IncrementState.COPYING
        ):
            return False
        job = self.store.load_job(chain, key)
        if job is None:
            return False
        # the grant's current SAS: another holder may have renewed it since this plan
        grant = self.store.load_grant(chain.family_id, str(job.source_id).lower())
        if grant is None or not grant.sas:
            raise NoReadAccess(f"no read access to {job.source_id} now: the chunk is retried")
        source = SourceSnapshot(grant.sas, **self.io.source_options)
        container = self.io.containers(job.blob_endpoint, job.blob_container)
        copy_chunk(source, TargetBlob(container, increment.blob, fence=increment.fence), message.chunk)
        self.store.record_chunk(chain, key, increment.generation, message.chunk.index)
        done = self.store.chunks_done(chain, key, increment.generation)
        if all_done(increment.progress, done):
            self.finish(chain, key, increment)
        return True

    def finish(self, chain: ChainKey, key: str, counted: Increment | None = None) -> None:
        """Step 4 (idempotent: a finish that died is finished by the next). `counted`: the
        increment as read by the run that just found every chunk done (not counted again)."""
        increment = counted or self.store.load_increment(chain, key)
        if increment is None:
            return
        if increment.state is IncrementState.COPYING:
            if counted is None and not all_done(
                increment.progress, self.store.chunks_done(chain, key, increment.generation)
            ):
                return
            try:
                increment = self.store.save_increment(
                    replace(increment, state=IncrementState.FINISHING, changed_at=self.clock())
                )
            except Conflict:
                return  # another chunk's run finishes it
        head, job = self.store.load_head_and_job(chain, key)
        if head is None or job is None:
            return
        target = TargetBlob(self.io.containers(job.blob_endpoint, job.blob_container), increment.blob)
        if not increment.stamp:
            metadata = {SOURCE_KEY: str(job.source_id), "sourcetimecreated": job.source_time.isoformat()}
            stamp = target.snapshot({**metadata, "policy": job.policy})  # the one taken before, if any
            increment = self.store.save_increment(replace(increment, stamp=stamp))
        target.mark_holding(str(job.source_id))  # the next increment may diff onto it
        self.access.release(job.source_id, chain.family_id, holder(chain, key))  # idempotent: before the commit
        now = self.clock()
        done = replace(
            job,
            state=CopyState.SUCCEEDED,
            finished_at=now,
            percent=100.0,
            blob_snapshot=f"{increment.blob}?snapshot={increment.stamp}",
        )
        moved = replace(
            head,
            copying_key="" if head.copying_key == key else head.copying_key,
            last_completed_key=key,
            last_completed_source=str(job.source_id),
            last_completed_at=now,
            diff_base=str(job.source_id),
        )
        self.store.save_chain(moved, [done], also=[increment_delete(increment)])
        self.store.drop_chunks(chain, key)
        log.info("increment completed: %s → %s (%s)", job.source_id, chain.region, done.blob_snapshot)
