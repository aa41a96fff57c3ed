"""Retention: which completed copies of a chain its policy no longer keeps.

A copy is kept if either rule keeps it: it is among the `count` newest completed copies,
or its source snapshot is younger than `days` (by the source's `timeCreated`). The newest
completed copy of a chain is always kept, whatever the rules say: it is the chain's
recovery point and the base of its next incremental copy. A copy in flight, or one a
pruning already handled, is never a candidate.

Pure: it must not read the table, ARM or a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.model import CopyState, Job
from shared.policies import Retention


def prunable(done: Sequence[Job], retain: Retention | None, now: datetime, *, copying_key: str = "") -> list[Job]:
    """The chain's completed copies that `retain` does not keep, oldest first."""
    if retain is None:
        return []
    completed = sorted(
        (job for job in done if job.state == CopyState.SUCCEEDED and job.key != copying_key),
        key=lambda job: job.key,
        reverse=True,
    )
    candidates = []
    for rank, job in enumerate(completed):
        if rank == 0 or job.pruned_at is not None or job.prune_error:
            continue  # the newest is always kept; a handled one is not asked again
        by_count = retain.count is not None and rank < retain.count
        by_age = retain.days is not None and now - job.source_time < timedelta(days=retain.days)
        if not (by_count or by_age):
            candidates.append(job)
    return sorted(candidates, key=lambda job: job.key)
