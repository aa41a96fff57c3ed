"""What is on a disk: deterministic synthetic contents that change from snapshot to snapshot.

A disk's contents are a log of page-aligned writes and clears (a VM writing and trimming),
and its size, which may grow. A snapshot keeps an `Image`: the log as it was, so every
snapshot of a disk reads back exactly what the disk held when it was taken. A written page
holds a pattern of its write's seed and its own page number, so a page copied to the
wrong offset, or from the wrong write, never compares equal.

`Image.diff` is what Azure's page-range diff of a managed disk answers (Get Page Ranges
with `x-ms-previous-snapshot-url`): the ranges written since the older snapshot, and the
ranges cleared since. Azurite cannot compute it (Azure/Azurite#812), so the emulator does.

Pure: no HTTP, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

PAGE = 512  # bytes: page blobs and managed disks are written in 512-byte pages
Span = tuple[int, int]  # [start, end) in bytes


def merged(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with touching or overlapping spans joined; empty ones dropped."""
    out: list[Span] = []
    for start, end in sorted(span for span in spans if span[1] > span[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def without(spans: Iterable[Span], cut: Span) -> list[Span]:
    """`spans` minus the bytes of `cut`."""
    out: list[Span] = []
    for start, end in spans:
        if end <= cut[0] or start >= cut[1]:
            out.append((start, end))
            continue
        if start < cut[0]:
            out.append((start, cut[0]))
        if end > cut[1]:
            out.append((cut[1], end))
    return out


def page_pattern(seed: int, page: int) -> bytes:
    """The 512 bytes a write with `seed` puts in page number `page`."""
    return (seed.to_bytes(8, "big") + page.to_bytes(8, "big")) * (PAGE // 16)


@dataclass(frozen=True)
class Write:
    """Pages [start, end) written with `seed`'s pattern, or cleared (seed None)."""

    start: int
    end: int
    seed: int | None


@dataclass(frozen=True)
class Image:
    """A disk's contents at one moment: its size and the writes up to then."""

    size: int
    log: tuple[Write, ...] = ()

    def allocated(self) -> list[Span]:
        """The pages holding data (Get Page Ranges): written, and not cleared since."""
        spans: list[Span] = []
        for write in self.log:
            spans = without(spans, (write.start, write.end))
            if write.seed is not None:
                spans = merged([*spans, (write.start, write.end)])
        return [(start, min(end, self.size)) for start, end in spans if start < self.size]

    def read(self, start: int, length: int) -> bytes:
        """The bytes [start, start + length): zeros where nothing was written."""
        end = min(start + length, self.size)
        out = bytearray(max(0, end - start))
        for write in self.log:
            low, high = max(start, write.start), min(end, write.end)
            if low >= high:
                continue
            if write.seed is None:
                out[low - start : high - start] = bytes(high - low)
                continue
            first, last = low // PAGE, (high - 1) // PAGE
            block = b"".join(page_pattern(write.seed, page) for page in range(first, last + 1))
            offset = low - first * PAGE
            out[low - start : high - start] = block[offset : offset + high - low]
        return bytes(out)

    def diff(self, older: Image) -> tuple[list[Span], list[Span]]:
        """(changed, cleared) since `older`, an earlier image of the same disk."""
        if self.log[: len(older.log)] != older.log:
            raise ValueError("not an earlier image of the same disk")
        changed: list[Span] = []
        cleared: list[Span] = []
        for write in self.log[len(older.log) :]:
            span = (write.start, write.end)
            if write.seed is None:
                changed, cleared = without(changed, span), merged([*cleared, span])
            else:
                cleared, changed = without(cleared, span), merged([*changed, span])
        return changed, cleared


@dataclass
class DiskContents:
    """A disk's live contents: what the next snapshot captures."""

    size: int
    log: list[Write] = field(default_factory=list)

    def write(self, start: int, length: int, seed: int) -> None:
        self._span(start, length)
        self.log.append(Write(start, start + length, seed))

    def clear(self, start: int, length: int) -> None:
        self._span(start, length)
        self.log.append(Write(start, start + length, None))

    def grow(self, size: int) -> None:
        if size < self.size:
            raise ValueError(f"a disk cannot shrink ({self.size} to {size} bytes)")
        self.size = size

    def image(self) -> Image:
        return Image(self.size, tuple(self.log))

    def _span(self, start: int, length: int) -> None:
        if start % PAGE or length % PAGE or length <= 0 or start < 0 or start + length > self.size:
            raise ValueError(f"writes are whole 512-byte pages inside the disk: {start}+{length} of {self.size} bytes")
