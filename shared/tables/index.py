"""The seen-index (which snapshots snapcopy has handled) and the poison rows (events that keep failing).

It must not decide what is a duplicate or when an event is poisoned: shared/dedupe.py
and shared/poison.py do.
"""

from __future__ import annotations

from shared.ids import ResourceGroupId, ResourceId
from shared.model import IndexEntry
from shared.poison import EventFailure
from shared.tables.codec import failure_entity, failure_from, index_entity, index_from
from shared.tables.gateway import TableGateway
from shared.tables.keys import POISON, index_partition, poison_key


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

    def load_event_failure(self, event_id: str) -> EventFailure | None:
        entity = self._get(POISON, poison_key(event_id))
        return None if entity is None else failure_from(event_id, entity)

    def save_event_failure(self, failure: EventFailure) -> None:
        """Write a failure count read with `load_event_failure` (or new), if unchanged since;
        `Conflict` when another delivery counted meanwhile."""
        entity = failure_entity(failure)
        if failure.etag is None:
            self._create(entity, f"poison {entity['RowKey']}")
        else:
            self._update(entity, failure.etag, f"poison {entity['RowKey']}")
