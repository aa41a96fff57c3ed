"""Rows to models and back (shared/tables/codec.py), with plain dicts: no Azurite."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.model import CopyError, CopyState, Phase, Waiting
from shared.tables.codec import (
    flight_entity,
    flight_from,
    head_entity,
    head_from,
    job_entity,
    job_from,
    wait_entity,
    waiting_from,
)
from tests.builders import T0, family_snapshots, flight_for, head_for, job_for


def test_a_job_reads_back_as_it_was_written():
    (snap,) = family_snapshots(1)
    job = replace(
        job_for(snap),
        state=CopyState.FAILED,
        attempts=3,
        error=CopyError("OperationNotAllowed", "busy"),
        reason="moved on",
        source_ready=False,
        source_percent=42.5,
        source_checked_at=T0 + timedelta(minutes=3),
        size_bytes=128 << 30,
        announced="Snapcopy.CopyFailed",
        announcements=2,
        method="diff",
        blob_endpoint="https://drstore.blob.core.windows.net",
        blob_container="snapcopy",
    )
    assert job_from(job.chain, job_entity(job)) == job


def test_a_job_row_from_before_notifications_counts_its_stored_state_as_announced():
    """So a later write of it tells only what happens next (shared/notices.py)."""
    (snap,) = family_snapshots(1)
    row = job_entity(replace(job_for(snap), state=CopyState.SUCCEEDED))
    del row["Announced"], row["Announcements"]
    read = job_from(job_for(snap).chain, row)
    assert read.announced == "Snapcopy.CopyCompleted" and read.announcements == 0
    queued = job_entity(job_for(snap))
    del queued["Announced"]
    assert job_from(job_for(snap).chain, queued).announced == "queued"


def test_a_head_and_a_flight_and_a_wait_marker_read_back_as_written():
    (snap,) = family_snapshots(1)
    head = head_for(snap, last_started_key="k1", copying_key="k1", listed_through=T0, method="diff", diff_base="s0")
    assert head_from(head.key, head_entity(head)) == head
    flight = flight_for(job_for(snap), T0, Phase.STARTING, attempt="a1", percent=12.0, next_poll_at=T0)
    assert flight_from(flight.region, flight_entity(flight)) == flight
    marker = Waiting(flight.region, flight.chain, T0, from_key="k0", next_bytes=1 << 30)
    assert waiting_from(marker.region, marker.chain, wait_entity(marker)) == marker


def test_a_queued_row_from_before_readiness_was_read_is_checked_once_before_it_starts():
    """Rows written before snapshotAccessState was read took readiness from provisioningState
    alone: a queued one is read as not ready, so a GET looks at its source first."""
    (snap,) = family_snapshots(1)
    row = job_entity(job_for(snap))
    del row["SourceCheckedAt"], row["SourcePercent"]
    assert job_from(job_for(snap).chain, row).source_ready is False
    done = {**row, "State": "succeeded"}
    assert job_from(job_for(snap).chain, done).source_ready is True


def test_a_heads_old_time_based_listing_promise_is_not_read():
    (snap,) = family_snapshots(1)
    head = head_for(snap)
    row = {**head_entity(head), "ListedThrough": T0 + timedelta(days=1)}
    del row["VouchedThrough"]
    assert head_from(head.key, row).listed_through is None


def test_rows_missing_the_times_they_must_have_are_refused_not_guessed():
    (snap,) = family_snapshots(1)
    job = job_for(snap)
    with pytest.raises(ValueError, match="SourceTime"):
        job_from(job.chain, {**job_entity(job), "SourceTime": None})
    flight = flight_for(job, T0)
    with pytest.raises(ValueError, match="StartedAt"):
        flight_from(flight.region, {**flight_entity(flight), "StartedAt": None})
