"""The emulator's disk contents: a diff between two snapshots is exactly what turns the
older one into the newer (property-based), and a written page's bytes name its write
and its offset."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from local.emulator.contents import PAGE, DiskContents, Image, merged

PAGES = 64

ops = st.lists(
    st.tuples(
        st.sampled_from(["write", "clear", "grow"]),
        st.integers(0, PAGES - 1),
        st.integers(1, 16),
        st.integers(1, 1000),
    ),
    max_size=25,
)


def applied(older: Image, newer: Image) -> bytes:
    """The older image's bytes with the diff applied: what a diff copy writes."""
    data = bytearray(older.read(0, older.size)) + bytearray(newer.size - older.size)
    changed, cleared = newer.diff(older)
    for start, end in changed:
        data[start:end] = newer.read(start, end - start)
    for start, end in cleared:
        data[start:end] = bytes(end - start)
    return bytes(data)


def run(contents: DiskContents, steps: list[tuple[str, int, int, int]]) -> None:
    for kind, first, wanted, seed in steps:
        size_pages = contents.size // PAGE
        if kind == "grow":
            contents.grow(contents.size + wanted * PAGE)
            continue
        page = min(first, size_pages - 1)
        count = min(wanted, size_pages - page)
        if kind == "write":
            contents.write(page * PAGE, count * PAGE, seed)
        else:
            contents.clear(page * PAGE, count * PAGE)


@settings(max_examples=200, deadline=None)
@given(before=ops, after=ops)
def test_a_diff_turns_the_older_snapshot_into_the_newer_one(before, after):
    contents = DiskContents(PAGES * PAGE)
    run(contents, before)
    older = contents.image()
    run(contents, after)
    newer = contents.image()
    assert applied(older, newer) == newer.read(0, newer.size)
    changed, cleared = newer.diff(older)
    assert merged(changed) == changed and merged(cleared) == cleared
    assert not [1 for a in changed for b in cleared if a[0] < b[1] and b[0] < a[1]]  # disjoint


@settings(max_examples=100, deadline=None)
@given(steps=ops)
def test_the_allocated_ranges_are_exactly_the_pages_holding_data(steps):
    contents = DiskContents(PAGES * PAGE)
    run(contents, steps)
    image = contents.image()
    data = bytearray(image.read(0, image.size))
    for start, end in image.allocated():
        assert bytes(PAGE) not in [bytes(data[p : p + PAGE]) for p in range(start, end, PAGE)]
        data[start:end] = bytes(end - start)
    assert data == bytes(image.size)  # nothing outside them


def test_a_page_names_its_write_and_its_offset():
    contents = DiskContents(8 * PAGE)
    contents.write(0, 4 * PAGE, seed=7)
    image = contents.image()
    pages = [image.read(i * PAGE, PAGE) for i in range(4)]
    assert len(set(pages)) == 4 and bytes(PAGE) not in pages
