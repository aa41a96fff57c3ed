"""The Table repository against real Azurite: ETags, batches, the one-slot-per-family rule."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from local.tables import TableOperations, TableRows
from shared.ids import ResourceId
from shared.model import CopyState, Job, Phase, RegionKey, Waiting
from shared.store import (
    CONFLICT_PAUSE,
    CONFLICT_PAUSE_MAX,
    CapacityExhausted,
    Conflict,
    IndexEntry,
    MissingETag,
    StateStore,
    retrying,
)
from tests.builders import SUB, T0, family_snapshots, flight_for, head_for, job_for

pytestmark = pytest.mark.azurite
REGION = RegionKey(SUB, "westus3")


def test_table_is_created_on_first_use_and_the_index_round_trips(store: StateStore):
    snap = ResourceId(SUB, "prod-rg", "snapshots", "s1")
    assert store.get_index(snap) is None
    store.put_index(IndexEntry(snap, "ignored", "not incremental"))
    lower = ResourceId.parse(str(snap).lower())
    entry = store.get_index(lower)
    assert entry is not None and entry.kind == "ignored" and entry.snapshot_id == snap


def test_head_create_is_idempotent_and_saves_are_etag_conditional(store: StateStore):
    (snap,) = family_snapshots(1)
    head = store.create_head(head_for(snap))
    again = store.create_head(head_for(snap))
    assert again.etag == head.etag
    store.save_head(replace(head, listed_through=T0))
    with pytest.raises(Conflict):
        store.save_head(replace(head, listed_through=T0 + timedelta(hours=1)))  # stale ETag
    loaded = store.load_head(head.key)
    assert loaded is not None and loaded.listed_through == T0


def arrive(store: StateStore, job: Job) -> Job:
    """Insert a job the way arrivals do: with a conditional touch of its chain head."""
    head = store.load_head(job.chain)
    assert head is not None
    stored, _ = store.add_job_guarded(head, job)
    return stored


def test_jobs_sort_in_creation_order_and_pending_starts_at_the_watermark(store: StateStore):
    snaps = family_snapshots(4)
    head = store.create_head(head_for(snaps[0]))
    for snap in reversed(snaps):  # inserted out of order
        arrive(store, job_for(snap))
    assert [job.source_id for job in store.list_jobs(head.key)] == [snap.id for snap in snaps]
    watermark = job_for(snaps[1]).key
    pending = store.load_pending(replace(head, last_started_key=watermark))
    assert [job.source_id for job in pending] == [snap.id for snap in snaps[1:]]


def test_duplicate_job_insert_conflicts_and_leaves_the_stored_row_unchanged(store: StateStore):
    """The arrival path then reads the row again and returns it (no blind overwrite)."""
    (snap,) = family_snapshots(1)
    store.create_head(head_for(snap))
    first = arrive(store, job_for(snap))
    store.save_job(replace(first, state=CopyState.COPYING))
    with pytest.raises(Conflict):
        arrive(store, job_for(snap))
    stored = store.load_job(first.chain, first.key)
    assert stored is not None and stored.state == CopyState.COPYING


def test_chain_batch_is_all_or_nothing(store: StateStore):
    snaps = family_snapshots(2)
    head = store.create_head(head_for(snaps[0]))
    jobs = [arrive(store, job_for(snap)) for snap in snaps]
    head = store.load_head(head.key) or head  # arrivals touched it
    stale = jobs[1]
    store.save_job(replace(jobs[1], attempts=1))  # moves the second job's ETag
    with pytest.raises(Conflict):
        store.save_chain(replace(head, copying_key=jobs[0].key), [replace(jobs[0], state=CopyState.COPYING), stale])
    loaded = store.load_head(head.key)
    assert loaded is not None and loaded.copying_key == ""
    assert store.list_jobs(head.key)[0].state == CopyState.QUEUED


def test_a_family_holds_at_most_one_slot_and_the_cap_is_exact(store: StateStore):
    families = [family_snapshots(1)[0] for _ in range(3)]
    load = store.load_region(REGION)
    for snap in families[:2]:
        load = store.reserve_slot(load, flight_for(job_for(snap), T0, Phase.STARTING), cap=2)
    with pytest.raises(CapacityExhausted):
        store.reserve_slot(load, flight_for(job_for(families[2]), T0), cap=2)
    fresh = store.load_region(REGION)
    assert fresh.in_flight_count == 2 and len(fresh.in_flight) == 2
    # the same family again: refused by the table itself (flight row exists)
    with pytest.raises(Conflict):
        store.reserve_slot(fresh, flight_for(job_for(families[0]), T0), cap=5)
    store.release_slot(fresh, fresh.in_flight[0])
    after = store.load_region(REGION)
    assert after.in_flight_count == 1 and len(after.in_flight) == 1


def test_concurrent_reservations_never_exceed_the_cap(store: StateStore):
    """16 threads race for 5 slots through ETag-conditional batches against Azurite."""
    families = [family_snapshots(1)[0] for _ in range(16)]
    cap = 5

    def take(snap) -> None:
        for _ in range(30):
            load = store.load_region(REGION)
            try:
                store.reserve_slot(load, flight_for(job_for(snap), T0), cap=cap)
                return
            except Conflict:
                continue
            except CapacityExhausted:
                return

    threads = [threading.Thread(target=take, args=(snap,)) for snap in families]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load = store.load_region(REGION)
    assert load.in_flight_count == len(load.in_flight) == cap


def test_waiting_marker_survives_a_clear_that_raced_a_new_arrival(store: StateStore):
    (snap,) = family_snapshots(1)
    chain = job_for(snap).chain
    store.mark_waiting(REGION, chain, T0)
    read = store.find_waiting(REGION, chain)
    assert read is not None
    store.mark_waiting(REGION, chain, T0 + timedelta(minutes=5))  # a concurrent arrival touches it
    store.clear_waiting(read)  # stale ETag: must not delete
    kept = store.find_waiting(REGION, chain)
    assert kept is not None and kept.since == T0  # the earliest `since` is kept (fair order)
    store.clear_waiting(kept)
    assert store.find_waiting(REGION, chain) is None


def test_region_directory_lists_every_registered_partition(store: StateStore):
    store.register_region(REGION)
    store.register_region(REGION)
    store.register_region(RegionKey(SUB, "centralus"))
    assert [key.region for key in store.list_regions()] == ["centralus", "westus3"]


def test_queries_are_parameterised_so_hostile_keys_are_data(store: StateStore, table_rows: TableRows):
    hostile = ResourceId(SUB, "rg", "snapshots", "x")
    store.put_index(IndexEntry(hostile, "ignored", "' or PartitionKey ne '"))
    rows = table_rows.rows("snap|")
    assert len(rows) == 1 and rows[0]["Reason"] == "' or PartitionKey ne '"
    assert table_rows.rows("' or '1' eq '1") == []


def test_heads_and_queued_jobs_of_every_chain_come_from_one_query_each(
    store: StateStore, table_operations: TableOperations
):
    """The sweep's view of all chains costs a query (page), not a read per chain."""
    families = [family_snapshots(3) for _ in range(5)]
    for snaps in families:
        store.create_head(head_for(snaps[0]))
        jobs = [arrive(store, job_for(snap)) for snap in snaps]
        store.save_job(replace(jobs[0], state=CopyState.SUCCEEDED))
    store.put_index(IndexEntry(ResourceId(SUB, "rg", "snapshots", "other"), "ignored"))  # another partition
    before = table_operations.total
    heads = store.list_heads()
    queued = store.queued_by_chain()
    assert table_operations.total - before == 2
    assert sorted(head.key.partition for head in heads) == sorted(job_for(s[0]).chain.partition for s in families)
    assert [head.key.partition for head in heads] == sorted(head.key.partition for head in heads)
    for snaps in families:
        keys = [key for key, _ in queued[job_for(snaps[0]).chain.partition]]
        assert keys == [job_for(snap).key for snap in snaps[1:]]  # the succeeded one is left out, order kept
        assert all(at == T0 for _, at in queued[job_for(snaps[0]).chain.partition])


