"""The seen-index (which snapshots snapcopy has handled) and the poison rows (events that keep failing)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from shared.ids import ResourceGroupId, ResourceId
from shared.model import IndexEntry
from shared.tables.codec import etag_of, index_entity, index_from
from shared.tables.gateway import TableGateway, retrying
from shared.tables.keys import POISON, SAFE_KEY_RE, index_partition


class IndexRows(TableGateway):
    """`snap|<sub>:<rg>` rows and `poison` rows."""

    def get_index(self, snapshot_id: ResourceId) -> IndexEntry | None:
        entity = self._get(index_partition(snapshot_id), snapshot_id.name.lower())
        return None if entity is None else index_from(entity)

    def index_of_group(self, group: ResourceGroupId) -> dict[str, IndexEntry]:
        """Every seen-index row of one resource group, by snapshot name (lower-case):
        one partition query, so the sweep need not look chain by chain."""
        rows = self._query(
            "PartitionKey eq @pk", {"pk": f"snap|{group.subscription.lower()}:{group.resource_group.lower()}"}
        )
        return {row["RowKey"]: index_from(row) for row in rows}

    def put_index(self, entry: IndexEntry) -> None:
        self._upsert(index_entity(entry))

    def note_event_failure(self, event_id: str, subject: str, error: str, now: datetime, *, poisoned_at: int) -> int:
        """Count one more failed delivery of an event; returns how many so far. At
        `poisoned_at` the row is marked poisoned (what operators look for)."""
        key = event_id if SAFE_KEY_RE.fullmatch(event_id) else hashlib.sha256(event_id.encode()).hexdigest()

        def count() -> int:
            row = self._get(POISON, key)
            attempts = (int(row.get("Attempts", 0)) if row is not None else 0) + 1
            entity = {
                "PartitionKey": POISON,
                "RowKey": key,
                "EventId": event_id[:256],
                "Subject": subject[:512],
                "Attempts": attempts,
                "FirstFailedAt": row.get("FirstFailedAt") if row is not None else now,
                "LastFailedAt": now,
                "LastError": error[:1000],
                "Poisoned": attempts >= poisoned_at,
            }
            if row is None:
                self._create(entity, f"poison {key}")
            else:
                self._update(entity, etag_of(row), f"poison {key}")
            return attempts

        return retrying(count)
