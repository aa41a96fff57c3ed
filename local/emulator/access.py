"""Read access to snapshots (grant access / revoke access) and the SAS each grant hands out.

Azure's rules, as the emulator enforces them: a grant gives a read-only SAS URL for a
duration; revoking it (or its duration ending) makes every SAS of that snapshot useless;
at most `MAX_FAMILY_GRANTS` snapshots of one incremental family may have access at once
(a sixth grant is refused and counted). A SAS is checked on every blob request: its
signature must be one the emulator issued, still granted and not expired.

Pure bookkeeping: `World` holds the lock, and `blob_api` serves the blob endpoint.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .errors import ArmError

MAX_FAMILY_GRANTS = 5  # Azure: at most five snapshots of one family with a SAS at a time
MIN_SECONDS, MAX_SECONDS = 60, 5 * 24 * 3600  # what durationInSeconds the emulator takes


class SasRefused(Exception):
    """A blob request whose SAS is not (or no longer) valid: Storage answers 403."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Grant:
    """One snapshot's read access: the SAS signature and until when it is valid."""

    snapshot_key: str
    family_id: str | None
    signature: str
    account: str
    expires: datetime
    revoked: bool = False

    def active(self, now: datetime) -> bool:
        return not self.revoked and now < self.expires


@dataclass
class Grants:
    """Every grant made, by signature; the live one of each snapshot."""

    by_signature: dict[str, Grant] = field(default_factory=dict)
    current: dict[str, Grant] = field(default_factory=dict)  # snapshot key -> its live grant
    refused: int = 0  # grants refused for the family limit
    issued: int = 0
    most_at_once: int = 0  # the most snapshots of one family that had access at one time
    bytes_read: int = 0  # bytes served through SAS URLs (the diff copy's reads)

    def grant(self, snapshot_key: str, family_id: str | None, seconds: int, now: datetime) -> Grant:
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ArmError(
                400,
                "InvalidParameter",
                f"durationInSeconds must be from {MIN_SECONDS} to {MAX_SECONDS}, got {seconds}.",
            )
        holding = self.holding(family_id, now) - {snapshot_key}
        if family_id is not None and len(holding) >= MAX_FAMILY_GRANTS:
            self.refused += 1
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"At most {MAX_FAMILY_GRANTS} snapshots of one incremental snapshot family can have "
                f"access (a SAS) at the same time; {len(holding)} already have. Revoke access first.",
            )
        grant = Grant(
            snapshot_key,
            family_id,
            secrets.token_hex(16),
            "md-" + secrets.token_hex(6),
            now + timedelta(seconds=seconds),
        )
        previous = self.current.get(snapshot_key)
        if previous is not None:
            previous.revoked = True  # a new grant replaces the snapshot's SAS
        self.by_signature[grant.signature] = grant
        self.current[snapshot_key] = grant
        self.issued += 1
        self.most_at_once = max(self.most_at_once, len(holding) + 1 if family_id else 1)
        return grant

    def revoke(self, snapshot_key: str) -> bool:
        """End a snapshot's access; False when it had none."""
        grant = self.current.pop(snapshot_key, None)
        if grant is None:
            return False
        grant.revoked = True
        return True

    def holding(self, family_id: str | None, now: datetime) -> set[str]:
        """The snapshots of a family with live access."""
        return {
            key
            for key, grant in self.current.items()
            if grant.family_id is not None and grant.family_id == family_id and grant.active(now)
        }

    def active(self, snapshot_key: str, now: datetime) -> bool:
        grant = self.current.get(snapshot_key)
        return grant is not None and grant.active(now)

    def check(self, account: str, signature: str | None, now: datetime) -> Grant:
        """The grant a blob request's SAS stands for, or SasRefused."""
        grant = self.by_signature.get(signature or "")
        if grant is None or grant.account != account:
            raise SasRefused("AuthenticationFailed", "Server failed to authenticate the request: unknown signature.")
        if grant.revoked:
            raise SasRefused("AuthenticationFailed", "The SAS was revoked (access to the snapshot ended).")
        if now >= grant.expires:
            raise SasRefused("AuthenticationFailed", "Signature not valid in the specified time frame (it expired).")
        return grant
