"""A chain's recovery point (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.model import CopyState
from shared.rpo import breached, chain_rpo, key_time
from tests.builders import created, family_snapshots, head_for, job_for


def test_rpo_is_the_age_of_the_newest_completed_source_else_of_the_oldest_waiting_one():
    snaps = family_snapshots(3)
    jobs = [job_for(snap) for snap in snaps]
    head = head_for(snaps[0])
    now = created(snaps[2]) + timedelta(hours=2)
    assert chain_rpo(head, [], now) is None  # nothing to protect yet
    assert chain_rpo(head, jobs, now) == now - created(snaps[0])  # none completed: the oldest waiting
    done = replace(head, last_completed_key=jobs[1].key)
    assert key_time(jobs[1].key) == created(snaps[1])
    assert chain_rpo(done, [replace(jobs[2], state=CopyState.COPYING)], now) == now - created(snaps[1])


def test_a_breach_is_strictly_over_the_threshold():
    assert breached(timedelta(minutes=61), timedelta(hours=1))
    assert not breached(timedelta(hours=1), timedelta(hours=1))
    assert not breached(None, timedelta(0))
