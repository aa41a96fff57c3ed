"""Read access to a snapshot, shared: one grant per snapshot, held by every increment that
reads it, and never more than Azure allows a family at once.

One disk copied to three regions is three chains reading the same snapshots: if each
granted and revoked on its own, they would cut each other's SAS off (a new grant replaces
the snapshot's SAS, a revoke ends it for everyone) and could pass Azure's five snapshots
of a family with a SAS. So a grant is a row per snapshot that lists its holders: a holder
joins a live grant, a grant is asked for only when none is live (or it runs out within
RENEW_MARGIN), a family holding FAMILY_BUDGET grants makes newcomers wait, and access is
revoked only when the last holder lets go.

Asking ARM and revoking are claimed first: the row is written without a SAS for CLAIM
(ETag-conditional, so one run wins), and others wait meanwhile. A run that dies holding a
claim leaves it to run out; the next one takes it over.

Pure: it must not call ARM or read the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

FAMILY_BUDGET = 4  # Azure allows five snapshots of a family with a SAS: one is left for people
GRANT_SECONDS = 6 * 3600  # how long a grant is asked for
RENEW_MARGIN = timedelta(minutes=30)  # a grant running out sooner is asked for again
CLAIM = timedelta(minutes=10)  # a run asking ARM (or revoking) holds the row this long: longer than either takes


@dataclass(frozen=True)
class Grant:
    """A snapshot's read access: its SAS, until when, and who reads with it."""

    snapshot_key: str  # the snapshot's id, lower-case
    family_id: str
    sas: str
    expires: datetime
    holders: tuple[str, ...] = ()
    etag: str | None = None

    def live(self, now: datetime) -> bool:
        """A SAS to read with, not running out soon."""
        return bool(self.sas) and now + RENEW_MARGIN < self.expires

    def claimed(self, now: datetime) -> bool:
        """A run is asking ARM (or revoking) right now."""
        return not self.sas and now < self.expires


class Need(StrEnum):
    JOIN = "join"  # a live grant exists: hold it too
    GRANT = "grant"  # ask ARM (none yet, or it runs out soon)
    WAIT = "wait"  # the family holds its budget of grants: try again later


def need(existing: Grant | None, family: Sequence[Grant], now: datetime) -> Need:
    """What acquiring read access to a snapshot takes (`family`: the grants its family holds)."""
    if existing is not None:
        if existing.live(now):
            return Need.JOIN
        if existing.claimed(now):
            return Need.WAIT  # another run is asking ARM (or revoking): its answer is shared
        # runs out soon, ran out, or a claim died: ask again, within the budget (the
        # others may have filled it while this one had no live SAS)
        others = [grant for grant in family if grant.snapshot_key != existing.snapshot_key]
        return Need.WAIT if held(others) >= FAMILY_BUDGET else Need.GRANT
    return Need.WAIT if held(family) >= FAMILY_BUDGET else Need.GRANT


def held(family: Sequence[Grant]) -> int:
    """How many snapshots of a family may have a SAS at ARM: every grant row, whether live,
    run out, claimed or spent, until it is revoked and deleted (a claim that died after
    ARM granted, or a SAS marked spent, may still be live at ARM)."""
    return len(family)


def over_budget(family: Sequence[Grant]) -> bool:
    """Whether a family holds more grants than its budget (two runs claimed at once: the
    budget is counted before a claim and checked after it, and a new claim backs off)."""
    return held(family) > FAMILY_BUDGET


def claim(existing: Grant | None, snapshot_key: str, family_id: str, holders: tuple[str, ...], now: datetime) -> Grant:
    """The row that claims asking ARM (or revoking): no SAS, for CLAIM."""
    etag = existing.etag if existing is not None else None
    return Grant(snapshot_key, family_id, "", now + CLAIM, holders, etag)


class Refusal(StrEnum):
    """What a read refused with a grant's SAS means for the grant."""

    SPENT = "spent"  # the grant's own SAS died behind our back: mark it run out
    GONE = "gone"  # no live grant (none, run out, a claim that died): asking again is the way
    RENEWED = "renewed"  # renewed since, or being renewed: read again with the new one


def refused_read(grant: Grant | None, sas: str, now: datetime) -> Refusal:
    """A read with `sas` ("": there was no live SAS to read with) was refused."""
    if grant is None:
        return Refusal.GONE
    if not grant.sas:
        return Refusal.RENEWED if grant.claimed(now) else Refusal.GONE
    if grant.expires <= now:
        return Refusal.GONE
    return Refusal.RENEWED if sas != grant.sas else Refusal.SPENT


def joined(grant: Grant, holder: str) -> Grant:
    return grant if holder in grant.holders else replace(grant, holders=(*grant.holders, holder))


def left(grant: Grant, holder: str) -> Grant:
    """The grant without `holder`; one with no holders left is revoked and deleted."""
    return replace(grant, holders=tuple(name for name in grant.holders if name != holder))


def idle(grants: Sequence[Grant], now: datetime) -> list[Grant]:
    """Grants to revoke and forget (the sweep's step): run out, or held by nobody and not
    claimed right now."""
    return [grant for grant in grants if now >= grant.expires or (not grant.holders and not grant.claimed(now))]
