"""Tunable limits of the emulated Azure: copy cap, copy speeds, LIST page size and lag.

Frozen so a change is one atomic swap (`dataclasses.replace`), validated on construction.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class EmulatorConfig:
    """Defaults: Azure's documented cap of 100 copies in flight per subscription per region;
    1 GiB/s copy speed with a 30 s floor, so a 128 GiB snapshot copies in about two minutes;
    ARM's usual LIST page of 100; LISTs as fresh as GETs (no lag).

    `source_copy_seconds_factor` scales the background copy a snapshot of a Premium SSD v2 or
    Ultra disk runs after it is created (same size/speed model as a CopyStart copy, times the
    factor; 0 makes such snapshots available at once). `list_lag_seconds`: a LIST shows the
    collection as it was that long ago (see `World.list_resources`).
    """

    cap: int = 100
    copy_bytes_per_second: float = float(GIB)
    min_copy_seconds: float = 30.0
    page_size: int = 100
    # page ranges in one Get Page Ranges answer before a NextMarker (Azure pages long lists)
    page_ranges_per_answer: int = 10_000
    list_lag_seconds: float = 0.0
    source_copy_seconds_factor: float = 1.0
    # `provisionedBandwidthCopySpeed: Enhanced` copies this many times faster. Azure publishes
    # no figure (it provisions more bandwidth); the emulator's only claim is "sooner".
    enhanced_copy_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.cap < 0:
            raise ValueError(f"cap must be >= 0, got {self.cap}")
        if self.copy_bytes_per_second <= 0:
            raise ValueError(f"copy_bytes_per_second must be > 0, got {self.copy_bytes_per_second}")
        if self.min_copy_seconds < 0:
            raise ValueError(f"min_copy_seconds must be >= 0, got {self.min_copy_seconds}")
        if self.page_ranges_per_answer < 1:
            raise ValueError(f"page_ranges_per_answer must be >= 1, got {self.page_ranges_per_answer}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
        if self.list_lag_seconds < 0:
            raise ValueError(f"list_lag_seconds must be >= 0, got {self.list_lag_seconds}")
        if self.enhanced_copy_factor < 1:
            raise ValueError(f"enhanced_copy_factor must be >= 1, got {self.enhanced_copy_factor}")
        if self.source_copy_seconds_factor < 0:
            raise ValueError(f"source_copy_seconds_factor must be >= 0, got {self.source_copy_seconds_factor}")

    def copy_seconds(self, size_bytes: int) -> float:
        """How long a copy of `size_bytes` takes: size / speed, never below the floor."""
        return max(self.min_copy_seconds, size_bytes / self.copy_bytes_per_second)

    def source_copy_seconds(self, size_bytes: int) -> float:
        """How long the background copy of a Premium SSD v2 / Ultra disk snapshot takes."""
        return self.source_copy_seconds_factor * self.copy_seconds(size_bytes)
