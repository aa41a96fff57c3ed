"""Where a listing of copies stopped, as an opaque continuation token, and what a copy id may name.

Both are checked completely before anything is read from the table: text that is not a
token the API issued is refused as invalid.

It must not read the table: it only says what a token may name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shared import tokens
from shared.errors import invalid
from shared.ids import GUID, REGION_RE
from shared.model import ChainKey

_FAMILY_RE = re.compile(GUID.replace("A-Fa-f", "a-f"))  # family ids are stored lower-case
_KEY_RE = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z\|[a-z0-9_][-a-z0-9_.]{0,79}")


@dataclass(frozen=True)
class Cursor:
    """Where a listing stopped: the chain and the last job key returned."""

    chain: ChainKey
    key: str

    def encode(self) -> str:
        raw = json.dumps({"f": self.chain.family_id, "r": self.chain.region, "k": self.key}, separators=(",", ":"))
        return tokens.encode(raw)

    @classmethod
    def decode(cls, text: str) -> Cursor:
        problem = invalid("continuationToken is not a token this API returned")
        try:
            data = json.loads(tokens.decode(text, max_length=512))
        except ValueError:  # InvalidToken, or not JSON
            raise problem from None
        if not isinstance(data, dict) or set(data) != {"f", "r", "k"}:
            raise problem
        family, region, key = data["f"], data["r"], data["k"]
        if not all(isinstance(v, str) for v in (family, region, key)):
            raise problem
        if not names_a_job(family, region, key):
            raise problem
        return cls(ChainKey(family, region), key)


def names_a_job(family: str, region: str, key: str) -> bool:
    """Whether the parts of a copy id or a cursor could name a job (checked before any read)."""
    return bool(_FAMILY_RE.fullmatch(family) and REGION_RE.fullmatch(region) and _KEY_RE.fullmatch(key))
