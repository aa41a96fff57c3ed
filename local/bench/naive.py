"""The naive baseline the benchmark compares snapcopy with: what a first version would do.

It keeps Azure's rules (creation order, one copy of a family in flight, the cap) but
spends freely: the event handler reads the snapshot and writes a row; every timer tick
scans the whole table, reads every pending copy with one GET, and starts the next
snapshot of each idle disk, oldest first. It trusts events completely (no listings, no
sweep).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient, UpdateMode
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from shared.arm import ArmCompute
from shared.events import SnapshotWritten, parse_event
from shared.ids import ResourceId, TargetResourceGroup
from shared.model import SOURCE_TAG, CopyOrder, target_snapshot_id

_QUEUED, _COPYING, _DONE, _FAILED = "queued", "copying", "succeeded", "failed"
_COLUMNS = ["PartitionKey", "RowKey", "SourceId", "TargetId", "State"]


class NaiveReplicator:
    """One table, one row per copy; every tick reads it all."""

    name = "naive"

    def __init__(
        self, table: TableClient, arm: ArmCompute, region: str, cap: int, clock: Callable[[], datetime]
    ) -> None:
        self.table = table
        self.arm = arm
        self.region = region
        self.cap = cap
        self.clock = clock
        self.table.create_table()

    def deliver(self, event: dict[str, Any]) -> None:
        decoded = EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
        observation = parse_event(decoded)
        if not isinstance(observation, SnapshotWritten):
            return
        snapshot = self.arm.get_snapshot(observation.snapshot_id)
        if snapshot is None or snapshot.is_copy or not snapshot.incremental or not snapshot.family_id:
            return
        if snapshot.time_created is None:
            return
        if snapshot.location.lower() == self.region:
            return
        target = target_snapshot_id(
            snapshot.id,
            self.region,
            TargetResourceGroup().for_source(snapshot.id.subscription, snapshot.id.resource_group),
        )
        self.table.upsert_entity(
            {
                "PartitionKey": snapshot.family_id.lower(),
                "RowKey": snapshot.order_key,
                "SourceId": str(snapshot.id),
                "TargetId": str(target),
                "State": _QUEUED,
            },
            mode=UpdateMode.MERGE,
        )

    def tick(self) -> None:
        rows = self._scan()
        chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            chains[row["PartitionKey"]].append(row)
        in_flight = 0
        for row in rows:
            if row["State"] != _COPYING:
                continue
            target = self.arm.get_snapshot(ResourceId.parse(row["TargetId"]))
            if target is None or target.copy_error is not None or target.provisioning_state.lower() == "failed":
                self._set(row, _FAILED)
            elif target.provisioning_state.lower() == "succeeded" and (target.completion_percent or 0) >= 100:
                self._set(row, _DONE)
            else:
                in_flight += 1
        # each idle disk's oldest queued snapshot, the oldest first (first come, first served)
        nexts = [
            min((row for row in chain if row["State"] == _QUEUED), key=lambda row: row["RowKey"])
            for chain in chains.values()
            if any(row["State"] == _QUEUED for row in chain) and not any(row["State"] == _COPYING for row in chain)
        ]
        for row in sorted(nexts, key=lambda row: (row["RowKey"], row["PartitionKey"])):
            if in_flight >= self.cap:
                break
            source_id, target_id = ResourceId.parse(row["SourceId"]), ResourceId.parse(row["TargetId"])
            self.arm.start_copy(CopyOrder(source_id, target_id, self.region, {SOURCE_TAG: str(source_id)}))
            self._set(row, _COPYING)
            in_flight += 1

    def sweep(self) -> None:
        """The baseline has no sweep: it trusts every event."""

    def _scan(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        # every row, only the columns it uses (as any first version would ask for)
        for page in self.table.list_entities(select=_COLUMNS).by_page():
            rows.extend(dict(entity) for entity in page)
        return rows

    def _set(self, row: dict[str, Any], state: str) -> None:
        row["State"] = state
        self.table.upsert_entity(
            {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "State": state}, mode=UpdateMode.MERGE
        )
