"""Which completed copies a chain's `retain` lets go (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.model import CopyState, Job
from shared.policies import Retention
from shared.retention import prunable
from tests.builders import T0, family_snapshots, job_for

DAY = timedelta(days=1)


def completed(count: int) -> list[Job]:
    """`count` succeeded copies of one family, a day apart, oldest first."""
    snaps = family_snapshots(count, every_minutes=24 * 60)
    return [replace(job_for(snap), state=CopyState.SUCCEEDED) for snap in snaps]


def names(jobs: list[Job]) -> list[str]:
    return [job.source_id.name[-2:] for job in jobs]


def test_without_retain_everything_is_kept():
    assert prunable(completed(5), "default", None, T0 + 30 * DAY) == []


def test_count_keeps_the_newest_and_lets_the_older_go_oldest_first():
    jobs = completed(5)
    assert names(prunable(jobs, "default", Retention(count=2), T0 + 30 * DAY)) == ["s0", "s1", "s2"]


def test_days_keep_what_is_younger_than_the_age_by_the_sources_time():
    jobs = completed(5)  # sources at T0, T0+1d, ... T0+4d
    now = jobs[-1].source_time + timedelta(hours=1)  # s3 is a day old, s2 two days
    assert names(prunable(jobs, "default", Retention(days=2), now)) == ["s0", "s1", "s2"]


def test_either_rule_keeps_a_copy():
    jobs = completed(5)
    now = jobs[-1].source_time + timedelta(hours=1)
    assert names(prunable(jobs, "default", Retention(count=4, days=2), now)) == ["s0"]
    assert names(prunable(jobs, "default", Retention(count=1, days=3), now)) == ["s0", "s1"]


def test_the_newest_completed_copy_is_always_kept_and_nothing_in_flight_or_unfinished_is_a_candidate():
    jobs = completed(3)
    later = T0 + 365 * DAY
    assert names(prunable(jobs, "default", Retention(days=1), later)) == ["s0", "s1"]  # not s2, however old
    copying = [*jobs, replace(job_for(family_snapshots(1)[0]), state=CopyState.COPYING)]
    assert names(prunable(copying, "default", Retention(count=1), later)) == ["s0", "s1"]
    failed = [replace(jobs[0], state=CopyState.FAILED), *jobs[1:]]
    assert names(prunable(failed, "default", Retention(count=1), later)) == ["s1"]


def test_a_copy_already_pruned_or_declined_is_not_asked_again():
    jobs = completed(4)
    jobs[0] = replace(jobs[0], pruned_at=T0, pruned_by="p")
    jobs[1] = replace(jobs[1], prune_error="not pruned: locked")
    assert names(prunable(jobs, "default", Retention(count=1), T0 + 30 * DAY)) == ["s2"]


def test_a_policys_retain_counts_and_prunes_only_the_copies_that_policy_made():
    jobs = completed(6)
    mixed = [replace(job, policy="gold" if index % 2 else "all") for index, job in enumerate(jobs)]
    # gold made s1, s3, s5 (s5 the chain's newest); all made s0, s2, s4 and keeps everything
    assert names(prunable(mixed, "gold", Retention(count=1), T0 + 30 * DAY)) == ["s1", "s3"]
    assert names(prunable(mixed, "all", None, T0 + 30 * DAY)) == []
    # the chain's newest copy is kept even when another policy's rule would let it go
    assert "s5" not in names(prunable(mixed, "gold", Retention(days=1), T0 + 365 * DAY))
    assert names(prunable(mixed, "all", Retention(count=1), T0 + 30 * DAY)) == ["s0", "s2"]
