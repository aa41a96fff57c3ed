"""The diff lane: a diff chain's increment held as a flight row in its region's diff
partition, so the timer finds it as it finds a CopyStart copy (no Azure cap counts it).

- begin (the Starter, once the slot is reserved): the increment's start committed, the
  flight marked `copying`, the increment planned;
- a chunk (the queue trigger): copied; the one that finds every chunk done finishes;
  a source deleted fails the increment; a refused read access is marked spent, and the
  timer's next step plans the increment again with a new grant;
- a poison chunk (the poison queue's trigger): fails the increment with the reason;
- step (the timer, every flight every tick): what `increment_steps.next_step` says;
- end: the slot given back and the chain kept in line; the next tick starts its next.

It must not plan or copy (engine/differ.py does) nor decide the next step (the core does).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import replace

from azure.core.exceptions import AzureError

from shared.arm import ArmError
from shared.chunk_messages import ChunkMessage
from shared.engine.differ import SOURCE_DELETED, Differ, NoReadAccess, SourceGone
from shared.engine.finishing import Finisher
from shared.engine.increment_end import Ending
from shared.engine.parts import Deps, Part
from shared.increment_steps import Action, IncrementState, next_step
from shared.model import ChainKey, CopyError, CopyState, Increment, InFlight, Job, Phase
from shared.progress import START_GRACE
from shared.scheduler import overtaken
from shared.store import Conflict, retrying

log = logging.getLogger("snapcopy")

_REBASES = "the chain's next increment copies its snapshot in full (re-bases)"


class DiffLane(Part):
    """Drives the diff chains' increments through their flights."""

    def __init__(self, deps: Deps, differ: Differ, finishing: Finisher) -> None:
        super().__init__(deps)
        self.differ = differ
        self.ending = Ending(deps, differ)
        self.finishing = finishing

    def begin(self, flight: InFlight, job: Job) -> bool:
        """Start a queued job whose slot `flight` holds; True while the slot stays taken."""
        now = self.clock()

        def commit() -> bool:
            head, current = self.store.load_head_and_job(flight.chain, job.key)
            if head is not None and current is not None and current.state == CopyState.COPYING:
                # begun already (a slow start and the timer's restart raced): it runs; keep the slot
                return self.store.load_increment(flight.chain, job.key) is not None
            if head is None or current is None or current.state != CopyState.QUEUED:
                return False
            pending = self.store.load_pending(head)
            passed = overtaken(head, pending, job.key, now, superseded=current.policy in self.latest_policies)
            self.differ.start(head, current, passed)
            return True

        self.store.drop_chunks(flight.chain, job.key)  # an earlier attempt's, should a crash have left them
        if not retrying(commit):
            self.finishing.hand_back(flight)
            return False
        try:
            self.store.save_flight(replace(flight, phase=Phase.COPYING))
        except Conflict:
            log.info("%s: the flight moved after its start; the tick looks again", flight.chain.partition)
        log.info("increment started: %s → %s", job.source_id, flight.chain.region)
        self.plan(flight.chain, job.key)
        return True

    def plan(self, chain: ChainKey, key: str, *, again: bool = False) -> None:
        """Plan (or plan again) an increment; trouble that may pass is left to the timer."""
        try:
            planned = self.differ.plan(chain, key, again=again)
        except SourceGone as gone:
            self.fail(chain, key, CopyError(SOURCE_DELETED, str(gone)), f"its source is gone; {_REBASES}")
            return
        except (ArmError, AzureError) as error:
            log.warning("planning %s → %s failed (%s); the timer plans it again", key, chain.region, error)
            self.differ.let_go(chain, key)  # hold no read access until then
            return
        except ValueError as error:  # InvalidRanges, a disk over 8 TiB: will not pass: say so rather than plan forever
            self.fail(
                chain, key, CopyError("CannotCopy", str(error)), f"it cannot be copied by the diff method; {_REBASES}"
            )
            return
        if planned is not None and planned.state is IncrementState.COPYING and planned.chunks == 0:
            self.finish(chain, key)  # nothing changed: the snapshot is the base again

    def chunk(self, message: ChunkMessage) -> None:
        """One chunk from the queue (raises what may pass, so the queue tries it again)."""
        chain, key = message.chain, message.job_key
        try:
            counted = self.differ.copy(message)
        except SourceGone as gone:
            self.fail(chain, key, CopyError(SOURCE_DELETED, str(gone)), f"its source is gone; {_REBASES}")
            return
        except NoReadAccess as why:
            if not self.differ.spent(message, why.sas):
                raise  # the grant was renewed (or is being renewed) meanwhile: the queue tries again
            # the access is spent: the timer's next step asks again and plans the increment
            # again (this message is dropped)
            log.warning("chunk %d of %s → %s: %s; planned again", message.chunk.index, key, chain.region, why)
            return
        if counted is not None:
            self.finish(chain, key, counted)

    def poisoned(self, message: ChunkMessage) -> None:
        """A chunk the queue gave up on (five failures): its increment fails with the reason."""
        increment = self.store.load_increment(message.chain, message.job_key)
        if (
            increment is None
            or increment.generation != message.generation
            or increment.state is not IncrementState.COPYING
        ):
            return  # of an older plan, ended, or finishing: nothing to fail
        if self.differ.access_in_doubt(message):
            # its read access died under it (a renewal that died after ARM granted, say):
            # the chunk is not at fault; the increment is planned again with a new grant
            log.warning(
                "chunk %d of %s → %s poisoned while its read access was in doubt: planned again",
                message.chunk.index,
                message.job_key,
                message.chain.region,
            )
            return
        error = CopyError("ChunkFailed", f"chunk {message.chunk.index} of plan {message.generation} failed 5 times")
        self.fail(message.chain, message.job_key, error, f"a chunk kept failing (see the poison queue); {_REBASES}")

    def finish(self, chain: ChainKey, key: str, counted: Increment | None = None) -> None:
        done = self.ending.finish(chain, key, counted)
        if done is not None:
            self._end(done)

    def fail(self, chain: ChainKey, key: str, error: CopyError, reason: str) -> None:
        failed = self.ending.fail(chain, key, error, reason)
        if failed is not None:
            self._end(failed)

    def _end(self, job: Job) -> None:
        """Give the slot back and keep the chain in line (the tick starts its next)."""
        flight = self.store.load_flight(job.region, job.chain)
        if flight is not None and flight.job_key == job.key:
            self.finishing.hand_back(flight)

    def step(self, flight: InFlight) -> str:
        """The timer's look at one increment in flight: what it did, in a word."""
        chain, key = flight.chain, flight.job_key
        job = self.store.load_job(chain, key)
        now = self.clock()
        if job is None or job.state.is_final:
            self.finishing.hand_back(flight)  # ended by a run that died before giving the slot back
            return "released"
        if job.state == CopyState.QUEUED:  # the start never committed
            if now - flight.started_at < START_GRACE:
                return "starting"
            try:
                taken = self.store.save_flight(replace(flight, attempt=uuid.uuid4().hex, started_at=now))
            except Conflict:
                return "taken"
            return "restarted" if self.begin(taken, job) else "released"
        if flight.phase == Phase.STARTING:
            try:
                flight = self.store.save_flight(replace(flight, phase=Phase.COPYING))
            except Conflict:
                return "taken"
        increment = self.store.load_increment(chain, key)
        if increment is None:  # committed without its increment: cannot be (one batch); say so and move on
            error = CopyError("IncrementLost", "the increment's row is missing")
            self.fail(chain, key, error, f"its state was lost; {_REBASES}")
            return "failed"
        copying = increment.state in (IncrementState.COPYING, IncrementState.FINISHING)
        done = self.store.chunks_done(chain, key, increment.generation) if copying else {}
        step = next_step(increment.progress, done, now)
        if step.action is Action.RECOVER and self.differ.io.queue.pending():
            return "queued"  # its chunks wait behind others' on the queue: not lost (REPLAN bounds the wait)
        if step.action in (Action.PLAN, Action.RECOVER, Action.REPLAN):
            log.warning("increment %s → %s planned again: %s", job.source_id, chain.region, step.why)
            self.plan(chain, key, again=True)
        elif step.action is Action.FAIL:
            error = CopyError("IncrementStuck", f"it never finished: {step.why}")
            self.fail(chain, key, error, f"it was planned again and again without finishing; {_REBASES}")
            return "failed"
        elif step.action is Action.FINISH:
            self.finish(chain, key)
        elif step.action is Action.REGRANT:
            self.differ.regrant(chain, key)
        elif increment.chunks and copying:
            percent = round(100.0 * len(done) / increment.chunks, 1)
            if percent != flight.percent:
                with contextlib.suppress(Conflict):
                    self.store.save_flight(replace(flight, percent=percent, progressed_at=now))
        return step.action.value
