"""Everything a worker process remembers between triggers, in one place, under one lock.

Each memory is bounded and only ever saves work or spares ARM: one that is wrong or
lost costs a Table read or an ARM request, never a decision (those come from the table
and from ARM). A new process starts with none. What is kept:

- copies this process started (their own write events then cost no Table read);
- regions it saw at the cap (an arrival there is queued without a slot read);
- region partitions it wrote to the directory (written once per process);
- how many LIST pages each target group's last listing took (GETs or one LIST?);
- ARM listings of source groups and whole subscriptions (`listings.Listings` decides
  when one is still good enough);
- subscriptions ARM throttled or kept failing, and until when (`backoff.GuardedArm`);
- when the notification topic last refused a publish (`notifier.Notifier`).

It must not decide anything: the parts ask, and decide.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from shared.dedupe import DEDUPE_WINDOW
from shared.ids import ResourceGroupId, ResourceId
from shared.model import RegionKey, RegionLoad, Snapshot

K = TypeVar("K")
V = TypeVar("V")

# Copies a process remembers starting.
STARTED_KEPT = 10_000
# After this process saw a region at its cap, an arrival there is queued without trying
# to start (no slot read) for this long, or until this process frees a slot there: the
# timer gives slots that come free to waiting chains, in release order. One poll apart.
FULL_REMEMBERED = timedelta(minutes=1)
# Resource groups (listings, LIST page counts), subscriptions and regions remembered.
GROUPS_KEPT = 10_000
SUBSCRIPTIONS_KEPT = 1_000
# After the topic refused a publish, triggers leave their notices in the outbox for this
# long instead of trying again each (the timer's resend still tries every run).
TOPIC_REST = timedelta(minutes=1)

Listing = tuple[list[Snapshot], datetime]


def _bounded(memory: dict[K, V], limit: int) -> None:
    """Forget the oldest entries (insertion order) past `limit`."""
    while len(memory) > limit:
        del memory[next(iter(memory))]


class Caches:
    """The process's memories; every read and write takes the one lock."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[ResourceId, datetime] = {}  # ResourceId compares case-insensitively
        self._full: dict[str, datetime] = {}  # region partition -> when seen at the cap
        self._registered: dict[str, None] = {}  # region partitions written to the directory
        self._list_pages: dict[ResourceGroupId, int] = {}
        self._listings: dict[ResourceGroupId, Listing] = {}
        self._whole: dict[str, datetime] = {}  # lower-case subscription -> when listed whole
        self._paused: dict[str, datetime] = {}  # lower-case subscription -> until
        self._failures: dict[str, int] = {}  # lower-case subscription -> failures in a row
        self._topic_failed: datetime | None = None

    # --- copies started here --------------------------------------------------------------

    def started_at(self, target_id: ResourceId) -> datetime | None:
        with self._lock:
            return self._started.get(target_id)

    def remember_copy(self, target_id: ResourceId, now: datetime) -> None:
        """Note a copy this process is starting (as the seen-index does)."""
        with self._lock:
            self._started[target_id] = now
            if len(self._started) > STARTED_KEPT:
                self._started = {key: at for key, at in self._started.items() if now - at < DEDUPE_WINDOW}
                _bounded(self._started, STARTED_KEPT)

    # --- regions --------------------------------------------------------------------------

    def note_load(self, load: RegionLoad, cap: int) -> RegionLoad:
        """Remember whether the region was at its cap when read (see FULL_REMEMBERED)."""
        with self._lock:
            if load.in_flight_count >= cap:
                self._full[load.key.partition] = self._clock()
                _bounded(self._full, GROUPS_KEPT)
            else:
                self._full.pop(load.key.partition, None)
        return load

    def freed(self, region: RegionKey) -> None:
        """This process gave a slot back there: the region is not full any more."""
        with self._lock:
            self._full.pop(region.partition, None)

    def seen_full(self, region: RegionKey) -> bool:
        with self._lock:
            seen = self._full.get(region.partition)
        return seen is not None and self._clock() - seen < FULL_REMEMBERED

    def registered(self, region: RegionKey) -> bool:
        """Whether this process already wrote the region to the directory."""
        with self._lock:
            return region.partition in self._registered

    def note_registered(self, region: RegionKey) -> None:
        with self._lock:
            self._registered[region.partition] = None
            _bounded(self._registered, GROUPS_KEPT)

    # --- target groups' LIST pages --------------------------------------------------------

    def list_pages(self, group: ResourceGroupId) -> int:
        """LIST pages the group's last listing took (1 until it was listed)."""
        with self._lock:
            return self._list_pages.get(group, 1)

    def note_list_pages(self, group: ResourceGroupId, pages: int) -> None:
        with self._lock:
            self._list_pages[group] = max(1, pages)
            _bounded(self._list_pages, GROUPS_KEPT)

    # --- listings of source groups and subscriptions --------------------------------------

    def listing(self, group: ResourceGroupId) -> tuple[Listing | None, datetime | None]:
        """The group's last listing, and when its whole subscription was last listed."""
        with self._lock:
            return self._listings.get(group), self._whole.get(group.subscription.lower())

    def keep_listing(self, group: ResourceGroupId, listing: Listing, *, if_newer: bool = False) -> None:
        """Keep a group's listing (with `if_newer`, only over an older one)."""
        with self._lock:
            current = self._listings.get(group)
            if if_newer and current is not None and current[1] > listing[1]:
                return
            self._listings.pop(group, None)  # re-inserted: the newest is forgotten last
            self._listings[group] = listing
            _bounded(self._listings, GROUPS_KEPT)

    def keep_whole(self, subscription: str, listed_at: datetime) -> None:
        """A whole subscription was listed at `listed_at`."""
        key = subscription.lower()
        with self._lock:
            self._whole[key] = max(listed_at, self._whole.get(key, listed_at))
            _bounded(self._whole, SUBSCRIPTIONS_KEPT)

    # --- subscriptions ARM is left alone about --------------------------------------------

    def paused_until(self, subscription: str) -> datetime | None:
        with self._lock:
            return self._paused.get(subscription.lower())

    def note_failure(self, subscription: str) -> int:
        """One more failure in a row; how many now."""
        key = subscription.lower()
        with self._lock:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            _bounded(self._failures, SUBSCRIPTIONS_KEPT)
            return failures

    def note_success(self, subscription: str) -> None:
        with self._lock:
            self._failures.pop(subscription.lower(), None)

    def pause(self, subscription: str, until: datetime) -> None:
        key = subscription.lower()
        with self._lock:
            self._paused[key] = until
            self._failures.pop(key, None)
            _bounded(self._paused, SUBSCRIPTIONS_KEPT)

    # --- the notification topic -----------------------------------------------------------

    def topic_resting(self) -> bool:
        """Whether the topic refused a publish within TOPIC_REST."""
        with self._lock:
            failed = self._topic_failed
        return failed is not None and self._clock() - failed < TOPIC_REST

    def note_topic(self, *, ok: bool) -> None:
        with self._lock:
            self._topic_failed = None if ok else self._clock()
