"""Figures from a run's ground truth: the emulator's copy ledger and the snapshot times.

Everything here is computed after the run from what Azure (the emulator) recorded, so
snapcopy and the baseline are judged by the same facts, not by their own bookkeeping.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CopyRecord:
    """One copy as Azure saw it, times in seconds from the workload's start."""

    disk: str
    created: float  # the source snapshot was taken
    started: float | None  # CopyStart accepted (None: never started)
    finished: float | None  # completed (None: not yet, or never)
    seconds: float  # how long the copy itself took (or takes)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "p50": _round(percentile(values, 50)),
        "p95": _round(percentile(values, 95)),
        "max": _round(max(values) if values else None),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def chain_handoffs(records: Sequence[CopyRecord]) -> list[float]:
    """Predecessor completed → successor started, for successors that already existed
    when their predecessor completed (else the wait is for the snapshot, not for us)."""
    delays = []
    for chain in _chains(records).values():
        for before, after in itertools.pairwise(chain):
            if before.finished is None or after.started is None or after.created > before.finished:
                continue
            delays.append(after.started - before.finished)
    return delays


def slot_refills(records: Sequence[CopyRecord]) -> list[float]:
    """A copy completed while another could start (its snapshot taken, its predecessor
    done) → the next copy started: how long a slot stood idle with work waiting."""
    ready = sorted(ready for _, ready in _ready_times(records))
    starts = sorted(record.started for record in records if record.started is not None)
    finishes = sorted(record.finished for record in records if record.finished is not None)
    delays, next_start = [], 0
    promised: list[float] = []  # starts already paired with an earlier finish
    for finished in finishes:
        # a copy starts only once ready, so "ready but not started" is a difference of counts;
        # copies already promised to slots freed earlier (not started yet) are not waiting
        waiting = bisect.bisect_right(ready, finished) - bisect.bisect_right(starts, finished)
        waiting -= len(promised) - bisect.bisect_right(promised, finished)
        next_start = max(next_start, bisect.bisect_left(starts, finished))
        if waiting > 0 and next_start < len(starts):
            delays.append(starts[next_start] - finished)
            promised.append(starts[next_start])
            next_start += 1
    return delays


def _ready_times(records: Sequence[CopyRecord]) -> list[tuple[CopyRecord, float]]:
    ready = []
    for chain in _chains(records).values():
        previous_finish = 0.0
        for record in chain:
            ready.append((record, max(record.created, previous_finish)))
            previous_finish = record.finished if record.finished is not None else math.inf
    return ready


def _chains(records: Sequence[CopyRecord]) -> dict[str, list[CopyRecord]]:
    chains: dict[str, list[CopyRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda item: item.created):
        chains[record.disk].append(record)
    return chains


def timeline(records: Sequence[CopyRecord], end: float, step: float) -> dict[str, list[float]]:
    """In-flight copies and queued snapshots (taken, not yet copying), sampled every `step` s."""
    points: dict[str, list[float]] = {"t_hours": [], "in_flight": [], "queued": []}
    t = 0.0
    while t <= end + step:
        in_flight = sum(
            1
            for record in records
            if record.started is not None and record.started <= t and (record.finished is None or record.finished > t)
        )
        queued = sum(1 for record in records if record.created <= t and (record.started is None or record.started > t))
        points["t_hours"].append(round(t / 3600.0, 3))
        points["in_flight"].append(in_flight)
        points["queued"].append(queued)
        t += step
    return points


def seconds_since(start: datetime, moment: datetime | None) -> float | None:
    return None if moment is None else (moment - start).total_seconds()
