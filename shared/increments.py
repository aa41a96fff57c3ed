"""One increment of the diff copy method: the pages to copy and to clear, cut into chunks.

An increment brings a target page blob from one source snapshot to the next: the ranges
Azure's page-range diff reports as changed are read from the source and written at the
same offsets; the ranges it reports as cleared are cleared. The first snapshot of a chain
(or a re-base) is the same with its allocated ranges as "changed" and nothing cleared.

Chunks are the unit of work (one queue message each): at most `chunk_bytes` of writes and
MAX_RANGES ranges, every write a whole number of 512-byte pages and at most 4 MiB (Put
Page's limit), each at its own offset; a range larger than a chunk is split across chunks, never moved.
Writing a chunk twice is harmless, so chunks may run in any order and more than once.

Pure: it must not read a blob, the table or a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PAGE = 512  # bytes: page blobs and managed disks are read and written in 512-byte pages
MAX_PAGE_WRITE = 4 * 1024 * 1024  # Put Page: at most 4 MiB in one update
CHUNK_BYTES = 32 * 1024 * 1024  # the writes one chunk (one queue message) carries by default
MAX_RANGES = 1000  # ranges per chunk, writes or clears: its queue message stays well under 64 KiB

Span = tuple[int, int]  # [start, end) in bytes


class InvalidRanges(ValueError):
    """Ranges no page blob could have: not page-aligned, outside the blob, or overlapping."""


@dataclass(frozen=True)
class Chunk:
    """One unit of an increment's work."""

    index: int
    writes: tuple[Span, ...] = ()
    clears: tuple[Span, ...] = ()

    @property
    def write_bytes(self) -> int:
        return sum(end - start for start, end in self.writes)


def joined(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with touching or overlapping ranges joined into one."""
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def normalized(spans: Iterable[Span], size: int, what: str) -> list[Span]:
    """Sorted and joined, after checking each is page-aligned and inside the blob."""
    ordered = sorted(spans)
    for start, end in ordered:
        if start % PAGE or end % PAGE or not 0 <= start < end <= size:
            raise InvalidRanges(f"{what} range {start}-{end} is not whole 512-byte pages inside {size} bytes")
    return joined(ordered)


def outside(held: Iterable[Span], wanted: Iterable[Span]) -> list[Span]:
    """The bytes of `held` that `wanted` does not cover (what a re-base clears)."""
    keep = joined(wanted)
    out: list[Span] = []
    for start, end in joined(held):
        pieces = [(start, end)]
        for low, high in keep:
            if high <= start or low >= end:
                continue
            pieces = [part for a, b in pieces for part in ((a, min(b, low)), (max(a, high), b)) if part[1] > part[0]]
        out.extend(pieces)
    return out


def plan(changed: Iterable[Span], cleared: Iterable[Span], *, size: int, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """The increment's chunks: the writes first, in offset order, then the clears."""
    if chunk_bytes < PAGE or chunk_bytes % PAGE:
        raise ValueError(f"chunk_bytes must be a positive multiple of {PAGE}, not {chunk_bytes}")
    writes = normalized(changed, size, "changed")
    clears = normalized(cleared, size, "cleared")
    if _overlap(writes, clears):
        raise InvalidRanges("a range is reported both changed and cleared")
    chunks = [Chunk(index, pieces) for index, pieces in enumerate(_cut(writes, chunk_bytes))]
    for start in range(0, len(clears), MAX_RANGES):
        chunks.append(Chunk(len(chunks), clears=tuple(clears[start : start + MAX_RANGES])))
    return chunks


def _cut(writes: Sequence[Span], chunk_bytes: int) -> list[tuple[Span, ...]]:
    """Writes in chunks of at most `chunk_bytes` and MAX_RANGES pieces, each piece at most
    MAX_PAGE_WRITE."""
    chunks: list[tuple[Span, ...]] = []
    current: list[Span] = []
    room = chunk_bytes
    for start, end in writes:
        offset = start
        while offset < end:
            piece = min(end - offset, room, MAX_PAGE_WRITE)
            current.append((offset, offset + piece))  # the piece keeps its own offset
            offset += piece
            room -= piece
            if room == 0 or len(current) == MAX_RANGES:
                chunks.append(tuple(current))
                current, room = [], chunk_bytes
    if current:
        chunks.append(tuple(current))
    return chunks


def _overlap(first: Sequence[Span], second: Sequence[Span]) -> bool:
    """Whether two sorted, joined lists of ranges share a byte (one pass over both)."""
    i = j = 0
    while i < len(first) and j < len(second):
        (a, b), (c, d) = first[i], second[j]
        if a < d and c < b:
            return True
        if b <= d:
            i += 1
        else:
            j += 1
    return False
