"""The diff method's increments, in a crash-safe order (docs/diff-copy.md):

1. start: the job `copying`, the head's watermark and the increment `planning`, one batch;
2. plan: read access to the snapshot (and to the chain's diff base), the ranges (the
   managed-disk diff, or a full copy and a re-base), the chunks; the blob prepared and
   fenced; the increment `copying`; one queue message per chunk; the base let go;
3. copy (a queue message): one chunk, then its done row; the chunk that finds every chunk
   done finishes;
4. finish (or fail): engine/increment_end.py.

A run that dies between two steps leaves a state the timer finishes (shared/increment_steps.py
says how; engine/diff_lane.py asks it). A failed increment (its source deleted, a poison
chunk) ends its job `failed` and clears the chain's diff base, so the next increment
re-bases rather than apply a diff onto a blob it left half-written.

It must not decide the chunks (shared/increments.py) nor who may hold read access
(shared/grants.py).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from azure.core.exceptions import HttpResponseError

from shared.arm import ArmError
from shared.chunk_messages import ChunkMessage
from shared.engine.access import Access
from shared.engine.parts import Deps, DiffIo, Part
from shared.ids import ResourceId
from shared.increment_steps import IncrementState, all_done
from shared.increments import outside, plan
from shared.model import ChainHead, ChainKey, CopyState, Increment, Job, blob_name
from shared.pageblobs import SourceRefused, SourceSnapshot, TargetBlob, copy_chunk
from shared.store import Conflict, retrying
from shared.tables.increments import increment_write

log = logging.getLogger("snapcopy")

PLANNABLE = (IncrementState.PLANNING, IncrementState.WAITING)
COUNTED_TAIL = 8  # chunks of a plan whose run counts the done rows (a queue runs roughly in order)
SOURCE_DELETED = "SourceDeleted"


class NoReadAccess(Exception):
    """A chunk found no live grant for its source (released, being renewed, or refused);
    `sas`: the one refused ("" when there was none to read with)."""

    def __init__(self, message: str, sas: str) -> None:
        super().__init__(message)
        self.sas = sas


class SourceGone(Exception):
    """The source snapshot is gone (ARM's GET says so): its increment cannot finish."""


def holder(chain: ChainKey, job_key: str) -> str:
    """An increment's name as a holder of read access."""
    return f"{chain.partition}|{job_key}"


def held_by(name: str) -> tuple[ChainKey, str] | None:
    """The increment a holder names (the inverse of `holder`); None for another name."""
    parts = name.split("|")
    if len(parts) != 5 or parts[0] != "chain":
        return None
    return ChainKey(parts[1], parts[2]), f"{parts[3]}|{parts[4]}"


class Differ(Part):
    """Starts, plans and copies increments (engine/increment_end.py ends them)."""

    def __init__(self, deps: Deps, access: Access) -> None:
        super().__init__(deps)
        self.access = access

    @property
    def io(self) -> DiffIo:
        if self.deps.diff is None:
            raise RuntimeError("the diff method has no queue or storage (DIFF_QUEUE_ENDPOINT): no diff target is set")
        return self.deps.diff

    def start(self, head: ChainHead, job: Job, passed: list[Job] | None = None) -> None:
        """Step 1: commit the job's start and its increment `planning` (raises `Conflict`
        when the head or job moved: read again). `passed`: queued jobs it overtakes."""
        now = self.clock()
        started = replace(job, state=CopyState.COPYING, started_at=now, source_ready=True, not_before=None, error=None)
        moved = replace(head, copying_key=job.key, last_started_key=max(head.last_started_key, job.key))
        increment = Increment(job.chain, job.key, IncrementState.PLANNING, 0, 0, now, blob=blob_name(job.chain))
        self.store.save_chain(moved, [started], overtaken=passed or [], also=[increment_write(increment)])

    def plan(self, chain: ChainKey, key: str, *, again: bool = False) -> Increment | None:
        """Step 2 (again, after a planner died, while read access waits, or `again` for a
        copying increment whose chunks went quiet): the planned increment, or None while
        read access must wait or another planner claimed it."""
        increment = self.store.load_increment(chain, key)
        head, job = self.store.load_head_and_job(chain, key)
        plannable = (*PLANNABLE, IncrementState.COPYING) if again else PLANNABLE
        if increment is None or head is None or job is None or increment.state not in plannable:
            return increment
        now = self.clock()
        # claim this plan (of two planners, one goes on): a higher fence and generation
        fence = max(increment.fence + 1, int(now.timestamp() * 1000))
        try:
            begun = increment.plans + (increment.state is not IncrementState.WAITING)
            increment = self.store.save_increment(
                replace(
                    increment,
                    state=IncrementState.PLANNING,
                    generation=fence,
                    fence=fence,
                    changed_at=now,
                    plans=begun,
                    queued=False,
                )
            )
        except Conflict:
            return None
        name = holder(chain, key)
        snapshot = self.arm.get_snapshot(job.source_id)  # a GET: the judge of existence
        if snapshot is None:
            raise SourceGone(f"{job.source_id} was deleted before its copy to {chain.region} began")
        try:
            grant = self.access.acquire(job.source_id, chain.family_id, name)
        except ArmError as error:
            if error.status == 404:
                raise SourceGone(f"{job.source_id} was deleted before its copy to {chain.region} began") from error
            raise
        if grant is None:  # the family holds its budget of read access: the timer asks again
            with contextlib.suppress(Conflict):
                self.store.save_increment(replace(increment, state=IncrementState.WAITING))
            return None
        base = ResourceId.parse(head.diff_base, kind="snapshots") if head.diff_base else None
        base_grant = None
        if base is not None:
            try:
                base_grant = self.access.acquire(base, chain.family_id, name)
            except ArmError as error:
                if error.status != 404:
                    raise
                self.access.release(base, chain.family_id, name)  # its claim row must not count
                base = None  # the base snapshot is gone: re-base
            if base is not None and base_grant is None:  # wait for it (a full copy would cost more)
                self.access.release(job.source_id, chain.family_id, name)
                with contextlib.suppress(Conflict):
                    self.store.save_increment(replace(increment, state=IncrementState.WAITING))
                return None
        # an Entra token when the source or the base wants one (the base's SAS rides on the
        # diff request as x-ms-previous-snapshot-url)
        entra = snapshot.entra_data_access or (base_grant is not None and self._entra(base))
        source = self._source(grant.sas, entra)
        size = source.size()
        target = TargetBlob(self.io.containers(job.blob_endpoint, job.blob_container), increment.blob)
        target.prepare(size, increment.fence)
        # above any number the blob carried: no earlier plan of this chain, this job's failed
        # attempts included (a retry starts a new increment), had it, so it is the plan's
        # generation too: their late chunks, done rows and poison messages never count
        fence = target.fence
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
            fence=fence,
            generation=fence,
            entra=entra,
        )
        try:
            planned = self.store.save_increment(planned)
        except Conflict:
            return None  # a later plan claimed it meanwhile: it goes on
        self.io.queue.send([ChunkMessage(chain, key, planned.generation, chunk) for chunk in chunks])

        def mark_queued() -> None:  # every chunk is on the queue now: only a lost message could stop it
            current = self.store.load_increment(chain, key)
            if (
                current is not None
                and current.generation == planned.generation
                and current.state is IncrementState.COPYING
                and not current.queued
            ):
                self.store.save_increment(replace(current, queued=True))

        retrying(mark_queued)
        log.info(
            "increment planned: %s → %s, %d chunk(s), %s",
            job.source_id,
            chain.region,
            len(chunks),
            f"diff against {head.diff_base}" if planned.base_id else "a full copy",
        )
        return planned

    def _entra(self, snapshot_id: ResourceId | None) -> bool:
        """Whether a snapshot's data access takes an Entra token (a GET; gone: no)."""
        found = self.arm.get_snapshot(snapshot_id) if snapshot_id is not None else None
        return found is not None and found.entra_data_access

    def _source(self, sas: str, entra: bool) -> SourceSnapshot:
        """A source read through its SAS, and with the app's Entra token when its data access
        takes one (dataAccessAuthMode AzureActiveDirectory: the token's audience comes from
        the service's challenge, https://disk.azure.com/)."""
        options = {**self.io.source_options, **({"credential": self.io.credential} if entra else {})}
        return SourceSnapshot(sas, **options)

    def regrant(self, chain: ChainKey, key: str) -> None:
        """Renew the source's read access before it runs out (the timer's step); chunks
        read with the grant row's SAS, so they pick the new one up."""
        increment = self.store.load_increment(chain, key)
        job = self.store.load_job(chain, key)
        if increment is None or job is None or increment.state is not IncrementState.COPYING:
            return
        grant = self.access.acquire(job.source_id, chain.family_id, holder(chain, key))
        if grant is not None and grant.expires != increment.grant_expires:
            with contextlib.suppress(Conflict):  # moved on meanwhile: the next run looks again
                self.store.save_increment(replace(increment, grant_expires=grant.expires, source_sas=grant.sas))

    def spent(self, message: ChunkMessage, sas: str) -> bool:
        """A chunk's read access `sas` was refused while ARM still has the source. When it
        is still the grant's SAS, the grant is spent (revoked or run out behind our back):
        marked so, and the timer's next step asks again and plans again (True). False when
        the grant was renewed meanwhile or is being renewed: the chunk is tried again."""
        chain, key = message.chain, message.job_key
        increment = self.store.load_increment(chain, key)
        job = self.store.load_job(chain, key)
        if increment is None or job is None or increment.generation != message.generation:
            return True  # of no current plan: nothing to try again
        if not self.access.spend(job.source_id, chain.family_id, sas, self.clock()):
            return False
        return self._plan_again_soon(increment)  # moved on meanwhile: the chunk is tried again and sees how

    def access_in_doubt(self, message: ChunkMessage) -> bool:
        """A poisoned chunk's read access was not live (claimed by a renewal, run out, gone):
        if so, the increment is marked to be planned again (True) rather than failed."""
        increment = self.store.load_increment(message.chain, message.job_key)
        job = self.store.load_job(message.chain, message.job_key)
        if increment is None or job is None or increment.generation != message.generation:
            return False
        grant = self.store.load_grant(message.chain.family_id, str(job.source_id).lower())
        if grant is not None and grant.live(self.clock()):
            return False
        self._plan_again_soon(increment)  # moved on meanwhile: the timer looks again
        return True

    def copy(self, message: ChunkMessage) -> Increment | None:
        """Step 3: one chunk (a queue message). The increment when this chunk found every
        chunk of its plan done (the caller finishes it), else None. Raises `NoReadAccess`
        when the source cannot be read now (the chunk is tried again later) and
        `SourceGone` when ARM says the source is deleted."""
        chain, key = message.chain, message.job_key
        increment = self.store.load_increment(chain, key)
        if increment is None:  # ended: a run of this chunk that died after its done row leaves none
            self.store.forget_chunk(chain, key, message.generation, message.chunk.index)
            return None
        if increment.generation != message.generation or increment.state is not IncrementState.COPYING:
            return None  # a message of no current plan: dropped
        job = self.store.load_job(chain, key)
        if job is None:
            return None
        # the grant's current SAS: another holder may have renewed it since this plan
        grant = self.store.load_grant(chain.family_id, str(job.source_id).lower())
        now = self.clock()
        sas = grant.sas if grant is not None and grant.sas and grant.expires > now else ""
        if (
            not sas
            and grant is not None
            and grant.claimed(now)
            and increment.grant_expires
            and increment.grant_expires > now
        ):
            sas = increment.source_sas  # being renewed: the SAS this plan read with is good until the new one is
        if not sas:
            raise NoReadAccess(f"no read access to {job.source_id} now", "")
        source = self._source(sas, increment.entra)
        container = self.io.containers(job.blob_endpoint, job.blob_container)
        try:
            with self.io.ranges:
                copy_chunk(source, TargetBlob(container, increment.blob, fence=increment.fence), message.chunk)
        except SourceRefused as refused:
            if self.arm.get_snapshot(job.source_id) is None:
                raise SourceGone(f"{job.source_id} was deleted while it was copied to {chain.region}") from refused
            raise NoReadAccess(f"the read access to {job.source_id} was refused ({refused})", sas) from refused
        except HttpResponseError as error:
            if error.status_code == 412:  # the blob is fenced by a newer plan: this one is over
                log.info("chunk %d of %s → %s: a newer plan owns the blob", message.chunk.index, key, chain.region)
                self._fenced_out(increment)
                return None
            raise
        self.store.record_chunk(chain, key, increment.generation, message.chunk.index, self.clock())
        if self.store.load_increment(chain, key) is None:  # ended meanwhile: leave nothing behind
            self.store.forget_chunk(chain, key, increment.generation, message.chunk.index)
            return None
        if message.chunk.index < increment.chunks - COUNTED_TAIL:
            return None  # only the last chunks count the done rows (linear, not quadratic); the timer finishes the rest
        done = self.store.chunks_done(chain, key, increment.generation)
        return increment if all_done(increment.progress, done) else None

    def _fenced_out(self, increment: Increment) -> None:
        """The current plan's writes are refused (a planner that lost its claim raised the
        blob's fence after it): it is planned again at the timer's next step."""
        current = self.store.load_increment(increment.chain, increment.job_key)
        if (
            current is not None
            and current.generation == increment.generation
            and current.state is IncrementState.COPYING
        ):
            self._plan_again_soon(current)

    def _plan_again_soon(self, increment: Increment) -> bool:
        """Mark an increment's read access run out, so that the timer's next step plans it
        again with a new grant (`increment_steps.next_step`); False when the row moved
        meanwhile (the caller's next look decides)."""
        now = self.clock()
        if increment.grant_expires is not None and increment.grant_expires <= now:
            return True  # marked already
        try:
            self.store.save_increment(replace(increment, grant_expires=now))
        except Conflict:
            return False
        return True

    def let_go(self, chain: ChainKey, key: str) -> None:
        """Release the read access an increment holds (to its snapshot and its base)."""
        head, job = self.store.load_head_and_job(chain, key)
        if head is None or job is None:
            return
        name = holder(chain, key)
        self.access.release(job.source_id, chain.family_id, name)
        if head.diff_base:
            self.access.release(ResourceId.parse(head.diff_base, kind="snapshots"), chain.family_id, name)
