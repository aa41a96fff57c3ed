"""Emulator time: a real or a virtual clock, and the text forms ARM and Event Grid give it.

Copy progress is computed from the clock at read time, so tests and benchmarks can move
time forward with a virtual clock instead of sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the emulator what time it is (tz-aware UTC)."""

    @property
    def virtual(self) -> bool: ...

    def now(self) -> datetime: ...


class RealClock:
    """Wall-clock time, for demos and manual runs."""

    @property
    def virtual(self) -> bool:
        return False

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Time that only moves when told to, so copy durations cost no real waiting.

    Thread-safe: the HTTP server reads it while a test thread advances it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("VirtualClock start must be timezone-aware")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    @property
    def virtual(self) -> bool:
        return True

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move time forward (never backward: ARM timestamps only grow) and return the new now."""
        if seconds < 0:
            raise ValueError(f"advance_seconds must be >= 0, got {seconds}")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


def arm_time(moment: datetime) -> str:
    """ARM resource form: 7 fractional digits and an explicit offset (`...02.1234567+00:00`)."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0+00:00"


def event_time(moment: datetime) -> str:
    """Event Grid form: 7 fractional digits and `Z` (`...04.6117357Z`)."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0Z"
