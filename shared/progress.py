"""A copy in flight, judged by its target: progress, completion, failure, a start to re-drive.

Pure functions of (the flight row, what ARM shows of the target, now): nothing here
reads a clock, a table or ARM. The timer (shared/engine/polling.py) acts on them.

It must not act: it only judges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.model import CopyError, InFlight, Phase, Snapshot

# A reserved slot whose PUT we never saw land is re-driven after this long.
START_GRACE = timedelta(minutes=2)
# A copy ARM does not list right after it was accepted is given this long to appear.
TARGET_APPEAR_GRACE = timedelta(minutes=5)
# Progress is read at most this far apart, however slow the copy looks (well inside the
# default STUCK_AFTER_MINUTES of 120, so a stalled copy is still flagged in time).
MAX_POLL_GAP = timedelta(minutes=30)
# ARM's completionPercent moves in steps of 0.1 (read floored): a copy may be up to one
# step further along than it says.
PERCENT_STEP = 0.1


@dataclass(frozen=True)
class Progress:
    percent: float
    next_poll_at: datetime
    changed: bool


@dataclass(frozen=True)
class Completed:
    pass


@dataclass(frozen=True)
class Failed:
    error: CopyError


@dataclass(frozen=True)
class Restart:
    """The slot was reserved but the CopyStart PUT never landed: send it again (idempotent)."""


Outcome = Progress | Completed | Failed | Restart


def assess_copy(flight: InFlight, target: Snapshot | None, now: datetime) -> Outcome:
    """Read one copy's state from its target snapshot (None: ARM did not list it)."""
    if target is None:
        if flight.phase == Phase.STARTING:
            if now - flight.started_at >= START_GRACE:
                return Restart()
            return Progress(flight.percent, now, changed=False)
        if now - flight.started_at < TARGET_APPEAR_GRACE:
            return Progress(flight.percent, now, changed=False)
        return Failed(CopyError("TargetNotFound", f"the copy {flight.target_id.name} no longer exists in ARM"))
    if target.copy_error is not None:
        return Failed(target.copy_error)
    state = target.provisioning_state.lower()
    if state == "failed":
        return Failed(CopyError("ProvisioningFailed", "ARM reports provisioningState Failed for the copy"))
    percent = target.completion_percent
    if target.is_complete_copy:
        return Completed()
    percent = percent or 0.0
    return Progress(percent, next_poll_time(flight, percent, now), changed=percent != flight.percent)


def stuck_since(flight: InFlight, progressed: bool, now: datetime, after: timedelta) -> datetime | None:
    """When a copy was flagged as stuck: no new completionPercent for `after`. Any
    progress clears the flag; a flag, once raised, keeps its first time."""
    if progressed:
        return None
    if flight.stuck_since is not None:
        return flight.stuck_since
    last = flight.progressed_at or flight.started_at
    return now if now - last >= after else None


def next_poll_time(flight: InFlight, percent: float, now: datetime) -> datetime:
    """When reading this copy's progress again is worth an ARM call: the soonest it can
    finish at its pace so far.

    Taking the copy as one PERCENT_STEP further along than reported makes that a bound a
    copy keeping its pace cannot beat, so the poll is never late; and as the timer's tick
    after it usually finds the copy done, a copy costs about two reads. A copy that shows
    no rate yet is read on the next tick; none is left unread longer than MAX_POLL_GAP.
    """
    elapsed = (now - flight.started_at).total_seconds()
    if percent <= 0 or elapsed <= 0:
        return now
    soonest = elapsed * 100.0 / min(percent + PERCENT_STEP, 100.0)
    return now + min(timedelta(seconds=max(soonest - elapsed, 0.0)), MAX_POLL_GAP)
