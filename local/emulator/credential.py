"""The credential the local world hands snapcopy and the fleet: a fixed bearer token.

The emulator's ARM wants `Authorization: Bearer <non-empty>` and never checks the token;
its blob endpoint wants, for a snapshot whose data access takes Entra ID, a token asked
for the disks' audience. This
lives here, not in the app: snapcopy itself can only be given a real Entra ID identity
by its settings; the offline world passes this one in (`runtime.build(..., credential=)`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import AccessToken


class EmulatorCredential:
    """A `TokenCredential` whose token the ARM emulator accepts."""

    def __init__(self, token: str = "snapcopy-local-emulator") -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """The token, naming the scope it was asked for (`<token>|<scope>`): the emulator's
        blob endpoint tells a disk-data token from another, as Azure does by its audience."""
        return AccessToken(f"{self._token}|{scopes[0] if scopes else ''}", int(datetime.now(UTC).timestamp()) + 3600)