def test_a_wait_marker_keeps_the_earliest_watermark_and_a_release_can_set_or_drop_it(store: StateStore):
    (snap,) = family_snapshots(1)
    job = job_for(snap)
    chain = job.chain
    store.mark_waiting(REGION, chain, T0, from_key="a")
    store.mark_waiting(REGION, chain, T0 + timedelta(minutes=1), from_key="b")  # touches, keeps "a"
    marker = store.find_waiting(REGION, chain)
    assert marker is not None and marker.from_key == "a" and marker.since == T0
    load = store.reserve_slot(store.load_slot(REGION, chain), flight_for(job, T0), cap=5)
    store.release_slot(
        load, load.in_flight[0], wait=Waiting(REGION, chain, T0, from_key="c")
    )  # more queued: kept in line
    after = store.load_slot(REGION, chain)
    assert after.in_flight_count == 0 and after.in_flight == () and after.waiting[0].from_key == "c"
    load = store.reserve_slot(after, flight_for(job, T0), cap=5)
    store.mark_waiting(REGION, chain, T0)  # an arrival touches the marker after it was read
    with pytest.raises(Conflict):  # so the release that meant to drop it fails as a whole
        store.release_slot(load, load.in_flight[0], drop=after.waiting[0])
    fresh = store.load_slot(REGION, chain)
    assert fresh.in_flight_count == 1 and fresh.waiting
    store.release_slot(fresh, fresh.in_flight[0], drop=fresh.waiting[0])
    final = store.load_slot(REGION, chain)
    assert final.in_flight_count == 0 and final.in_flight == () and final.waiting == ()


