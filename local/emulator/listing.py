"""LISTs: a consistent view of a collection as of one moment, paged by id.

Azure serves LISTs from another path than GETs and documents no consistency window, so a
LIST may lag behind writes: a resource created in the last `list_lag_seconds` is missing from
it, and one deleted in that window still shows. The emulator models that as a view "as of"
`now - lag`: every resource created at or before that moment and not deleted by then. Bodies
are rendered as of now (progress, tags), only membership lags. GETs never lag.

A listing keeps the moment of its first page: `nextLink` carries it with the last id
returned (`$skiptoken`), so later pages neither repeat nor skip an item, even when resources
are created or deleted between pages.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import ArmError
from .resources import Disk, Snapshot

# How long a deleted resource is kept for listings beyond the lag, so that a listing whose
# pages are fetched over a while still sees what existed at its moment.
PAGING_GRACE = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Tombstone:
    """A deleted resource, kept while listings may still show it."""

    resource: Disk | Snapshot
    deleted_at: datetime


@dataclass(frozen=True)
class Cursor:
    """Where a listing is: its moment, and the last key (lower-case id) it returned."""

    as_of: datetime
    after: str = ""

    def token(self) -> str:
        micros = (self.as_of - _EPOCH) // _MICROSECOND
        return base64.urlsafe_b64encode(f"{micros}:{self.after}".encode()).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> Cursor:
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            micros, _, after = text.partition(":")
            return cls(_EPOCH + int(micros) * _MICROSECOND, after)
        except (ValueError, binascii.Error, OverflowError) as exc:
            raise ArmError(400, "InvalidParameter", f"The $skiptoken '{token}' is invalid.") from exc


class Tombstones:
    """Deleted resources in deletion order (the clock never goes back), pruned as they age out."""

    def __init__(self) -> None:
        self._items: deque[Tombstone] = deque()

    def add(self, resource: Disk | Snapshot, deleted_at: datetime) -> None:
        self._items.append(Tombstone(resource, deleted_at))

    def prune(self, now: datetime, lag_seconds: float) -> None:
        horizon = now - timedelta(seconds=lag_seconds) - PAGING_GRACE
        while self._items and self._items[0].deleted_at <= horizon:
            self._items.popleft()

    def __iter__(self) -> Iterator[Tombstone]:
        return iter(self._items)


def page(
    live: Mapping[str, Disk | Snapshot],
    tombstones: Iterable[Tombstone],
    scope: str,
    cursor: Cursor,
    count: int,
) -> tuple[list[Disk | Snapshot], Cursor | None]:
    """Up to `count` resources under `scope` (a lower-case id prefix) that existed at
    `cursor.as_of`, after `cursor.after` in id order; and the cursor of the next page, if any."""
    as_of = cursor.as_of
    members: dict[str, Disk | Snapshot] = {
        key: resource
        for key, resource in live.items()
        if key.startswith(scope) and key > cursor.after and resource.time_created <= as_of
    }
    for tombstone in tombstones:
        resource = tombstone.resource
        key = resource.rid.key
        if (
            key.startswith(scope)
            and key > cursor.after
            and resource.time_created <= as_of < tombstone.deleted_at
            and key not in members
        ):
            members[key] = resource
    keys = sorted(members)
    chosen = keys[:count]
    following = Cursor(as_of, chosen[-1]) if len(keys) > count else None
    return [members[key] for key in chosen], following
