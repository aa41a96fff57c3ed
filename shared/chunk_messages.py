"""A chunk's queue message: which increment it belongs to (chain, job, generation) and the
ranges it writes and clears, as compact JSON.

Read strictly: a message snapcopy did not write (or a later version) is refused with the
reason, so the queue's poison handling keeps it and nothing half-understood is copied.
A chunk with MAX_RANGES ranges at the largest offsets fits MAX_MESSAGE_BYTES, and Base64
(the Functions convention for queue messages) keeps it under the queue's 64 KiB.

Pure: it must not touch a queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.cursors import names_a_job
from shared.increments import MAX_RANGES, PAGE, Chunk, Span
from shared.model import ChainKey

QUEUE_NAME = "snapcopy-chunks"  # its poison queue is "snapcopy-chunks-poison" (the host's name)

VERSION = 1
MAX_MESSAGE_BYTES = 48 * 1024


class InvalidChunkMessage(ValueError):
    """Not a chunk message snapcopy wrote."""


@dataclass(frozen=True)
class ChunkMessage:
    chain: ChainKey
    job_key: str
    generation: int  # the increment's plan: a message of an older plan is dropped
    chunk: Chunk

    def encode(self) -> str:
        body = {
            "v": VERSION,
            "family": self.chain.family_id,
            "region": self.chain.region,
            "key": self.job_key,
            "gen": self.generation,
            "index": self.chunk.index,
            "writes": [list(span) for span in self.chunk.writes],
            "clears": [list(span) for span in self.chunk.clears],
        }
        text = json.dumps(body, separators=(",", ":"))
        if len(text) > MAX_MESSAGE_BYTES:
            raise ValueError(f"a chunk message of {len(text)} bytes is over {MAX_MESSAGE_BYTES}")
        return text

    @classmethod
    def decode(cls, text: str) -> ChunkMessage:
        if len(text) > MAX_MESSAGE_BYTES:
            raise InvalidChunkMessage(f"{len(text)} bytes: over {MAX_MESSAGE_BYTES}")
        try:
            body = json.loads(text)
        except ValueError:
            raise InvalidChunkMessage("not JSON") from None
        if not isinstance(body, dict) or body.get("v") != VERSION:
            raise InvalidChunkMessage(f"not a version {VERSION} chunk message")
        wanted = {"v", "family", "region", "key", "gen", "index", "writes", "clears"}
        if set(body) != wanted:
            raise InvalidChunkMessage(f"fields {sorted(body)}, not {sorted(wanted)}")
        family, region, key = body["family"], body["region"], body["key"]
        if not all(isinstance(value, str) for value in (family, region, key)) or not names_a_job(family, region, key):
            raise InvalidChunkMessage("family, region and key do not name a copy")
        generation, index = body["gen"], body["index"]
        if not _count(generation) or not _count(index):
            raise InvalidChunkMessage("gen and index must be whole numbers from 0")
        writes, clears = _spans(body["writes"], "writes"), _spans(body["clears"], "clears")
        return cls(ChainKey(family, region), key, generation, Chunk(index, writes, clears))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _spans(value: Any, field: str) -> tuple[Span, ...]:
    if not isinstance(value, list) or len(value) > MAX_RANGES:
        raise InvalidChunkMessage(f"{field} must be a list of at most {MAX_RANGES} ranges")
    spans = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and all(_count(bound) for bound in item)):
            raise InvalidChunkMessage(f"{field}: {item!r} is not [start, end]")
        start, end = item
        if start % PAGE or end % PAGE or end <= start:
            raise InvalidChunkMessage(f"{field}: {start}-{end} is not whole 512-byte pages")
        spans.append((start, end))
    return tuple(spans)