def test_the_queue_is_read_with_its_head_in_one_query_when_the_low_key_is_at_or_below_the_watermark(
    store: StateStore, table_operations: TableOperations
):
    snaps = family_snapshots(4)
    head = store.create_head(head_for(snaps[0]))
    jobs = [arrive(store, job_for(snap)) for snap in snaps]
    watermark = jobs[1].key
    head = store.save_head(replace((store.load_head(head.key) or head), last_started_key=watermark))
    expected = [job.key for job in store.load_pending(head)]
    assert expected == [job.key for job in jobs[1:]]
    for low, reads in ((jobs[0].key, 1), (watermark, 1), (jobs[2].key, 2)):  # above it: a second read
        before = table_operations.total
        loaded, pending = store.load_queue(head.key, low)
        assert table_operations.total - before == reads
        assert loaded is not None and loaded.last_started_key == watermark
        assert [job.key for job in pending] == expected


# --- guarantees that hold: atomic batches, conditional writes, backoff -----------------------


def test_a_start_overtaking_more_jobs_than_one_transaction_holds_commits_atomically_then_the_rest(
    store: StateStore, table_operations: TableOperations
):
    snaps = family_snapshots(130, every_minutes=1)
    head = store.create_head(head_for(snaps[0]))
    for snap in snaps:
        head = store.add_job_guarded(head, job_for(snap))[1]
    jobs = store.list_jobs(head.key)
    newest = jobs[-1]
    overtaken = [replace(job, state=CopyState.SKIPPED, reason="overtaken") for job in jobs[:-1]]
    store.save_chain(
        replace(head, copying_key=newest.key, last_started_key=newest.key),
        [replace(newest, state=CopyState.COPYING)],
        overtaken=overtaken,
    )
    after = store.list_jobs(head.key)
    assert [job.state for job in after] == [CopyState.SKIPPED] * 129 + [CopyState.COPYING]
    assert table_operations.by_kind["batch"] >= 3  # one atomic batch of 100, then the rest


def test_a_batch_over_the_transaction_limit_is_refused_never_split(store: StateStore):
    snaps = family_snapshots(100, every_minutes=1)
    head = store.create_head(head_for(snaps[0]))
    with pytest.raises(ValueError, match="cannot change in one transaction"):
        store.save_chain(head, [job_for(snap) for snap in snaps])  # 101 rows that must change together
    assert store.list_jobs(head.key) == []  # nothing written


def test_a_conditional_write_without_an_etag_fails_loudly(store: StateStore):
    (snap,) = family_snapshots(1)
    head = store.create_head(head_for(snap))
    with pytest.raises(MissingETag):
        store.save_head(replace(head, etag=None))
    stored = store.add_job_guarded(head, job_for(snap))[0]
    with pytest.raises(MissingETag):
        store.save_job(replace(stored, etag=None, state=CopyState.CANCELLED))
    loaded = store.load_job(stored.chain, stored.key)
    assert loaded is not None and loaded.state == CopyState.QUEUED


def test_conflict_retries_back_off_with_growing_jittered_pauses(monkeypatch: pytest.MonkeyPatch):
    pauses: list[float] = []
    monkeypatch.setattr("shared.tables.gateway.time.sleep", pauses.append)
    attempts = iter(range(5))

    def racer() -> str:
        if next(attempts) < 4:
            raise Conflict("lost the race")
        return "won"

    assert retrying(racer) == "won"
    assert len(pauses) == 4
    assert all(0 <= pause <= min(CONFLICT_PAUSE_MAX, CONFLICT_PAUSE * 2**i) for i, pause in enumerate(pauses))
    assert len(set(pauses)) == 4  # drawn at random (full jitter), not the same fixed step for every racer
