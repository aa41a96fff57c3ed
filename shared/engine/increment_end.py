"""The end of a diff increment, step 4 (engine/differ.py has the steps before it): finished,
its blob snapshot taken once, or failed with the reason; either way the job, the chain's
head and the increment's row in one batch, the done rows dropped before the commit and
after it, and the read access let go.

It must not plan or copy (engine/differ.py does) nor give the slot back (the lane does).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.engine.differ import Differ, holder
from shared.engine.parts import Deps, Part
from shared.increment_steps import IncrementState, all_done
from shared.model import ChainHead, ChainKey, CopyError, CopyState, Increment, Job
from shared.pageblobs import SOURCE_KEY, TargetBlob
from shared.store import Conflict, retrying
from shared.tables.increments import increment_delete

log = logging.getLogger("snapcopy")


class Ending(Part):
    """Finishes and fails increments."""

    def __init__(self, deps: Deps, differ: Differ) -> None:
        super().__init__(deps)
        self.differ = differ

    def finish(self, chain: ChainKey, key: str, counted: Increment | None = None) -> Job | None:
        """Step 4 (idempotent: a finish that died is finished by the next). `counted`: the
        increment as read by the run that just found every chunk done (not counted again).
        The job as committed `succeeded`, or None when this run did not finish it."""
        increment = counted or self.store.load_increment(chain, key)
        if increment is None:
            return None
        if increment.state is IncrementState.COPYING:
            if counted is None and not all_done(
                increment.progress, self.store.chunks_done(chain, key, increment.generation)
            ):
                return None
            try:
                increment = self.store.save_increment(
                    replace(increment, state=IncrementState.FINISHING, changed_at=self.clock())
                )
            except Conflict:
                return None  # another chunk's run finishes it
        if increment.state is not IncrementState.FINISHING:
            return None
        head, job = self.store.load_head_and_job(chain, key)
        if head is None or job is None:
            return None
        target = TargetBlob(self.differ.io.containers(job.blob_endpoint, job.blob_container), increment.blob)
        if not increment.stamp:
            metadata = {SOURCE_KEY: str(job.source_id), "sourcetimecreated": job.source_time.isoformat()}
            stamp = target.snapshot({**metadata, "policy": job.policy})  # the one taken before, if any
            increment = self._stamped(increment, stamp)
        target.mark_holding(str(job.source_id))  # the next increment may diff onto it
        self.differ.access.release(job.source_id, chain.family_id, holder(chain, key))  # idempotent: before the commit
        now = self.clock()
        done = replace(
            job,
            state=CopyState.SUCCEEDED,
            finished_at=now,
            percent=100.0,
            blob_snapshot=f"{job.target}?snapshot={increment.stamp}",  # the URL a disk is restored from
        )
        moved = replace(
            head,
            copying_key="" if head.copying_key == key else head.copying_key,
            last_completed_key=key,
            last_completed_source=str(job.source_id),
            last_completed_at=now,
            diff_base=str(job.source_id),
        )
        self._commit(moved, done, increment)
        log.info("increment completed: %s → %s (%s)", job.source_id, chain.region, done.blob_snapshot)
        return done

    def fail(self, chain: ChainKey, key: str, error: CopyError, reason: str) -> Job | None:
        """End an increment that cannot finish: its job `failed` with the reason, the chain's
        diff base cleared (the blob is half-written: the next increment re-bases) and the
        increment's row gone, one batch; its read access let go. The failed job, or None
        when it had ended already."""
        increment = self.store.load_increment(chain, key)
        head, job = self.store.load_head_and_job(chain, key)
        if head is None or job is None or job.state.is_final:
            return None
        self.differ.let_go(chain, key)
        failed = replace(job, state=CopyState.FAILED, finished_at=self.clock(), error=error, reason=reason)
        moved = replace(head, copying_key="" if head.copying_key == key else head.copying_key, diff_base="")
        self._commit(moved, failed, increment)
        log.error(
            "increment failed: %s → %s: %s %s; %s", job.source_id, chain.region, error.code, error.message, reason
        )
        return failed

    def _commit(self, head: ChainHead, job: Job, increment: Increment | None) -> None:
        """The job's end, the head and the increment's row gone, one batch; the done rows
        dropped before it (an ending increment needs none of them: a run that dies between
        the two leaves none) and after it (a duplicate chunk's row recorded meanwhile)."""
        self.store.drop_chunks(job.chain, job.key)
        self.store.save_chain(head, [job], also=[increment_delete(increment)] if increment else [])
        self.store.drop_chunks(job.chain, job.key)

    def _stamped(self, increment: Increment, stamp: str) -> Increment:
        """Record the blob snapshot on a finishing increment (read again when another write,
        a late "every chunk queued" mark, moved it meanwhile)."""
        held = [increment]

        def save() -> Increment:
            current = held.pop() if held else self.store.load_increment(increment.chain, increment.job_key)
            if current is None or current.generation != increment.generation:
                raise Conflict(f"increment {increment.job_key} moved on while finishing")
            return current if current.stamp == stamp else self.store.save_increment(replace(current, stamp=stamp))

        return retrying(save)
