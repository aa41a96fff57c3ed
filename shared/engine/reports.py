"""What a timer run did, as the report tests read and the one log line operators query.

It must not decide anything: the parts fill the reports in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class TickReport:
    """What one timer run did (logged, and returned for tests and the demo)."""

    regions: int = 0
    in_flight: int = 0
    polled: int = 0
    completed: int = 0
    failed: int = 0
    started: int = 0
    restarted: int = 0
    waiting: int = 0
    full: int = 0  # regions at the cap (their waiting chains are not counted)
    stuck: int = 0
    healed: int = 0  # slot counters that disagreed with their flight rows, corrected
    deferred: int = 0  # regions or chains left for the next tick (time budget, ARM backing off)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return summary_line(self)


def summary_line(report: Any) -> str:
    """A run report as one log line: `name=value` for each field in order, errors counted."""
    parts = []
    for item in fields(report):
        value = getattr(report, item.name)
        parts.append(f"{item.name}={len(value) if isinstance(value, list) else value}")
    return " ".join(parts)
