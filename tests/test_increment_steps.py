"""What a diff increment in flight needs next (pure): every half-done state the timer can
find leads to the step that finishes it, and a healthy one is left alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.increment_steps import (
    CHUNK_GRACE,
    FINISH_LIMIT,
    GRANT_MARGIN,
    MAX_PLANS,
    PLAN_GRACE,
    RECOVER_LIMIT,
    Action,
    IncrementState,
    Progress,
    all_done,
    next_step,
)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def at(*indexes: int, when: datetime = T0) -> dict[int, datetime]:
    """Done chunks, each done at `when`."""
    return dict.fromkeys(indexes, when)


def copying(chunks: int = 4, expires: datetime | None = T0 + 6 * HOUR) -> Progress:
    return Progress(IncrementState.COPYING, 1, chunks, T0, expires)


def test_a_healthy_increment_is_left_alone():
    assert next_step(copying(), at(0, 1), T0 + timedelta(minutes=5)).action is Action.WAIT
    assert next_step(Progress(IncrementState.PLANNING, 1, 0, T0), {}, T0 + PLAN_GRACE).action is Action.WAIT


def test_a_planner_that_died_is_replaced_by_a_new_plan():
    step = next_step(Progress(IncrementState.PLANNING, 1, 0, T0), {}, T0 + PLAN_GRACE + timedelta(seconds=1))
    assert step.action is Action.PLAN and "planning stopped" in step.why


def test_an_increment_whose_chunks_are_all_done_is_finished_whoever_died():
    assert next_step(copying(), at(0, 1, 2, 3), T0).action is Action.FINISH
    assert next_step(copying(chunks=0), {}, T0).action is Action.FINISH  # an empty diff
    stuck = Progress(IncrementState.FINISHING, 1, 4, T0)
    assert next_step(stuck, at(0, 1, 2, 3), T0 + PLAN_GRACE + timedelta(seconds=1)).action is Action.FINISH


def test_an_increment_whose_chunks_went_quiet_is_recovered_and_one_planned_too_often_fails():
    step = next_step(copying(), at(0, 2), T0 + CHUNK_GRACE + timedelta(seconds=1))
    assert step.action is Action.RECOVER and "2 not done" in step.why  # the shell plans again if the queue is empty
    worn = replace(copying(), plans=MAX_PLANS)
    step = next_step(worn, at(0, 2), T0 + CHUNK_GRACE + timedelta(seconds=1))
    assert step.action is Action.FAIL and f"after {MAX_PLANS} plans" in step.why
    assert next_step(replace(worn, grant_expires=T0), {}, T0).action is Action.FAIL


def test_progress_is_the_newest_done_chunk_so_a_long_increment_is_not_planned_again():
    later = T0 + CHUNK_GRACE
    assert next_step(copying(), at(0, when=later), later + CHUNK_GRACE).action is Action.WAIT
    assert next_step(copying(), at(0, when=later), later + CHUNK_GRACE + timedelta(seconds=1)).action is Action.RECOVER


def test_an_increment_waiting_for_read_access_asks_again_at_every_run():
    waiting = Progress(IncrementState.WAITING, 1, 0, T0)
    assert next_step(waiting, {}, T0).action is Action.PLAN


def test_read_access_is_renewed_before_it_runs_out():
    assert next_step(copying(expires=T0 + HOUR), at(0), T0 + HOUR - GRANT_MARGIN).action is Action.REGRANT


@given(
    state=st.sampled_from(list(IncrementState)),
    chunks=st.integers(0, 20),
    done=st.sets(st.integers(0, 25)),
    minutes=st.integers(0, 600),
)
def test_every_state_leads_somewhere_once_it_has_been_quiet_long_enough(state, chunks, done, minutes):
    progress = Progress(state, 3, chunks, T0, T0 + 24 * HOUR)
    step = next_step(progress, at(*done), T0 + timedelta(minutes=minutes))
    if minutes > max(PLAN_GRACE, CHUNK_GRACE).total_seconds() / 60:
        assert step.action is not Action.WAIT  # nothing half-done stays so
    if state in (IncrementState.PLANNING, IncrementState.WAITING):
        assert not all_done(progress, done)


def test_read_access_that_ran_out_or_was_refused_plans_the_increment_again():
    step = next_step(copying(expires=T0 + HOUR), at(0), T0 + HOUR)
    assert step.action is Action.PLAN and "ran out or was refused" in step.why


def test_a_plan_whose_planner_died_while_queueing_is_planned_again_and_a_busy_queue_waits_a_day():
    unsent = replace(copying(), queued=False)
    assert next_step(unsent, {}, T0 + PLAN_GRACE).action is Action.WAIT
    step = next_step(unsent, {}, T0 + PLAN_GRACE + timedelta(seconds=1))
    assert step.action is Action.PLAN and "before every chunk was on the queue" in step.why
    quiet = next_step(copying(), {}, T0 + CHUNK_GRACE + timedelta(seconds=1))
    assert quiet.action is Action.RECOVER  # the shell plans again only if the queue is empty
    assert next_step(copying(expires=None), {}, T0 + RECOVER_LIMIT + timedelta(seconds=1)).action is Action.REPLAN


def test_a_finish_that_keeps_failing_fails_its_increment():
    finishing = Progress(IncrementState.FINISHING, 1, 4, T0)
    assert next_step(finishing, at(0, 1, 2, 3), T0 + FINISH_LIMIT).action is Action.FINISH
    step = next_step(finishing, at(0, 1, 2, 3), T0 + FINISH_LIMIT + timedelta(seconds=1))
    assert step.action is Action.FAIL and "finish kept failing" in step.why
