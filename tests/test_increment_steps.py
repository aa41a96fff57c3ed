"""What a diff increment in flight needs next (pure): every half-done state the timer can
find leads to the step that finishes it, and a healthy one is left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.increment_steps import (
    CHUNK_GRACE,
    GRANT_MARGIN,
    PLAN_GRACE,
    Action,
    IncrementState,
    Progress,
    all_done,
    next_step,
)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def copying(chunks: int = 4, expires: datetime | None = T0 + 6 * HOUR) -> Progress:
    return Progress(IncrementState.COPYING, 1, chunks, T0, expires)


def test_a_healthy_increment_is_left_alone():
    assert next_step(copying(), {0, 1}, T0 + timedelta(minutes=5)).action is Action.WAIT
    assert next_step(Progress(IncrementState.PLANNING, 1, 0, T0), set(), T0 + PLAN_GRACE).action is Action.WAIT


def test_a_planner_that_died_is_replaced_by_a_new_plan():
    step = next_step(Progress(IncrementState.PLANNING, 1, 0, T0), set(), T0 + PLAN_GRACE + timedelta(seconds=1))
    assert step.action is Action.PLAN and "planning stopped" in step.why


def test_an_increment_whose_chunks_are_all_done_is_finished_whoever_died():
    assert next_step(copying(), {0, 1, 2, 3}, T0).action is Action.FINISH
    assert next_step(copying(chunks=0), set(), T0).action is Action.FINISH  # an empty diff
    stuck = Progress(IncrementState.FINISHING, 1, 4, T0)
    assert next_step(stuck, {0, 1, 2, 3}, T0 + PLAN_GRACE + timedelta(seconds=1)).action is Action.FINISH


def test_lost_chunks_go_on_the_queue_again_and_only_they():
    step = next_step(copying(), {0, 2}, T0 + CHUNK_GRACE + timedelta(seconds=1))
    assert step.action is Action.REQUEUE and step.missing == (1, 3)


def test_read_access_is_renewed_before_it_runs_out():
    assert next_step(copying(expires=T0 + HOUR), {0}, T0 + HOUR - GRANT_MARGIN).action is Action.REGRANT


@given(
    state=st.sampled_from(list(IncrementState)),
    chunks=st.integers(0, 20),
    done=st.sets(st.integers(0, 25)),
    minutes=st.integers(0, 600),
)
def test_every_state_leads_somewhere_once_it_has_been_quiet_long_enough(state, chunks, done, minutes):
    progress = Progress(state, 3, chunks, T0, T0 + 24 * HOUR)
    step = next_step(progress, done, T0 + timedelta(minutes=minutes))
    if minutes > max(PLAN_GRACE, CHUNK_GRACE).total_seconds() / 60:
        assert step.action is not Action.WAIT  # nothing half-done stays so
    if step.action is Action.REQUEUE:
        assert step.missing and not set(step.missing) & done
    if state is IncrementState.PLANNING:
        assert not all_done(progress, done)
