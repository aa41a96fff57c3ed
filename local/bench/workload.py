"""Benchmark workloads: a seeded fleet of disks and the times their snapshots are taken.

A workload fixes everything before anything runs, so snapcopy and the naive baseline see
exactly the same fleet, snapshot times and copy durations. Copy durations come from
the disk's size and the emulator's copy speed (`EmulatorConfig.copy_seconds`), so the
lower bound on the makespan is known before the run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from local.emulator.config import GIB, EmulatorConfig

# Copy speed in the emulated Azure: a 32 GiB disk copies in 6 minutes, 1 TiB in 3.2 hours
# (not a whole number of seconds per GiB, so copies do not finish on the timer's minutes).
COPY_BYTES_PER_SECOND = GIB / 11.3
MIN_COPY_SECONDS = 60.0

# Disk sizes (GiB) and how common each is in a fleet: most disks are small.
FLEET_SIZES: tuple[tuple[int, float], ...] = (
    (32, 0.35),
    (64, 0.30),
    (128, 0.20),
    (256, 0.10),
    (512, 0.04),
    (1024, 0.01),
)
# W2's disks: busy application disks, snapshotted often; copies take 6 to 12 minutes.
BUSY_SIZES: tuple[tuple[int, float], ...] = ((32, 0.5), (64, 0.5))


@dataclass(frozen=True)
class Disk:
    name: str
    group: str
    size_gb: int


@dataclass(frozen=True)
class Arrival:
    """One snapshot, taken `at_seconds` after the workload starts."""

    at_seconds: float
    disk: Disk
    name: str


@dataclass(frozen=True)
class Workload:
    """A fleet and its snapshot schedule (see `w1`/`w2`)."""

    name: str
    title: str
    disks: tuple[Disk, ...]
    arrivals: tuple[Arrival, ...]
    cap: int
    seed: int
    params: dict[str, float | int] = field(default_factory=dict)

    @property
    def config(self) -> EmulatorConfig:
        return EmulatorConfig(
            cap=self.cap, copy_bytes_per_second=COPY_BYTES_PER_SECOND, min_copy_seconds=MIN_COPY_SECONDS
        )

    def copy_seconds(self, disk: Disk) -> float:
        return self.config.copy_seconds(disk.size_gb * GIB)

    @property
    def copies(self) -> int:
        return len(self.arrivals)

    def lower_bound(self) -> LowerBound:
        """No schedule can finish sooner: every chain copies one at a time, in order, each
        copy no earlier than its snapshot exists; and `cap` copies at most run at once."""
        chains: dict[str, list[Arrival]] = {}
        for arrival in sorted(self.arrivals, key=lambda item: item.at_seconds):
            chains.setdefault(arrival.disk.name, []).append(arrival)
        longest_chain = 0.0
        for arrivals in chains.values():
            finish = 0.0
            for arrival in arrivals:
                finish = max(finish, arrival.at_seconds) + self.copy_seconds(arrival.disk)
            longest_chain = max(longest_chain, finish)
        total = sum(self.copy_seconds(arrival.disk) for arrival in self.arrivals)
        first = min((arrival.at_seconds for arrival in self.arrivals), default=0.0)
        return LowerBound(longest_chain=longest_chain, capacity=first + total / self.cap, total_copy_seconds=total)


@dataclass(frozen=True)
class LowerBound:
    longest_chain: float  # the longest chain's copies back to back (from its first snapshot's time)
    capacity: float  # all copy time spread over `cap` slots
    total_copy_seconds: float

    @property
    def seconds(self) -> float:
        return max(self.longest_chain, self.capacity)


def _size(rng: random.Random, sizes: tuple[tuple[int, float], ...]) -> int:
    values, weights = zip(*sizes, strict=True)
    size: int = rng.choices(values, weights=weights)[0]
    return size


def _fleet(rng: random.Random, disks: int, groups: int, sizes: tuple[tuple[int, float], ...]) -> tuple[Disk, ...]:
    return tuple(
        Disk(f"vm{index:04d}-data", f"rg-app{index % groups:02d}", _size(rng, sizes)) for index in range(disks)
    )


def w1(seed: int, *, disks: int = 1000, snapshots: int = 3, cap: int = 100, groups: int = 20) -> Workload:
    """A backlog: every disk of a fleet snapshotted `snapshots` times, a minute apart
    (a nightly backup run), all to be copied to one region under the cap."""
    rng = random.Random(seed)
    fleet = _fleet(rng, disks, groups, FLEET_SIZES)
    arrivals = []
    for round_ in range(snapshots):
        order = list(fleet)
        rng.shuffle(order)
        for index, disk in enumerate(order):
            at = round_ * 60.0 + index * (50.0 / max(len(order), 1))
            arrivals.append(Arrival(round(at, 3), disk, f"{disk.name}-s{round_:02d}"))
    params: dict[str, float | int] = {"disks": disks, "snapshots": snapshots, "cap": cap, "groups": groups}
    title = f"W1 backlog: {disks} disks x {snapshots} snapshots, cap {cap}"
    return Workload("W1", title, fleet, tuple(arrivals), cap, seed, params)


def w2(
    seed: int, *, disks: int = 50, snapshots: int = 20, every_seconds: float = 180.0, cap: int = 100, groups: int = 5
) -> Workload:
    """Snapshots arriving faster than copies finish: each disk is snapshotted every
    `every_seconds` (with jitter) while its copies take 6-12 minutes, so queues build."""
    rng = random.Random(seed + 1)
    fleet = _fleet(rng, disks, groups, BUSY_SIZES)
    arrivals = []
    for disk in fleet:
        offset = rng.uniform(0, every_seconds)
        for round_ in range(snapshots):
            at = offset + round_ * every_seconds + rng.uniform(0, every_seconds / 10)
            arrivals.append(Arrival(round(at, 3), disk, f"{disk.name}-s{round_:02d}"))
    params: dict[str, float | int] = {
        "disks": disks,
        "snapshots": snapshots,
        "every_seconds": every_seconds,
        "cap": cap,
        "groups": groups,
    }
    title = f"W2 queues: {disks} disks x {snapshots} snapshots, one every {every_seconds:.0f} s"
    return Workload("W2", title, fleet, tuple(sorted(arrivals, key=lambda item: item.at_seconds)), cap, seed, params)


def at(start: datetime, seconds: float) -> datetime:
    return start + timedelta(seconds=seconds)
