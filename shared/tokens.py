"""Opaque tokens the HTTP API hands out (copy ids, continuation tokens): base64url, unpadded.

One codec, so every token the API issues reads back the same way, and text that is not
one of them is refused before anything is read from the table.

It must not know what a token names: cursors.py and the API do.
"""

from __future__ import annotations

import base64
import binascii
import re

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")


class InvalidToken(ValueError):
    """The text is not a token the API issued."""


def encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str, *, max_length: int) -> str:
    """The text inside a token; InvalidToken for anything the API could not have issued."""
    if not token or len(token) > max_length or not _TOKEN_RE.fullmatch(token):
        raise InvalidToken("not a base64url token")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidToken("the token does not decode") from None
