"""Which reports of a snapshot are duplicates: pure functions of the seen-index and now.

Event Grid delivers at least once and retries for up to 24 hours; one snapshot may also be
written several times (tags). A report that is known to be a duplicate costs no ARM call.

It must not read the table, ARM or a clock: the intake hands it the index entry and now.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.model import IndexEntry, Snapshot

# Event Grid retries a delivery for up to 24 hours: within that, a known id is a duplicate.
DEDUPE_WINDOW = timedelta(hours=25)


def started_recently(started: datetime | None, now: datetime) -> bool:
    """A copy this process started within the window: its own write event is one of ours."""
    return started is not None and now - started < DEDUPE_WINDOW


def seen_recently(entry: IndexEntry | None, now: datetime) -> bool:
    """The seen-index recorded this id within Event Grid's retry window (or before times
    were recorded): a redelivery or a tag update, handled without asking ARM."""
    return entry is not None and (entry.recorded_at is None or now - entry.recorded_at < DEDUPE_WINDOW)


def same_snapshot(entry: IndexEntry | None, snapshot: Snapshot) -> bool:
    """The snapshot ARM shows under a known name is the one recorded (same uniqueId), not
    a new snapshot that reuses the name."""
    return entry is not None and bool(entry.unique_id) and entry.unique_id == snapshot.unique_id


def handled_for(entry: IndexEntry | None, snapshot: Snapshot, region: str) -> bool:
    """Whether the seen-index shows this very snapshot (same unique id) recorded as a
    source for `region`: its event queued it there, so its chain has a job for it."""
    if entry is None or entry.kind != "source" or region not in entry.regions.split(","):
        return False
    return not (entry.unique_id and snapshot.unique_id and entry.unique_id != snapshot.unique_id)
