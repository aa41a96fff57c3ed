"""Process-local hints: what this worker remembers between triggers to skip reads.

Every one is bounded, guarded by one lock, and only ever saves work: a hint that is
wrong or lost costs a Table read or an ARM request, never a decision (those come from
the table and ARM). A new process starts with none.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from shared.dedupe import DEDUPE_WINDOW
from shared.ids import ResourceGroupId, ResourceId
from shared.model import RegionKey, RegionLoad

# Copies a process remembers starting (their write events then cost no Table read).
STARTED_KEPT = 10_000
# After this process saw a region at its cap, an arrival there is queued without trying
# to start (no slot read) for this long, or until this process frees a slot there: the
# timer gives slots that come free to waiting chains, in release order. One poll apart.
FULL_REMEMBERED = timedelta(minutes=1)


class Hints:
    """What this process remembers: copies it started, regions it saw full, LIST sizes."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # copies this process started lately (target id -> when): their own write events
        # are known without a Table read; the seen-index serves other processes
        self._started: dict[ResourceId, datetime] = {}  # ResourceId compares case-insensitively
        # regions (partition) this process last saw at the cap, and when: see FULL_REMEMBERED
        self._full: dict[str, datetime] = {}
        # per target group, the LIST pages its last listing took (GETs or one LIST?)
        self.list_pages: dict[ResourceGroupId, int] = {}

    def started_at(self, target_id: ResourceId) -> datetime | None:
        with self._lock:
            return self._started.get(target_id)

    def remember_copy(self, target_id: ResourceId, now: datetime) -> None:
        """Note a copy this process is starting (as the seen-index does), within bounds."""
        with self._lock:
            self._started[target_id] = now
            if len(self._started) > STARTED_KEPT:
                self._started = {key: at for key, at in self._started.items() if now - at < DEDUPE_WINDOW}
                while len(self._started) > STARTED_KEPT:
                    del self._started[next(iter(self._started))]  # the oldest first

    def note_load(self, load: RegionLoad, cap: int) -> RegionLoad:
        """Remember whether the region was at its cap when read (see FULL_REMEMBERED)."""
        with self._lock:
            if load.in_flight_count >= cap:
                self._full[load.key.partition] = self._clock()
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
