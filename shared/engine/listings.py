"""ARM listings of source resource groups, kept per process, and one trigger run's budget of them.

A listing only adds knowledge (README, "The replication rules snapcopy keeps"): what it
shows exists, and it vouches for the older snapshots of a family it shows. It never
proves that something is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.arm import ArmError, ComputeApi
from shared.engine.caches import Caches, Listing
from shared.ids import ResourceGroupId, Scope
from shared.model import Snapshot

# The event path lists a resource group at most this often; bursts wait for the timer.
EVENT_LIST_INTERVAL = timedelta(seconds=10)
# A listing is reused (when it proves enough) for at most this long: longer than the
# hourly sweep, whose listing of every source scope refreshes them. The scheduler asks
# for a fresh one whenever a snapshot is newer than what a listing vouches for.
LISTING_KEEP = timedelta(minutes=90)


class Listings:
    """ARM listings of source resource groups, kept per process and shared by triggers.

    A listing is reused while it still proves what a decision needs (the scheduler says
    when it does not); a trigger run lists each group at most once, and the event path
    lists a group at most once per EVENT_LIST_INTERVAL, leaving bursts to the timer. The
    sweep's listings of whole scopes are kept too: a group missing from a subscription's
    listing held no snapshot when it was taken.
    """

    def __init__(self, arm: ComputeApi, caches: Caches, clock: Callable[[], datetime]) -> None:
        self._arm = arm
        self._caches = caches  # where the listings are kept
        self._clock = clock

    def cached(self, group: ResourceGroupId) -> Listing | None:
        entry, whole = self._caches.listing(group)
        if whole is not None and (entry is None or entry[1] < whole):
            entry = ([], whole)  # not in the subscription's newer listing: empty then
        if entry is None or self._clock() - entry[1] > LISTING_KEEP:
            return None
        return entry

    def fetch(self, group: ResourceGroupId) -> Listing:
        listed_at = self._clock()
        try:
            snapshots = self._arm.list_snapshots(group)
        except ArmError as error:
            if error.status != 404:
                raise
            snapshots = []  # the group is gone, and every snapshot in it
        entry = (snapshots, listed_at)
        self._caches.keep_listing(group, entry)
        return entry

    def keep(self, scope: Scope, snapshots: Iterable[Snapshot], listed_at: datetime) -> None:
        """Keep a listing of a whole scope (the sweep's), taken at `listed_at`, group by group."""
        groups: dict[ResourceGroupId, list[Snapshot]] = {}
        if scope.resource_group is not None:
            groups[ResourceGroupId(scope.subscription, scope.resource_group)] = []
        for snapshot in snapshots:
            groups.setdefault(snapshot.id.group, []).append(snapshot)
        for group, listed in groups.items():
            self._caches.keep_listing(group, (listed, listed_at), if_newer=True)
        if scope.resource_group is None:
            self._caches.keep_whole(scope.subscription, listed_at)


@dataclass
class Run:
    """One trigger run's listing budget: the timer may list any group once per run; an
    event handler only groups not listed in the last EVENT_LIST_INTERVAL."""

    listings: Listings
    eager: bool
    fetched: dict[ResourceGroupId, Listing] = field(default_factory=dict)
    deadline: datetime | None = None  # a timer run leaves what is left after this for the next one
    failed: dict[ResourceGroupId, ArmError] = field(default_factory=dict)  # listings that failed in this run

    def out_of_time(self, now: datetime) -> bool:
        return self.deadline is not None and now >= self.deadline

    def cached(self, groups: Iterable[ResourceGroupId]) -> Listing | None:
        entries = [self.fetched.get(group) or self.listings.cached(group) for group in groups]
        if any(entry is None for entry in entries):
            return None
        return merge([entry for entry in entries if entry is not None])

    def fresh(self, groups: Iterable[ResourceGroupId], now: datetime) -> Listing | None:
        entries = []
        for group in groups:
            entry = self.fetched.get(group)
            if entry is None:
                if group in self.failed:
                    raise self.failed[group]  # failed once in this run: not asked again until the next
                known = self.listings.cached(group)
                if not self.eager and known is not None and now - known[1] < EVENT_LIST_INTERVAL:
                    return None  # listed moments ago for another event: the timer takes it from here
                try:
                    entry = self.fetched[group] = self.listings.fetch(group)
                except ArmError as error:
                    self.failed[group] = error
                    raise
            entries.append(entry)
        return merge(entries)


def merge(entries: list[Listing]) -> Listing:
    """Several groups as one listing, as old as its oldest part."""
    return [snap for snapshots, _ in entries for snap in snapshots], min(at for _, at in entries)
