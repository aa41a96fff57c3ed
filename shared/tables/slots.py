"""The region partitions: Azure's per-(subscription, region) slot counter, the copies in flight, the chains waiting.

It must not decide who gets a slot: it enforces the cap atomically and writes what the
engine decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.model import ChainKey, InFlight, RegionKey, RegionLoad, Waiting
from shared.notices import Notice
from shared.tables.codec import (
    MissingETag,
    conditional,
    counter_entity,
    etag_of,
    flight_entity,
    flight_from,
    result_etag,
    wait_entity,
    waiting_from,
)
from shared.tables.gateway import CapacityExhausted, Conflict
from shared.tables.keys import COUNTER, DIRECTORY, FLIGHT_PREFIX, WAIT_PREFIX
from shared.tables.outbox import OutboxRows


class SlotRows(OutboxRows):
    """Slots (`region|<sub>|<region>`) and the `regions` directory the timer walks."""

    def register_region(self, region: RegionKey) -> None:
        """Record a region partition in the directory the timer walks (idempotent; the row
        is never removed, so the engine writes it once per process)."""
        self.ensure_table()
        self._table.upsert_entity(
            {
                "PartitionKey": DIRECTORY,
                "RowKey": region.partition.removeprefix("region|"),
                "Subscription": region.subscription,
                "Region": region.region,
                "Lane": region.lane,
            },
            mode=UpdateMode.MERGE,
        )

    def list_regions(self) -> list[RegionKey]:
        rows = self._query("PartitionKey eq @pk", {"pk": DIRECTORY})
        return sorted(
            (RegionKey(row["Subscription"], row["Region"], row.get("Lane", "")) for row in rows),
            key=lambda key: key.partition,
        )

    def load_region(self, region: RegionKey) -> RegionLoad:
        """One partition query: the counter, the flights and the waiting chains."""
        return self._region_rows(region, "PartitionKey eq @pk", {"pk": region.partition})

    def load_flights(self, region: RegionKey) -> RegionLoad:
        """The counter and the copies in flight, without the waiting chains (of which a
        backlog may hold thousands): what polling and a full region need."""
        return self._region_rows(
            region,
            "PartitionKey eq @pk and ( RowKey eq @counter or ( RowKey ge @low and RowKey lt @high ) )",
            {"pk": region.partition, "counter": COUNTER, "low": FLIGHT_PREFIX, "high": FLIGHT_PREFIX[:-1] + "}"},
        )

    def _region_rows(self, region: RegionKey, query: str, parameters: dict[str, str]) -> RegionLoad:
        count, etag = 0, None
        flights: list[InFlight] = []
        waiting: list[Waiting] = []
        for row in self._query(query, parameters):
            key = row["RowKey"]
            if key == COUNTER:
                count, etag = int(row.get("InFlight", 0)), etag_of(row)
            elif key.startswith(FLIGHT_PREFIX):
                flights.append(flight_from(region, row))
            elif key.startswith(WAIT_PREFIX):
                waiting.append(waiting_from(region, ChainKey(row["FamilyId"], region.region), row))
        return RegionLoad(region, count, tuple(flights), tuple(waiting), etag)

    def reserve_slot(self, load: RegionLoad, flight: InFlight, cap: int) -> RegionLoad:
        """Take one slot: counter + 1 and the family's flight row, atomically.

        Fails with `CapacityExhausted` at the cap and with `Conflict` if the counter moved
        or the family already holds a slot (the one-in-flight rule, kept by the table).
        """
        if load.in_flight_count >= cap:
            raise CapacityExhausted(f"{load.key.partition}: {load.in_flight_count}/{cap} copies in flight")
        counter = counter_entity(load.key, load.in_flight_count + 1)
        if load.counter_etag is None:
            first: tuple[Any, ...] = ("create", counter)
        else:
            first = ("update", counter, {"mode": UpdateMode.REPLACE, **conditional(load.counter_etag, "counter")})
        results = self._transact([first, ("create", flight_entity(flight))], f"reserve {flight.chain.partition}")
        return replace(
            load,
            in_flight_count=load.in_flight_count + 1,
            in_flight=(*load.in_flight, replace(flight, etag=result_etag(results, 1))),
            counter_etag=result_etag(results, 0),
        )

    def correct_counter(self, load: RegionLoad) -> None:
        """Set the slot counter to the number of flight rows it must equal (ETag-conditional)."""
        counter = counter_entity(load.key, len(load.in_flight))
        if load.counter_etag is None:  # no counter row at all: the flights it should count exist
            self._create(counter, f"counter {load.key.partition}")
            return
        self._update(counter, load.counter_etag, f"counter {load.key.partition}")

    def release_slot(
        self,
        load: RegionLoad,
        flight: InFlight,
        *,
        wait: Waiting | None = None,
        drop: Waiting | None = None,
    ) -> None:
        """Give a slot back: counter - 1 and the flight row deleted, atomically; in the
        same batch, the chain's wait marker set to `wait` (it has more queued) or
        `drop`ped (unless touched since it was read: then the whole batch conflicts)."""
        counter = counter_entity(load.key, max(load.in_flight_count - 1, 0))
        operations: list[tuple[Any, ...]] = [
            ("update", counter, {"mode": UpdateMode.REPLACE, **conditional(load.counter_etag, "counter")}),
            (
                "delete",
                {"PartitionKey": load.key.partition, "RowKey": FLIGHT_PREFIX + flight.chain.family_id},
                conditional(flight.etag, "flight"),
            ),
        ]
        if wait is not None:
            operations.append(("upsert", wait_entity(wait), {"mode": UpdateMode.REPLACE}))
        elif drop is not None:
            marker = {"PartitionKey": load.key.partition, "RowKey": WAIT_PREFIX + flight.chain.family_id}
            operations.append(("delete", marker, conditional(drop.etag, "wait marker")))
        self._transact(operations, f"release {flight.chain.partition}")

    def load_slot(self, region: RegionKey, chain: ChainKey) -> RegionLoad:
        """The region as one chain needs it: the counter, the chain's flight row and its wait
        marker (one query, at most three rows). Starting or finishing one chain's copy needs
        no more, however many chains the region holds."""
        # spaces around the parentheses: the SDK finds @names by splitting on spaces
        return self._region_rows(
            region,
            "PartitionKey eq @pk and ( RowKey eq @counter or RowKey eq @flight or RowKey eq @wait )",
            {
                "pk": region.partition,
                "counter": COUNTER,
                "flight": FLIGHT_PREFIX + chain.family_id,
                "wait": WAIT_PREFIX + chain.family_id,
            },
        )

    def save_flight(self, flight: InFlight, notices: Sequence[Notice] = ()) -> InFlight:
        """Write a flight row we read (ETag-conditional): a run that lost the flight to
        another (a restart, a finish) gets `Conflict` and must stop touching it. Its
        notices (a copy stuck) go in the same batch, when notices are recorded at all."""
        if flight.etag is None:
            raise MissingETag(f"flight {flight.chain.partition}: a conditional write needs the row's ETag")
        what = f"flight {flight.chain.partition} changed or is gone"
        etag = self._write_noticed(flight_entity(flight), flight.etag, flight.region.partition, notices, what)
        return replace(flight, etag=etag)

    def load_flight(self, region: RegionKey, chain: ChainKey) -> InFlight | None:
        entity = self._get(region.partition, FLIGHT_PREFIX + chain.family_id)
        return None if entity is None else flight_from(region, entity)

    def mark_waiting(
        self,
        region: RegionKey,
        chain: ChainKey,
        since: datetime,
        *,
        from_key: str | None = None,
        next_bytes: int | None = None,
    ) -> None:
        """Say the chain has queued work. A marker already there is only touched: it keeps
        its `since`, `from_key` and `next_bytes` (all about the oldest queued job, which
        starts next), and its ETag changes, so a concurrent `clear_waiting` cannot drop it."""
        entity = wait_entity(Waiting(region, chain, since, from_key=from_key, next_bytes=next_bytes))
        for _ in range(5):
            try:
                self._create(entity, "wait")
                return
            except Conflict:
                touch = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], "Touched": since}
                try:
                    self._table.update_entity(touch, mode=UpdateMode.MERGE)
                    return
                except ResourceNotFoundError:
                    continue  # cleared between our create and our touch: create it again
        raise Conflict(f"wait marker {chain.partition} keeps changing")

    def set_waiting(self, marker: Waiting) -> None:
        """Set the chain's place in line (by its oldest queued job), whatever it was."""
        self._upsert(wait_entity(marker))

    def clear_waiting(self, waiting: Waiting) -> None:
        """Drop the marker unless someone touched it since we read it."""
        self.ensure_table()
        try:
            self._table.delete_entity(
                waiting.region.partition,
                WAIT_PREFIX + waiting.chain.family_id,
                **conditional(waiting.etag, "wait marker"),
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass
        except HttpResponseError as error:
            if error.status_code != 412:
                raise

    def find_waiting(self, region: RegionKey, chain: ChainKey) -> Waiting | None:
        row = self._get(region.partition, WAIT_PREFIX + chain.family_id)
        if row is None:
            return None
        return waiting_from(region, chain, row)
