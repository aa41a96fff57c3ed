"""The notification contract, pure: which notices a job's write owes, and their ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.ids import ResourceId
from shared.model import ChainHead, ChainKey, CopyError, CopyState, InFlight, Job, Phase, RegionKey
from shared.notices import (
    QUEUED_MARK,
    Notice,
    NoticeType,
    announce,
    assumed_announced,
    copy_id,
    due,
    rpo_notice,
    stuck_notice,
)
from shared.rpo import Breach, behind, breach_change

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
FAMILY = "0b6c9a54-2c1e-4a8e-9a53-6f1f1f1f1f1f"
SOURCE = ResourceId("sub", "rg", "snapshots", "vm0-data0-s0")
TARGET = ResourceId("sub", "rg", "snapshots", "vm0-data0-s0-westus3")
CHAIN = ChainKey(FAMILY, "westus3")


def job(**changes: Any) -> Job:
    return replace(Job(CHAIN, SOURCE, T0, TARGET, queued_at=T0), **changes)


def started(at: datetime = T0) -> Job:
    return job(state=CopyState.COPYING, started_at=at, attempts=1)


def test_a_queued_job_owes_nothing_and_each_state_its_notice_once():
    assert due(job()) == []
    copying, (notice,) = announce(started())
    assert notice.type is NoticeType.COPY_STARTED and copying.announced == NoticeType.COPY_STARTED.value
    assert announce(replace(copying, percent=40.0)) == (replace(copying, percent=40.0), [])  # written again
    done, (completed,) = announce(replace(copying, state=CopyState.SUCCEEDED, finished_at=T0 + timedelta(hours=1)))
    assert completed.type is NoticeType.COPY_COMPLETED and done.announcements == 2
    assert completed.data["completedAt"] == (T0 + timedelta(hours=1)).isoformat()
    assert completed.data["completionPercent"] == 100.0
    _, (gone,) = announce(replace(done, pruned_at=T0 + timedelta(days=3), pruned_by="gold"))
    assert gone.type is NoticeType.COPY_PRUNED and gone.data["prunedBy"] == "gold"
    assert len({notice.id, completed.id, gone.id}) == 3


def test_an_end_whose_start_was_not_announced_announces_the_start_first():
    ended = job(state=CopyState.SUCCEEDED, started_at=T0, finished_at=T0 + timedelta(minutes=5))
    _, notices = announce(ended)
    assert [n.type for n in notices] == [NoticeType.COPY_STARTED, NoticeType.COPY_COMPLETED]
    assert notices[0].data["state"] == "copying" and notices[0].data["completedAt"] is None


def test_a_copy_refused_before_it_started_fails_without_a_start():
    refused = job(state=CopyState.FAILED, finished_at=T0, error=CopyError("OperationNotAllowed", "no"))
    (failed,) = announce(refused)[1]
    assert failed.type is NoticeType.COPY_FAILED
    assert failed.data["error"] == {"code": "OperationNotAllowed", "message": "no"}


def test_a_skip_says_why():
    (skipped,) = announce(job(state=CopyState.SKIPPED, finished_at=T0, reason="superseded by a newer snapshot"))[1]
    assert skipped.type is NoticeType.COPY_SKIPPED and skipped.data["reason"] == "superseded by a newer snapshot"
    (cancelled,) = announce(job(state=CopyState.CANCELLED, finished_at=T0))[1]
    assert cancelled.data["reason"] == "cancelled" and cancelled.data["state"] == "cancelled"


def test_ids_are_fixed_by_the_copy_and_the_transition_and_a_retry_gets_new_ones():
    first = announce(started())[1][0]
    assert announce(started())[1][0].id == first.id  # recorded twice by racing writers: one id
    failed, _ = announce(replace(announce(started())[0], state=CopyState.FAILED, finished_at=T0))
    _, (restart,) = announce(replace(failed, state=CopyState.COPYING, started_at=T0 + timedelta(hours=2)))
    assert restart.type is NoticeType.COPY_STARTED and restart.id != first.id
    assert restart.data["copyId"] == copy_id(CHAIN, job().key) == first.data["copyId"]


def test_the_data_carries_the_documented_fields():
    (notice,) = announce(started())[1]
    assert notice.subject == str(SOURCE)
    assert set(notice.data) == {
        "sourceSnapshotId", "targetRegion", "targetSnapshotId", "state", "copyId",
        "completionPercent", "startedAt", "completedAt",
    }  # fmt: skip
    assert Notice.from_json(notice.to_json()) == notice


def test_a_stuck_copy_and_an_rpo_breach():
    flight = InFlight(RegionKey("sub", "westus3"), CHAIN, job().key, SOURCE, TARGET, Phase.COPYING, T0, percent=12.0)
    stuck = stuck_notice(flight, T0 + timedelta(hours=2), timedelta(hours=2))
    assert stuck.type is NoticeType.COPY_STUCK and stuck.data["reason"] == "no progress for 120 minutes"
    disk = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/disks/d"
    head = ChainHead(CHAIN, (), SOURCE.group, disk_id=disk)
    breach = rpo_notice(head, timedelta(hours=26), T0, "")
    assert breach.subject == head.disk_id and breach.data["rpoSeconds"] == 26 * 3600
    assert rpo_notice(replace(head, disk_id=""), timedelta(hours=26), T0, str(SOURCE)).subject == str(SOURCE)


def test_a_breach_is_news_once_and_again_only_after_it_ended():
    head = ChainHead(CHAIN, (), SOURCE.group, last_completed_key=job().key)
    alert = timedelta(hours=25)
    late = behind(head, [], T0 + timedelta(hours=26))
    assert breach_change(head, late, alert) is Breach.BEGAN
    announced = replace(head, rpo_breached_at=T0 + timedelta(hours=26))
    assert breach_change(announced, late, alert) is None
    assert breach_change(announced, timedelta(hours=1), alert) is Breach.ENDED
    assert breach_change(head, timedelta(hours=1), alert) is None
    # no copy yet: the oldest snapshot waiting counts
    assert behind(ChainHead(CHAIN, (), SOURCE.group), [T0], T0 + timedelta(hours=3)) == timedelta(hours=3)


def test_a_retried_copy_announces_its_new_attempt_whatever_it_ends_as():
    failed, _ = announce(job(state=CopyState.FAILED, finished_at=T0, error=CopyError("X", "x")))
    queued, owed = announce(replace(failed, state=CopyState.QUEUED, finished_at=None, error=None))
    assert owed == [] and queued.announced == QUEUED_MARK
    refused = replace(queued, state=CopyState.FAILED, finished_at=T0 + timedelta(hours=1), error=CopyError("Y", "y"))
    (again,) = announce(refused)[1]  # refused for good at its next start: told again, with a new id
    assert again.type is NoticeType.COPY_FAILED and again.data["error"]["code"] == "Y"
    assert again.id != announce(job(state=CopyState.FAILED, finished_at=T0, error=CopyError("X", "x")))[1][0].id


def test_a_job_stored_before_notifications_counts_its_stored_state_as_told():
    done = job(state=CopyState.SUCCEEDED, started_at=T0, finished_at=T0)
    stored = replace(done, announced=assumed_announced(done))
    assert announce(replace(stored, prune_error="locked"))[1] == []  # rewritten: nothing replayed
    assert [n.type for n in announce(replace(stored, pruned_at=T0))[1]] == [NoticeType.COPY_PRUNED]
    copying = started()
    in_flight = replace(copying, announced=assumed_announced(copying))
    ended = replace(in_flight, state=CopyState.SUCCEEDED, finished_at=T0)
    assert [n.type for n in announce(ended)[1]] == [NoticeType.COPY_COMPLETED]  # its end is news
