"""Chunk messages (pure): what a chunk's queue message carries reads back exactly, the
largest chunk fits a queue message, and anything snapcopy did not write is refused."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.chunk_messages import MAX_MESSAGE_BYTES, ChunkMessage, InvalidChunkMessage
from shared.increments import MAX_RANGES, PAGE, Chunk
from shared.model import ChainKey

CHAIN = ChainKey("0b6c9a54-2c1e-4a8e-9a53-6f1f1f1f1f1f", "westus3")
KEY = "20261201T080000.000000Z|vm0-data0-s0"
TIB = 1024**4

spans = st.lists(
    st.tuples(st.integers(0, 2**30), st.integers(1, 8192)).map(lambda t: (t[0] * PAGE, (t[0] + t[1]) * PAGE)),
    max_size=50,
)


@settings(max_examples=100, deadline=None)
@given(writes=spans, clears=spans, generation=st.integers(0, 10**6), index=st.integers(0, 10**6))
def test_a_message_reads_back_as_written(writes, clears, generation, index):
    message = ChunkMessage(CHAIN, KEY, generation, Chunk(index, tuple(writes), tuple(clears)))
    assert ChunkMessage.decode(message.encode()) == message


def test_the_largest_chunk_fits_a_queue_message_even_in_base64():
    far = [(32 * TIB - (i + 1) * 8 * PAGE, 32 * TIB - i * 8 * PAGE) for i in range(MAX_RANGES)]
    text = ChunkMessage(CHAIN, KEY, 999_999, Chunk(999_999, tuple(far))).encode()
    assert len(text) <= MAX_MESSAGE_BYTES and len(base64.b64encode(text.encode())) < 64 * 1024


def good() -> dict[str, object]:
    body: dict[str, object] = json.loads(ChunkMessage(CHAIN, KEY, 1, Chunk(0, ((0, PAGE),))).encode())
    return body


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "version"),
        ({"extra": 1}, "fields"),
        ({"family": "not-a-guid"}, "do not name a copy"),
        ({"key": "x"}, "do not name a copy"),
        ({"gen": -1}, "whole numbers"),
        ({"index": True}, "whole numbers"),
        ({"writes": [[0, 100]]}, "512-byte pages"),
        ({"writes": [[PAGE, 0]]}, "512-byte pages"),
        ({"clears": [[0]]}, "[start, end]"),
        ({"writes": [[0, PAGE]] * (MAX_RANGES + 1)}, "at most"),
    ],
)
def test_a_message_snapcopy_did_not_write_is_refused_with_the_reason(change, reason):
    with pytest.raises(InvalidChunkMessage, match=reason):
        ChunkMessage.decode(json.dumps({**good(), **change}))


@pytest.mark.parametrize("text", ["", "[]", "{", "null", "x" * (MAX_MESSAGE_BYTES + 1)])
def test_text_that_is_no_message_at_all_is_refused(text):
    with pytest.raises(InvalidChunkMessage):
        ChunkMessage.decode(text)
