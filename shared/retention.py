"""Retention: which completed copies of a chain its policy no longer keeps.

A policy's `retain` applies to the copies that policy made (a chain's copies may come
from several policies, when they select its snapshots by tag): one is kept if either
rule keeps it: it is among the policy's `count` newest completed copies in the chain, or
its source snapshot is younger than `days` (by the source's `timeCreated`). The newest
completed copy of the chain is always kept, whatever the rules say: it is the chain's
recovery point and the base of its next incremental copy. A copy in flight, or one a
pruning already handled, is never a candidate.

Pure: it must not read the table, ARM or a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.model import CopyState, Job
from shared.policies import Retention


def prunable(
    done: Sequence[Job], policy: str, retain: Retention | None, now: datetime, *, copying_key: str = ""
) -> list[Job]:
    """The chain's completed copies made by `policy` that its `retain` does not keep, oldest first."""
    if retain is None:
        return []
    completed = [job for job in done if job.state == CopyState.SUCCEEDED and job.key != copying_key]
    newest = max((job.key for job in completed), default="")
    own = sorted((job for job in completed if job.policy == policy), key=lambda job: job.key, reverse=True)
    candidates = []
    for rank, job in enumerate(own):
        if job.key == newest or job.pruned_at is not None or job.prune_error:
            continue  # the newest is always kept; a handled one is not asked again
        by_count = retain.count is not None and rank < retain.count
        by_age = retain.days is not None and now - job.source_time < timedelta(days=retain.days)
        if not (by_count or by_age):
            candidates.append(job)
    return sorted(candidates, key=lambda job: job.key)
