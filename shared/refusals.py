"""A CopyStart that ARM refused: how the refusal is classified, and what becomes of the job.

Pure: the shell hands in ARM's code and status and the edge's verdict on whether that
status passes with time; nothing here reads a clock, a table or ARM.

It must not retry or sleep: it says when the job may be tried again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.model import CopyError, CopyState, Job

# Backoff between attempts to start a copy that ARM refused for a passing reason.
START_BACKOFF_BASE = timedelta(minutes=1)
START_BACKOFF_MAX = timedelta(minutes=30)


@dataclass(frozen=True)
class StartRefusal:
    """How an ARM refusal of a CopyStart PUT is treated (see `refusal` and `after_refusal`)."""

    error: CopyError
    retryable: bool
    source_missing: bool = False


def refusal(error: CopyError, status: int | None, passing: bool) -> StartRefusal:
    """Classify ARM's answer to a CopyStart PUT. `passing`: the edge's verdict that the
    status passes with time (throttling, 5xx, no answer). A 404 says the source is gone
    (the shell confirms it with a GET); 409 OperationNotAllowed is another copy of the
    family in flight (perhaps not ours) or the region at its cap: both pass with time."""
    if status == 404:
        return StartRefusal(error, retryable=False, source_missing=True)
    return StartRefusal(error, retryable=passing or (status == 409 and error.code == "OperationNotAllowed"))


def after_refusal(job: Job, refusal: StartRefusal, now: datetime, max_attempts: int) -> Job:
    """The job's next state after ARM refused to start it.

    The rule: a source that vanished is skipped; a passing refusal (throttling, a copy of
    the family started by someone else, a 5xx) is retried with growing backoff; after
    `max_attempts` or on a permanent refusal the job fails with ARM's code and the chain
    moves on to its next snapshot, so one bad snapshot never blocks a disk for ever.
    """
    attempts = job.attempts + 1
    if refusal.source_missing:
        return replace(
            job,
            state=CopyState.SKIPPED,
            attempts=attempts,
            finished_at=now,
            error=refusal.error,
            reason="source snapshot no longer exists (deleted before its copy started)",
        )
    if refusal.retryable and attempts < max_attempts:
        backoff = min(START_BACKOFF_BASE * (2 ** (attempts - 1)), START_BACKOFF_MAX)
        return replace(job, attempts=attempts, not_before=now + backoff, error=refusal.error)
    return replace(
        job,
        state=CopyState.FAILED,
        attempts=attempts,
        finished_at=now,
        error=refusal.error,
        reason=f"ARM refused the copy {attempts} time(s); the chain moved on to its next snapshot",
    )
