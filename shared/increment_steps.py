"""What a diff increment in flight needs next, decided from its row, the chunks done and now.

An increment is `planning` (its grants, ranges and chunks being made), `waiting` (for
read access: its family holds its budget of grants), `copying` (its chunks on the queue)
or `finishing` (its blob snapshot being taken and its job committed). Every step of it
may die half-way; the timer asks `next_step` for each increment in flight and does what
it says, so nothing is left half-done:

- planning for longer than the grace: plan again (a new generation: the old plan's
  messages are dropped when they arrive);
- waiting for read access: plan again at every run;
- copying with every chunk done: finish (the chunk that found it so may have died);
- copying with a grant that runs out within the margin: grant again (same generation);
- copying with a grant that ran out or was refused (a chunk marked it spent and was
  dropped): plan again, with a new grant;
- copying with no chunk done for longer than the grace: recover, i.e. when the queue
  holds no message (the shell asks it: a long queue of other increments' chunks is not
  a loss), its messages were lost: plan again, as a new generation; after RECOVER_LIMIT,
  plan again whatever the queue holds (a busy queue must not hide a loss for ever). Chunk
  messages never expire, and a plan marks when all of its chunks are on the queue: one
  whose planner died while sending is planned again after the plan's grace, not gated; The plan is not
  stored, so the whole increment is copied again from the same base: correct (writing
  a page twice is harmless), and rare;
- begun MAX_PLANS times (a planner that keeps failing, chunks that keep going quiet) and
  still not done: fail, with the reason (nothing runs, or holds read access, for ever);
- finishing for longer than the grace: finish again (taking the blob snapshot is made
  idempotent by the shell: one with this source's metadata is reused); for longer than
  FINISH_LIMIT: fail, with the reason;

Pure: it must not read the table, a queue or a clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

PLAN_GRACE = timedelta(minutes=10)  # longer than any planning takes: a planner that took longer died
CHUNK_GRACE = timedelta(minutes=15)  # no chunk done for this long: its messages were lost or poisoned
GRANT_MARGIN = timedelta(minutes=30)  # a SAS is renewed this long before it runs out
MAX_PLANS = 12  # plans of one increment begun (waiting for read access aside): past this it fails
FINISH_LIMIT = timedelta(hours=2)  # a finish failing for this long fails its increment
RECOVER_LIMIT = timedelta(hours=24)  # quiet chunks are planned again after this even while the queue is busy


class IncrementState(StrEnum):
    PLANNING = "planning"
    WAITING = "waiting"  # for read access (the family holds its budget of grants)
    COPYING = "copying"
    FINISHING = "finishing"


@dataclass(frozen=True)
class Progress:
    """What an increment's row says of it."""

    state: IncrementState
    generation: int
    chunks: int  # how many its plan has (0 until planned; an empty diff has none)
    changed_at: datetime  # when it last moved: planned, a chunk done, finishing claimed
    grant_expires: datetime | None = None
    plans: int = 0  # how many plans it began (not counting those that waited for read access)
    queued: bool = True  # every chunk of the plan reached the queue (False: a planner died sending)


class Action(StrEnum):
    WAIT = "wait"
    PLAN = "plan"  # again, as a new generation
    REGRANT = "regrant"
    RECOVER = "recover"  # its chunks went quiet: if the queue holds none, they were lost: plan again
    REPLAN = "replan"  # quiet for RECOVER_LIMIT: plan again, whatever the queue holds
    FINISH = "finish"
    FAIL = "fail"  # planned MAX_PLANS times without finishing: it would never end


@dataclass(frozen=True)
class Step:
    action: Action
    why: str = ""


def all_done(progress: Progress, done: Collection[int]) -> bool:
    """Whether every chunk of the increment's current plan is done."""
    return progress.state in (IncrementState.COPYING, IncrementState.FINISHING) and all(
        i in done for i in range(progress.chunks)
    )


def again(progress: Progress, why: str, action: Action = Action.PLAN) -> Step:
    """Plan an increment again (`action`: at once, or as a recovery), unless it was
    planned too often already: then it fails."""
    if progress.plans >= MAX_PLANS:
        return Step(Action.FAIL, why=f"{why}, after {progress.plans} plans")
    return Step(action, why=why)


def next_step(progress: Progress, done: Mapping[int, datetime], now: datetime) -> Step:
    """What the timer does for an increment in flight (see the module's docstring); `done`:
    the current plan's done chunks and when each was done (progress is the newest)."""
    quiet = now - max((progress.changed_at, *done.values()))
    if progress.state is IncrementState.WAITING:
        return Step(Action.PLAN, why="waiting for read access")
    if progress.state is IncrementState.PLANNING:
        if quiet > PLAN_GRACE:
            return again(progress, f"planning stopped {int(quiet.total_seconds() // 60)} min ago")
        return Step(Action.WAIT)
    if progress.state is IncrementState.FINISHING:
        if quiet > FINISH_LIMIT:  # its blob snapshot or commit keeps failing
            return Step(Action.FAIL, why=f"its finish kept failing for {int(quiet.total_seconds() // 60)} min")
        if quiet > PLAN_GRACE:
            return Step(Action.FINISH, why="a finish stopped half-way")
        return Step(Action.WAIT)
    if all_done(progress, done):
        return Step(Action.FINISH, why="every chunk is done")
    if progress.grant_expires is not None and now >= progress.grant_expires:
        # ran out, or was refused (spent): chunks were dropped, so the plan is made again
        return again(progress, "its read access ran out or was refused, or a newer plan fenced it out")
    if progress.grant_expires is not None and now >= progress.grant_expires - GRANT_MARGIN:
        return Step(Action.REGRANT, why="the read access runs out")
    if not progress.queued and quiet > PLAN_GRACE:
        return again(progress, "its planner died before every chunk was on the queue")
    if quiet > CHUNK_GRACE:
        missing = sum(1 for i in range(progress.chunks) if i not in done)
        why = f"no chunk done for {int(quiet.total_seconds() // 60)} min ({missing} not done)"
        return again(progress, why, Action.REPLAN if quiet > RECOVER_LIMIT else Action.RECOVER)
    return Step(Action.WAIT)
