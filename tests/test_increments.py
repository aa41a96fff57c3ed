"""The diff copy's chunk plan (pure): every changed byte written once at its own offset,
every cleared range cleared, writes page-aligned and within Put Page's 4 MiB, chunks
within their size; bad ranges refused."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.increments import MAX_PAGE_WRITE, MAX_RANGES, PAGE, Chunk, InvalidRanges, joined, plan

MIB = 1024 * 1024
SIZE = 64 * MIB


@st.composite
def disjoint_ranges(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Changed and cleared ranges as a diff reports them: page-aligned, disjoint, in the blob."""
    cuts = sorted(set(draw(st.lists(st.integers(0, SIZE // PAGE), max_size=30))))
    spans = [(a * PAGE, b * PAGE) for a, b in itertools.pairwise(cuts) if b > a]
    kinds = draw(st.lists(st.sampled_from(["changed", "cleared", "neither"]), min_size=len(spans), max_size=len(spans)))
    changed = [span for span, kind in zip(spans, kinds, strict=True) if kind == "changed"]
    cleared = [span for span, kind in zip(spans, kinds, strict=True) if kind == "cleared"]
    return changed, cleared


@settings(max_examples=150, deadline=None)
@given(ranges=disjoint_ranges(), chunk_pages=st.integers(1, 64).map(lambda k: k * 512))
def test_every_changed_byte_is_written_once_at_its_offset_and_every_clear_kept(ranges, chunk_pages):
    changed, cleared = ranges
    chunks = plan(changed, cleared, size=SIZE, chunk_bytes=chunk_pages * PAGE)
    writes = [span for chunk in chunks for span in chunk.writes]
    assert joined(writes) == joined(changed)
    assert sum(end - start for start, end in writes) == sum(end - start for start, end in joined(changed))
    assert all(start % PAGE == 0 and end % PAGE == 0 and 0 < end - start <= MAX_PAGE_WRITE for start, end in writes)
    assert all(chunk.write_bytes <= chunk_pages * PAGE for chunk in chunks)
    assert all(len(chunk.writes) <= MAX_RANGES and len(chunk.clears) <= MAX_RANGES for chunk in chunks)
    assert joined([span for chunk in chunks for span in chunk.clears]) == joined(cleared)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))


def test_a_range_larger_than_a_chunk_is_split_across_chunks_keeping_its_offsets():
    """The bug of Microsoft's sample: split pieces written at offset 0. Here they keep theirs."""
    chunks = plan([(3 * MIB, 13 * MIB)], [], size=SIZE, chunk_bytes=4 * MIB)
    assert [chunk.writes for chunk in chunks] == [
        ((3 * MIB, 7 * MIB),),
        ((7 * MIB, 11 * MIB),),
        ((11 * MIB, 13 * MIB),),
    ]


def test_a_range_straddling_a_chunk_boundary_continues_in_the_next_chunk():
    chunks = plan([(0, MIB), (2 * MIB, 4 * MIB)], [], size=SIZE, chunk_bytes=2 * MIB)
    assert [chunk.writes for chunk in chunks] == [((0, MIB), (2 * MIB, 3 * MIB)), ((3 * MIB, 4 * MIB),)]


def test_a_fragmented_increment_keeps_each_chunk_within_its_range_count():
    """A chunk travels in a queue message (64 KiB): many small ranges are cut by count too."""
    changed = [(index * 2 * PAGE, index * 2 * PAGE + PAGE) for index in range(2500)]
    chunks = plan(changed, [(SIZE - PAGE * 1500, SIZE)], size=SIZE)
    assert [len(chunk.writes) for chunk in chunks[:3]] == [MAX_RANGES, MAX_RANGES, 500]
    assert chunks[3].clears == ((SIZE - PAGE * 1500, SIZE),)


def test_an_unchanged_snapshot_is_an_increment_with_no_chunks():
    assert plan([], [], size=SIZE) == []
    assert plan([], [(0, PAGE)], size=SIZE) == [Chunk(0, clears=((0, PAGE),))]


@pytest.mark.parametrize(
    ("changed", "cleared"),
    [
        ([(1, PAGE)], []),
        ([(0, 100)], []),
        ([(0, SIZE + PAGE)], []),
        ([], [(PAGE, PAGE)]),
        ([(0, 2 * PAGE)], [(PAGE, 3 * PAGE)]),
    ],
)
def test_ranges_no_page_blob_could_have_are_refused(changed, cleared):
    with pytest.raises(InvalidRanges):
        plan(changed, cleared, size=SIZE)


def test_a_re_base_clears_what_the_blob_holds_beyond_the_source():
    from shared.increments import outside

    held = [(0, 10 * PAGE), (20 * PAGE, 30 * PAGE)]
    wanted = [(2 * PAGE, 4 * PAGE), (8 * PAGE, 22 * PAGE)]
    assert outside(held, wanted) == [(0, 2 * PAGE), (4 * PAGE, 8 * PAGE), (22 * PAGE, 30 * PAGE)]
    assert outside(held, []) == held and outside([], wanted) == []
