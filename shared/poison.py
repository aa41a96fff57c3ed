"""An event that keeps failing: each failed delivery is counted, and at a threshold the
event is given up on (poisoned). Giving up loses nothing for good: events are hints, and
the sweep lists the sources.

Pure: it must not read the table, the clock or the settings; the intake hands it what
they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class EventFailure:
    """How often one Event Grid event (by its id) failed, and whether it was given up on."""

    event_id: str
    subject: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    last_error: str
    poisoned: bool = False
    etag: str | None = None  # of the stored row; None: not stored yet


def failed_again(
    previous: EventFailure | None, event_id: str, subject: str, error: str, now: datetime, *, poisoned_at: int
) -> EventFailure:
    """One more failed delivery; poisoned once it has failed `poisoned_at` times."""
    if previous is None:
        return EventFailure(event_id, subject, 1, now, now, error, poisoned=poisoned_at <= 1)
    attempts = previous.attempts + 1
    return replace(
        previous,
        subject=subject,
        attempts=attempts,
        last_failed_at=now,
        last_error=error,
        poisoned=attempts >= poisoned_at,
    )
