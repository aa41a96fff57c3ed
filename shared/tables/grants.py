"""Read access to snapshots (`grant|<family>`, a row per snapshot): the SAS, until when, and
the increments holding it. Every write is ETag-conditional, so of two runs claiming the
same row one wins and the other reads again.

It must not decide who may hold a grant (shared/grants.py does).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from shared.grants import Grant
from shared.tables.codec import Entity, etag_of, moment
from shared.tables.gateway import TableGateway
from shared.tables.keys import GRANT_HIGH, GRANT_LOW, grant_key, grant_partition


def grant_entity(grant: Grant) -> Entity:
    return {
        "PartitionKey": grant_partition(grant.family_id),
        "RowKey": grant_key(grant.snapshot_key),
        "SnapshotKey": grant.snapshot_key,
        "FamilyId": grant.family_id,
        "Sas": grant.sas,
        "Expires": grant.expires,
        "Holders": json.dumps(list(grant.holders)),
    }


def grant_from(entity: Any) -> Grant:
    expires = moment(entity.get("Expires"))
    if expires is None:
        raise ValueError(f"grant row {entity.get('RowKey')!r} has no Expires")
    holders = json.loads(entity.get("Holders") or "[]")
    if not isinstance(holders, list) or not all(isinstance(holder, str) for holder in holders):
        raise ValueError(f"grant row {entity.get('RowKey')!r} has Holders that are not a list of strings")
    return Grant(
        snapshot_key=str(entity["SnapshotKey"]),
        family_id=str(entity["FamilyId"]),
        sas=entity.get("Sas", "") or "",
        expires=expires,
        holders=tuple(holders),
        etag=etag_of(entity),
    )


class GrantRows(TableGateway):
    """Grant rows."""

    def load_grant(self, family_id: str, snapshot_key: str) -> Grant | None:
        entity = self._get(grant_partition(family_id), grant_key(snapshot_key))
        return None if entity is None else grant_from(entity)

    def family_grants(self, family_id: str) -> list[Grant]:
        return [grant_from(row) for row in self._query("PartitionKey eq @pk", {"pk": grant_partition(family_id)})]

    def all_grants(self) -> list[Grant]:
        """Every grant row (the sweep's look for grants nobody uses)."""
        rows = self._query("PartitionKey ge @low and PartitionKey lt @high", {"low": GRANT_LOW, "high": GRANT_HIGH})
        return [grant_from(row) for row in rows]

    def save_grant(self, grant: Grant) -> Grant:
        """Insert (no ETag) or replace the row read (its ETag); `Conflict` when another run won."""
        entity, what = grant_entity(grant), f"grant {grant.snapshot_key}"
        etag = self._create(entity, what) if grant.etag is None else self._update(entity, grant.etag, what)
        return replace(grant, etag=etag)

    def delete_grant(self, grant: Grant) -> None:
        """Delete the row read, unless it changed since (`Conflict`); gone already is fine."""
        partition, row = grant_partition(grant.family_id), grant_key(grant.snapshot_key)
        self._delete(partition, row, grant.etag, f"grant {grant.snapshot_key} changed")
