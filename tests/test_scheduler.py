"""The pure scheduling rules, with plain values and no I/O."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.admission import CopyTo, Ignore, NotYet, arrival, eligibility
from shared.dedupe import DEDUPE_WINDOW, handled_for, same_snapshot, seen_recently, started_recently
from shared.ids import Scope
from shared.model import CopyError, CopyState, IndexEntry, Phase, RegionKey, Waiting
from shared.placement import selector
from shared.progress import (
    MAX_POLL_GAP,
    START_GRACE,
    Completed,
    Failed,
    Progress,
    Restart,
    assess_copy,
    next_poll_time,
    stuck_since,
)
from shared.refusals import StartRefusal, after_refusal
from shared.scheduler import (
    SOURCE_CHECK_MAX,
    SOURCE_CHECK_MIN,
    next_source_check,
    observed_source,
    overtaken,
    plan_chain,
    release_order,
)
from tests.builders import (
    SUB,
    T0,
    a_snapshot,
    chain,
    created,
    family_snapshots,
    flight_for,
    head_for,
    implicit,
    job_for,
)

REGIONS = ("westus3",)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


SELECT = selector(implicit("westus3"), ())  # the implicit policy's choice, as the engine passes it


# --- eligibility -------------------------------------------------------------------------


def test_incremental_snapshot_in_another_region_is_copied_to_each_target():
    decision = eligibility(a_snapshot().build(), implicit("westus3", "centralus"), ())
    assert isinstance(decision, CopyTo) and decision.regions == ("westus3", "centralus")


def test_target_region_equal_to_the_source_region_is_left_out():
    decision = eligibility(a_snapshot().located("westus3").build(), implicit("westus3", "centralus"), ())
    assert isinstance(decision, CopyTo) and decision.regions == ("centralus",)


def test_snapshot_already_in_every_target_region_is_ignored():
    assert isinstance(eligibility(a_snapshot().located("westus3").build(), implicit(*REGIONS), ()), Ignore)


def test_full_snapshot_is_ignored_with_a_reason():
    decision = eligibility(a_snapshot().full().build(), implicit(*REGIONS), ())
    assert isinstance(decision, Ignore) and "not incremental" in decision.reason


def test_our_own_copy_is_never_copied_again():
    assert isinstance(eligibility(a_snapshot().copy_started().build(), implicit(*REGIONS), ()), Ignore)
    tagged = a_snapshot().tagged(**{"snapcopy-source": "/subscriptions/x"}).build()
    assert isinstance(eligibility(tagged, implicit(*REGIONS), ()), Ignore)


def test_snapshot_outside_the_source_scopes_is_ignored():
    scopes = (Scope.parse(f"/subscriptions/{SUB}/resourceGroups/other-rg"),)
    decision = eligibility(a_snapshot().build(), implicit(*REGIONS), scopes)
    assert isinstance(decision, Ignore) and "COPY_SOURCE_SCOPES" in decision.reason
    assert isinstance(eligibility(a_snapshot().named("s", rg="OTHER-rg").build(), implicit(*REGIONS), scopes), CopyTo)


# --- arrival and order ---------------------------------------------------------------------


def test_snapshot_older_than_the_last_started_one_is_skipped_with_the_reason():
    older, newer = family_snapshots(2)
    head = head_for(newer, last_started_key=job_for(newer).key)
    job = arrival(job_for(older), head)
    assert job.state == CopyState.SKIPPED
    assert "creation order" in job.reason


def test_snapshot_newer_than_the_last_started_one_is_queued():
    older, newer = family_snapshots(2)
    head = head_for(older, last_started_key=job_for(older).key)
    assert arrival(job_for(newer), head).state == CopyState.QUEUED


# --- plan_chain ----------------------------------------------------------------------------


def test_first_snapshot_waits_for_a_listing_before_it_starts():
    (snap,) = family_snapshots(1)
    plan = plan_chain(head_for(snap), [job_for(snap)], T0 + minutes(1))
    assert plan.start is None and plan.needs_listing


def test_listing_lets_the_oldest_snapshot_start_first():
    snaps = family_snapshots(3)
    jobs = [job_for(snaps[2])]  # only the newest one's event arrived
    now = created(snaps[2]) + minutes(1)
    plan = plan_chain(head_for(snaps[2]), jobs, now, listing=snaps, listed_at=now, select=SELECT)
    assert [job.source_id.name for job in plan.add] == [snaps[0].id.name, snaps[1].id.name]
    assert plan.start is not None and plan.start.source_id == snaps[0].id


def test_second_snapshot_waits_until_the_first_copy_completes():
    snaps = family_snapshots(2)
    first, second = (job_for(snap) for snap in snaps)
    head = head_for(snaps[0], last_started_key=first.key, copying_key=first.key, listed_through=T0 + minutes(500))
    plan = plan_chain(head, [replace(first, state=CopyState.COPYING), second], T0 + minutes(200))
    assert plan.start is None and plan.wait == "a copy is in flight"


def test_next_snapshot_starts_once_the_chain_is_free_and_listed():
    snaps = family_snapshots(2)
    first, second = (job_for(snap) for snap in snaps)
    head = head_for(snaps[0], last_started_key=first.key, listed_through=T0 + minutes(500))
    plan = plan_chain(head, [replace(first, state=CopyState.SUCCEEDED), second], T0 + minutes(200))
    assert plan.start == second


def test_snapshot_newer_than_the_last_listing_needs_a_new_listing():
    snaps = family_snapshots(2)
    first, second = (job_for(snap) for snap in snaps)
    head = head_for(snaps[0], last_started_key=first.key, listed_through=created(snaps[1]) - timedelta(seconds=1))
    plan = plan_chain(head, [second], T0 + minutes(200))
    assert plan.start is None and plan.needs_listing


def test_a_listing_vouches_only_up_to_the_newest_family_snapshot_it_shows():
    older, newer = family_snapshots(2, every_minutes=1)
    listed_at = created(newer) + minutes(30)  # long after, yet the LIST lags: `newer` is not in it
    plan = plan_chain(
        head_for(older),
        [job_for(older), job_for(newer)],
        listed_at,
        listing=[older],
        listed_at=listed_at,
        select=SELECT,
    )
    assert plan.start is not None and plan.start.source_id == older.id  # shown by the listing itself
    assert plan.listed_through == created(older)


def test_a_lagging_listing_never_passes_over_a_snapshot_known_from_a_get():
    older, newer = family_snapshots(2)
    first = job_for(older)
    head = head_for(older, last_started_key=first.key, listed_through=created(older))
    known = job_for(newer, now=created(newer))  # its event's GET saw it
    now = created(newer) + minutes(30)
    plan = plan_chain(
        head, [replace(first, state=CopyState.SUCCEEDED), known], now, listing=[older], listed_at=now, select=SELECT
    )
    assert plan.start is None and plan.needs_listing and "shows" in plan.wait
    assert plan.check == known  # not skipped: a GET is asked whether it still exists
    assert observed_source(known, newer, now).state == CopyState.QUEUED


def test_a_listing_that_shows_a_snapshot_vouches_for_every_older_one():
    (snap,) = family_snapshots(1)
    plan = plan_chain(
        head_for(snap), [job_for(snap)], created(snap), listing=[snap], listed_at=created(snap), select=SELECT
    )
    assert plan.start is not None and plan.start.source_id == snap.id


def test_a_snapshot_missing_from_a_listing_is_skipped_only_after_a_get_says_404():
    snaps = family_snapshots(2)
    jobs = [job_for(snap) for snap in snaps]
    now = T0 + minutes(300)
    plan = plan_chain(head_for(snaps[0]), jobs, now, listing=[snaps[1]], listed_at=now, select=SELECT)
    assert plan.start is None and plan.check == jobs[0]  # nothing removed on the listing's word
    assert plan.listed_through == created(snaps[1])
    gone = observed_source(jobs[0], None, now)
    assert gone.state == CopyState.SKIPPED and "404" in gone.reason
    replan = plan_chain(head_for(snaps[0], listed_through=plan.listed_through), [gone, jobs[1]], now)
    assert replan.start is not None and replan.start.source_id == snaps[1].id


def test_a_source_recreated_under_the_same_name_counts_as_gone():
    (snap,) = family_snapshots(1)
    job = replace(job_for(snap), source_unique_id="first")
    other = a_snapshot().named(snap.id.name).of_family(snap.family_id or "").build()
    assert observed_source(job, replace(other, unique_id="second"), T0).state == CopyState.SKIPPED
    assert observed_source(job, replace(other, unique_id="first"), T0).state == CopyState.QUEUED


def test_snapshot_still_being_created_holds_the_chain():
    (snap,) = family_snapshots(1)
    creating = a_snapshot().named(snap.id.name).of_family(snap.family_id or "").still_creating().build()
    now = T0 + minutes(10)
    plan = plan_chain(head_for(snap), [job_for(creating)], now, listing=[creating], listed_at=now, select=SELECT)
    assert plan.start is None and "waiting for the source" in plan.wait


def test_a_premium_v2_source_waits_for_its_background_copy_without_spending_attempts():
    (snap,) = family_snapshots(1)
    pending = replace(snap, access_state="Pending", completion_percent=25.0)
    job = job_for(pending, now=created(snap) + minutes(10))
    assert not job.source_ready and job.source_percent == 25.0
    head = head_for(snap, listed_through=created(snap))
    plan = plan_chain(head, [job], created(snap) + minutes(11))
    assert plan.start is None and "25.0%" in plan.wait and plan.check is None
    # 25% in 10 minutes: the copy may end 30 minutes later: read it again then, not before
    assert next_source_check(job) == created(snap) + minutes(40)
    due = plan_chain(head, [job], created(snap) + minutes(40))
    assert due.check == job and due.start is None
    available = observed_source(job, replace(snap, access_state="Available"), created(snap) + minutes(40))
    assert available.source_ready and available.attempts == 0
    assert plan_chain(head, [available], created(snap) + minutes(40)).start == available


def test_instant_access_states_follow_azure():
    (snap,) = family_snapshots(1)
    assert replace(snap, access_state="AvailableWithInstantAccess").is_ready
    assert replace(snap, access_state=None).is_ready  # older API versions do not report it
    assert not replace(snap, access_state="InstantAccess").is_ready
    assert not replace(snap, access_state="Pending").is_ready


def test_source_checks_back_off_within_bounds():
    (snap,) = family_snapshots(1)
    fresh = job_for(snap, now=created(snap))
    assert next_source_check(fresh) == created(snap) + SOURCE_CHECK_MIN
    old = job_for(snap, now=created(snap) + timedelta(days=2))
    assert next_source_check(old) == created(snap) + timedelta(days=2) + SOURCE_CHECK_MAX
    halfway = job_for(snap, now=created(snap) + minutes(8))
    assert next_source_check(halfway) == created(snap) + minutes(16)  # as long again as its age


def test_a_snapshot_without_time_created_is_read_again_never_ordered():
    undated = replace(a_snapshot().build(), time_created=None)
    assert isinstance(eligibility(undated, implicit(*REGIONS), ()), NotYet)
    plan = plan_chain(head_for(a_snapshot().build()), [], T0, listing=[undated], listed_at=T0, select=SELECT)
    assert plan.add == () and plan.listed_through is None


def test_listing_ignores_other_families_copies_and_target_region_snapshots():
    snaps = family_snapshots(1)
    other = family_snapshots(1)[0]
    copy = a_snapshot().named("c").of_family(snaps[0].family_id or "").copy_started().located("westus3").build()
    now = T0 + minutes(10)
    plan = plan_chain(head_for(snaps[0]), [], now, listing=[*snaps, other, copy], listed_at=now, select=SELECT)
    assert [job.source_id for job in plan.add] == [snaps[0].id]


def test_retry_backoff_holds_the_job_until_its_time():
    (snap,) = family_snapshots(1)
    job = job_for(snap, not_before=T0 + minutes(30))
    head = head_for(snap, listed_through=T0 + minutes(10))
    assert plan_chain(head, [job], T0 + minutes(20)).start is None
    assert plan_chain(head, [job], T0 + minutes(31)).start == job


# --- release order (who gets a free slot) ----------------------------------------------------


def test_among_equal_sizes_the_oldest_waiting_chain_goes_first_and_busy_ones_are_passed_over():
    region = RegionKey(SUB, "westus3")
    waits = [Waiting(region, chain(f"f{i}"), T0 + minutes(10 - i)) for i in range(4)]
    order = release_order(waits, frozenset({"f3"}))
    assert [item.chain.family_id for item in order] == ["f2", "f1", "f0"]


def test_a_chain_whose_copy_just_ended_goes_first_then_the_largest_next_copy():
    region = RegionKey(SUB, "westus3")
    gib = 1 << 30
    waits = [
        Waiting(region, chain("small-old"), T0, next_bytes=32 * gib),
        Waiting(region, chain("big-new"), T0 + minutes(30), next_bytes=1024 * gib),
        Waiting(region, chain("unknown"), T0 - minutes(30)),  # no size recorded: counts as smallest
        Waiting(region, chain("handoff"), T0 + minutes(50), next_bytes=8 * gib),
        Waiting(region, chain("mid"), T0 + minutes(10), next_bytes=128 * gib),
    ]
    order = release_order(waits, frozenset(), handoffs=frozenset({"handoff"}))
    assert [item.chain.family_id for item in order] == ["handoff", "big-new", "mid", "small-old", "unknown"]
    # once chains have waited longer than the fair wait, they go first, oldest first
    later = release_order(
        waits, frozenset(), handoffs=frozenset({"handoff"}), now=T0 + minutes(60 * 12), fair_wait=timedelta(hours=12)
    )
    assert [item.chain.family_id for item in later] == ["unknown", "handoff", "big-new", "mid", "small-old"]


def test_largest_first_drains_a_capped_backlog_near_the_lower_bound_where_oldest_first_does_not():
    """A model of the cap: 40 chains x 3 copies, 4 slots, sizes spread 1..64 (a few big).
    Releasing the largest next copy first finishes within a few percent of
    max(longest chain, total / cap); oldest first leaves a big chain for last."""
    import heapq
    import random

    rng = random.Random(7)
    sizes = {f"d{i:02d}": rng.choice([1, 1, 1, 2, 2, 4, 8, 64]) for i in range(40)}
    cap = 4
    region = RegionKey(SUB, "westus3")

    def makespan(largest_first: bool) -> float:
        queued = {name: 3 for name in sizes}
        running: list[tuple[float, str]] = []
        now = 0.0
        while any(queued.values()) or running:
            busy = frozenset(name for _, name in running)
            waits = [
                Waiting(region, chain(name), T0, next_bytes=sizes[name] if largest_first else None)
                for name, left in sorted(queued.items())
                if left
            ]
            for item in release_order(waits, busy)[: cap - len(running)]:
                queued[item.chain.family_id] -= 1
                heapq.heappush(running, (now + sizes[item.chain.family_id], item.chain.family_id))
            now, _ = heapq.heappop(running)
        return now

    bound = max(max(sizes.values()) * 3, sum(sizes.values()) * 3 / cap)
    assert makespan(largest_first=True) <= 1.05 * bound < makespan(largest_first=False)


# --- assess_copy -----------------------------------------------------------------------------


def test_copy_at_100_percent_is_completed():
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0)
    target = a_snapshot().copy_started().located("westus3").build()
    done = type(target)(**{**target.__dict__, "completion_percent": 100.0})
    assert assess_copy(flight, done, T0 + minutes(5)) == Completed()


def test_a_copy_is_complete_only_when_arm_says_so_without_doubt():
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0)
    target = a_snapshot().copy_started().located("westus3").build()  # Succeeded, no percent
    assert isinstance(assess_copy(flight, target, T0 + minutes(5)), Progress)
    assert isinstance(assess_copy(flight, replace(target, access_state="Pending"), T0 + minutes(5)), Progress)
    assert assess_copy(flight, replace(target, access_state="Available"), T0 + minutes(5)) == Completed()


def test_copy_progress_is_recorded_and_the_next_poll_is_estimated_from_the_rate():
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0)
    target = a_snapshot().copy_started().located("westus3").build()
    half = type(target)(**{**target.__dict__, "completion_percent": 50.0})
    outcome = assess_copy(flight, half, T0 + minutes(10))
    assert isinstance(outcome, Progress) and outcome.changed and outcome.percent == 50.0
    # 10 more minutes expected; polled a little before that, never later
    assert T0 + minutes(19) < outcome.next_poll_at <= T0 + minutes(20)


@given(
    duration=st.floats(min_value=30, max_value=48 * 3600),
    elapsed_fraction=st.floats(min_value=0.001, max_value=0.999),
)
def test_the_next_poll_is_never_after_a_steady_copy_finishes_nor_beyond_the_gap(
    duration: float, elapsed_fraction: float
):
    """ARM floors completionPercent to 0.1: whatever the copy's length and when it is read,
    a copy that keeps its pace is read again no later than it finishes."""
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0)
    elapsed = duration * elapsed_fraction
    percent = math.floor(1000.0 * elapsed / duration) / 10.0
    now = T0 + timedelta(seconds=elapsed)
    polled = next_poll_time(flight, percent, now)
    assert now <= polled <= now + MAX_POLL_GAP
    assert polled <= T0 + timedelta(seconds=duration) + timedelta(microseconds=1)


def test_copy_with_a_completion_error_fails_with_arms_code():
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0)
    target = a_snapshot().copy_started().located("westus3").build()
    failed = type(target)(**{**target.__dict__, "copy_error": CopyError("CopySourceNotFound", "gone")})
    assert assess_copy(flight, failed, T0 + minutes(5)) == Failed(CopyError("CopySourceNotFound", "gone"))


def test_reserved_slot_whose_put_never_landed_is_restarted_after_the_grace():
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0, phase=Phase.STARTING)
    assert isinstance(assess_copy(flight, None, T0 + START_GRACE / 2), Progress)
    assert assess_copy(flight, None, T0 + START_GRACE) == Restart()


def test_copy_that_vanished_from_arm_fails_after_the_grace():
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0)
    outcome = assess_copy(flight, None, T0 + minutes(60))
    assert isinstance(outcome, Failed) and outcome.error.code == "TargetNotFound"


# --- after_refusal (the failure rule) ---------------------------------------------------------


def test_passing_refusal_is_retried_with_growing_backoff_then_fails_and_the_chain_moves_on():
    (snap,) = family_snapshots(1)
    job = job_for(snap)
    refusal = StartRefusal(CopyError("TooManyRequests", "slow down"), retryable=True)
    first = after_refusal(job, refusal, T0, max_attempts=3)
    second = after_refusal(first, refusal, T0, max_attempts=3)
    assert first.state == second.state == CopyState.QUEUED
    assert first.not_before is not None and second.not_before is not None and second.not_before > first.not_before
    third = after_refusal(second, refusal, T0, max_attempts=3)
    assert third.state == CopyState.FAILED and third.error == refusal.error and "moved on" in third.reason


def test_permanent_refusal_fails_at_once():
    (snap,) = family_snapshots(1)
    refusal = StartRefusal(CopyError("BadRequest", "no"), retryable=False)
    assert after_refusal(job_for(snap), refusal, T0, max_attempts=5).state == CopyState.FAILED


def test_source_deleted_before_start_is_skipped():
    (snap,) = family_snapshots(1)
    refusal = StartRefusal(CopyError("ResourceNotFound", "gone"), retryable=False, source_missing=True)
    assert after_refusal(job_for(snap), refusal, T0, max_attempts=5).state == CopyState.SKIPPED


def test_a_listing_older_than_the_heads_belief_never_calls_a_live_snapshot_deleted():
    """Another handler listed later (and saw the new snapshot); this run holds an older
    listing that predates it. Absence from the older listing proves nothing."""
    older, newer = family_snapshots(2)
    head = head_for(older, last_started_key=job_for(older).key, listed_through=created(newer))
    stale_at = created(newer) - minutes(1)
    plan = plan_chain(head, [job_for(newer)], created(newer), listing=[older], listed_at=stale_at, select=SELECT)
    assert plan.start == job_for(newer) and plan.listed_through == created(newer)  # never forgotten


def test_a_copy_is_stuck_after_a_quiet_spell_and_free_again_on_progress():
    (snap,) = family_snapshots(1)
    flight = flight_for(job_for(snap), T0)
    after = timedelta(minutes=120)
    assert stuck_since(flight, False, T0 + timedelta(minutes=119), after) is None
    flagged = stuck_since(flight, False, T0 + timedelta(minutes=120), after)
    assert flagged == T0 + timedelta(minutes=120)
    later = replace(flight, stuck_since=flagged)
    assert stuck_since(later, False, T0 + timedelta(hours=9), after) == flagged  # keeps its first time
    assert stuck_since(later, True, T0 + timedelta(hours=9), after) is None
    moved = replace(flight, progressed_at=T0 + timedelta(minutes=100))
    assert stuck_since(moved, False, T0 + timedelta(minutes=200), after) is None  # quiet since 100, not 0


# --- dedupe -------------------------------------------------------------------------------------


def test_a_report_seen_within_event_grids_retry_window_is_a_duplicate_and_a_reused_name_is_not():
    (snap,) = family_snapshots(1)
    entry = IndexEntry(snap.id, "source", unique_id="u1", recorded_at=T0, regions="westus3")
    assert seen_recently(entry, T0 + DEDUPE_WINDOW - minutes(1)) and not seen_recently(entry, T0 + DEDUPE_WINDOW)
    assert seen_recently(replace(entry, recorded_at=None), T0 + timedelta(days=30))  # rows from before times
    assert same_snapshot(entry, replace(snap, unique_id="u1")) and not same_snapshot(
        entry, replace(snap, unique_id="u2")
    )
    assert handled_for(entry, replace(snap, unique_id="u1"), "westus3")
    assert not handled_for(entry, replace(snap, unique_id="u2"), "westus3")  # a new snapshot under the old name
    assert not handled_for(entry, snap, "centralus")
    assert started_recently(T0, T0 + minutes(5)) and not started_recently(None, T0)


# --- policy mode `latest` -------------------------------------------------------------------


def test_in_mode_latest_the_newest_queued_snapshot_starts_and_the_older_ones_are_superseded():
    snaps = family_snapshots(3)
    jobs = [job_for(snap, policy="p") for snap in snaps]
    head = head_for(snaps[0], listed_through=created(snaps[2]))
    now = created(snaps[2]) + minutes(1)
    assert plan_chain(head, jobs, now).start == jobs[0]  # mode all: the oldest first
    plan = plan_chain(head, jobs, now, latest=frozenset({"p"}))
    assert plan.start == jobs[2]
    passed = overtaken(head, jobs, jobs[2].key, now, superseded=True)
    assert [job.state for job in passed] == [CopyState.SKIPPED] * 2
    assert all(job.reason.startswith(f"superseded by {snaps[2].id.name}") for job in passed)
    assert plan_chain(head, jobs, now, latest=frozenset({"other"})).start == jobs[0]


def test_mode_latest_never_supersedes_a_snapshot_another_policy_promised():
    snaps = family_snapshots(3)
    jobs = [job_for(snaps[0], policy="all"), job_for(snaps[1], policy="p"), job_for(snaps[2], policy="p")]
    head = head_for(snaps[0], listed_through=created(snaps[2]))
    now = created(snaps[2]) + minutes(1)
    assert plan_chain(head, jobs, now, latest=frozenset({"p"})).start == jobs[0]  # creation order for `all`
    assert plan_chain(head, jobs[1:], now, latest=frozenset({"p"})).start == jobs[2]


def test_mode_latest_takes_the_newest_ready_source_when_the_newest_is_not_ready():
    snaps = family_snapshots(3)
    jobs = [job_for(snap, policy="p") for snap in snaps]
    jobs[2] = replace(jobs[2], source_ready=False, source_percent=10.0, source_checked_at=created(snaps[2]))
    head = head_for(snaps[0], listed_through=created(snaps[2]))
    plan = plan_chain(head, jobs, created(snaps[2]) + minutes(1), latest=frozenset({"p"}))
    assert plan.start == jobs[1]
