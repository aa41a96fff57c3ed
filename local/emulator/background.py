"""The background data copy of a snapshot of a Premium SSD v2 or Ultra disk, and instant access.

Such a snapshot is provisioned (`provisioningState: Succeeded`) at once, but its data is
still being copied to standard storage: until that copy ends its `snapshotAccessState` is
`Pending` (or `InstantAccess`, if instant access was asked for) and it cannot be copied to
another region. Its own `completionPercent` shows the copy's progress. Azure sends no event
when it ends. Snapshots of other disks are `Available` at once and report no percent.

States (docs: disks-instant-access-snapshots, "Check snapshot access state"):

| background copy | instant access still on | `snapshotAccessState`        |
|-----------------|-------------------------|------------------------------|
| running         | no                      | `Pending`                    |
| running         | yes                     | `InstantAccess`              |
| done            | yes                     | `AvailableWithInstantAccess` |
| done            | no                      | `Available`                  |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .copies import progress

# Disk SKUs whose snapshots run a background copy before they can be copied across regions.
BACKGROUND_COPY_SKUS = frozenset({"PremiumV2_LRS", "UltraSSD_LRS"})
# What CopyStart accepts as a source's `snapshotAccessState`.
COPYABLE_STATES = frozenset({"Available", "AvailableWithInstantAccess"})
# `creationData.instantAccessDurationMinutes`: "must be between 60 and 300 minutes" (docs).
MIN_INSTANT_ACCESS_MINUTES = 60
MAX_INSTANT_ACCESS_MINUTES = 300


@dataclass(frozen=True)
class BackgroundCopy:
    """A Premium SSD v2 / Ultra disk snapshot's own copy, fixed when the snapshot is created."""

    started_at: datetime
    duration_seconds: float
    instant_access_minutes: int | None = None

    @property
    def finishes_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.duration_seconds)

    def percent(self, now: datetime) -> float:
        return progress(self.started_at, self.duration_seconds, now)

    def instant_access(self, now: datetime) -> bool:
        """Asked for, and its duration has not run out yet."""
        minutes = self.instant_access_minutes
        return minutes is not None and now < self.started_at + timedelta(minutes=minutes)

    def access_state(self, now: datetime) -> str:
        done = now >= self.finishes_at
        if self.instant_access(now):
            return "AvailableWithInstantAccess" if done else "InstantAccess"
        return "Available" if done else "Pending"
