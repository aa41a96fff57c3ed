"""A diff chain's increment rows in the real Table service (Azurite): an increment reads
back as written and loses a race by ETag; a chunk is recorded done once however often it
is copied, per plan generation; the done rows go when the increment is dropped."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.increment_steps import IncrementState
from shared.model import ChainKey, Increment
from shared.store import Conflict, StateStore

pytestmark = pytest.mark.azurite

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CHAIN = ChainKey("0b6c9a54-2c1e-4a8e-9a53-6f1f1f1f1f1f", "westus3")
KEY = "20261201T080000.000000Z|vm0-data0-s1"


def planned(**changes: Any) -> Increment:
    base = Increment(
        CHAIN,
        KEY,
        IncrementState.COPYING,
        generation=2,
        chunks=3,
        changed_at=T0,
        source_sas="https://md-x.blob/abcd?sig=1",
        base_sas="https://md-y.blob/abcd?sig=2",
        base_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/snapshots/s0",
        grant_expires=T0.replace(hour=14),
        blob="family.vhd",
        size=5 * 1024**4,
    )
    return replace(base, **changes)


def test_an_increment_reads_back_as_written_and_loses_a_race_by_etag(store: StateStore):
    saved = store.save_increment(planned())
    loaded = store.load_increment(CHAIN, KEY)
    assert loaded == saved and loaded is not None and loaded.size == 5 * 1024**4
    store.save_increment(replace(loaded, state=IncrementState.FINISHING))
    with pytest.raises(Conflict):
        store.save_increment(replace(loaded, stamp="2026-12-01T09:00:00Z"))  # read before the other write
    with pytest.raises(Conflict):
        store.save_increment(planned())  # a second planner inserting the same increment


def test_a_chunk_is_done_once_per_generation_and_dropped_with_its_increment(store: StateStore):
    assert store.record_chunk(CHAIN, KEY, 2, 0, T0) and store.record_chunk(CHAIN, KEY, 2, 2, T0)
    assert not store.record_chunk(CHAIN, KEY, 2, 0, T0)  # copied twice: recorded once
    store.record_chunk(CHAIN, KEY, 1, 1, T0)  # an older plan's chunk
    store.record_chunk(CHAIN, KEY + "x", 2, 1, T0)  # another job's
    assert store.chunks_done(CHAIN, KEY, 2) == {0: T0, 2: T0}  # each with when it was done
    assert set(store.chunks_done(CHAIN, KEY, 1)) == {1}
    assert store.drop_chunks(CHAIN, KEY) == 3
    assert not store.chunks_done(CHAIN, KEY, 2) and set(store.chunks_done(CHAIN, KEY + "x", 2)) == {1}
