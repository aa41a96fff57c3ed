"""The process's memories: bounded, case-insensitive where ARM is, and never deciding."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.engine import caches as caches_module
from shared.engine.caches import FULL_REMEMBERED, Caches
from shared.ids import ResourceGroupId, ResourceId
from shared.model import RegionKey, RegionLoad
from tests.builders import SUB, T0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_copies_started_here_are_known_case_insensitively_and_kept_within_bounds(monkeypatch):
    monkeypatch.setattr(caches_module, "STARTED_KEPT", 3)
    caches = Caches(Clock(T0))
    ids = [ResourceId(SUB, "rg", "snapshots", f"copy{i}") for i in range(5)]
    for i, rid in enumerate(ids):
        caches.remember_copy(rid, T0 + timedelta(seconds=i))
    assert caches.started_at(ResourceId(SUB.upper(), "RG", "snapshots", "COPY4")) == T0 + timedelta(seconds=4)
    assert [caches.started_at(rid) is not None for rid in ids] == [False, False, True, True, True]


def test_a_region_seen_full_is_remembered_for_a_while_or_until_a_slot_is_freed_here():
    clock = Clock(T0)
    caches = Caches(clock)
    region = RegionKey(SUB, "westus3")
    caches.note_load(RegionLoad(region, 2, (), ()), cap=2)
    assert caches.seen_full(region)
    clock.now = T0 + FULL_REMEMBERED
    assert not caches.seen_full(region)
    clock.now = T0
    caches.freed(region)
    assert not caches.seen_full(region)
    caches.note_load(RegionLoad(region, 2, (), ()), cap=2)
    caches.note_load(RegionLoad(region, 1, (), ()), cap=2)  # read again below the cap
    assert not caches.seen_full(region)


def test_an_older_listing_never_replaces_a_newer_one_and_groups_are_bounded(monkeypatch):
    monkeypatch.setattr(caches_module, "GROUPS_KEPT", 2)
    caches = Caches(Clock(T0))
    group = ResourceGroupId(SUB, "rg")
    caches.keep_listing(group, ([], T0 + timedelta(minutes=5)))
    caches.keep_listing(group, ([], T0), if_newer=True)
    assert caches.listing(ResourceGroupId(SUB.upper(), "RG"))[0] == ([], T0 + timedelta(minutes=5))
    for name in ("a", "b"):
        caches.keep_listing(ResourceGroupId(SUB, name), ([], T0))
    assert caches.listing(group)[0] is None  # the oldest kept was forgotten first
    caches.keep_whole(SUB.upper(), T0)
    caches.keep_whole(SUB, T0 - timedelta(minutes=1))  # an older whole listing moves nothing back
    assert caches.listing(ResourceGroupId(SUB, "a"))[1] == T0


def test_failures_count_per_subscription_until_a_success_or_a_pause():
    caches = Caches(Clock(T0))
    assert [caches.note_failure(SUB) for _ in range(2)] == [1, 2]
    caches.note_success(SUB.upper())
    assert caches.note_failure(SUB) == 1
    caches.pause(SUB, T0 + timedelta(minutes=1))
    assert caches.paused_until(SUB.upper()) == T0 + timedelta(minutes=1)
    assert caches.note_failure(SUB) == 1  # the pause started a new count


def test_list_pages_and_registered_regions_are_remembered():
    caches = Caches(Clock(T0))
    group = ResourceGroupId(SUB, "dr-rg")
    assert caches.list_pages(group) == 1
    caches.note_list_pages(group, 0)
    assert caches.list_pages(group) == 1
    caches.note_list_pages(group, 3)
    assert caches.list_pages(ResourceGroupId(SUB, "DR-RG")) == 3
    region = RegionKey(SUB, "westus3")
    assert not caches.registered(region)
    caches.note_registered(region)
    assert caches.registered(RegionKey(SUB.upper(), "westus3"))
