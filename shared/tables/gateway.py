"""The Table SDK behind snapcopy's repositories: reads, parameterised queries, ETag-conditional
writes and atomic same-partition batches, with the SDK's errors turned into `Conflict`.

Every change is an ETag-conditional write or a same-partition batch, so concurrent
handlers never lose an update: the loser gets `Conflict` and re-reads (`retrying`).

It must not know what a row means: the repositories and the codec do.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.tables.codec import Entity, conditional

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_LIMIT = 100  # operations in one Table transaction (Azure's limit)
CONFLICT_PAUSE = 0.02  # seconds: the first pause after a lost ETag race (then doubling, jittered)
CONFLICT_PAUSE_MAX = 0.5


class Conflict(Exception):
    """A conditional write lost a race (ETag changed, or the row already exists)."""


class CapacityExhausted(Exception):
    """The region partition has no free slot."""


class TableGateway:
    """One Table, created on first use; the repositories build on it."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ready = False

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str, **client_options: Any) -> Self:
        service = TableServiceClient.from_connection_string(connection_string, **client_options)
        return cls(service.get_table_client(table_name))

    @classmethod
    def from_endpoint(cls, endpoint: str, table_name: str, credential: Any, **client_options: Any) -> Self:
        service = TableServiceClient(endpoint=endpoint, credential=credential, **client_options)
        return cls(service.get_table_client(table_name))

    def ensure_table(self) -> None:
        """Create the table on first use (idempotent, once per process)."""
        if self._ready:
            return
        with contextlib.suppress(ResourceExistsError):
            self._table.create_table()
        self._ready = True

    def _get(self, partition: str, row: str) -> Any | None:
        self.ensure_table()
        try:
            return self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    def _query(self, query_filter: str, parameters: dict[str, Any], select: list[str] | None = None) -> Iterator[Any]:
        """Parameterised queries only: the SDK escapes every value (no OData injection).

        Counted per page: each page is one request (and one billed transaction)."""
        self.ensure_table()
        pages = self._table.query_entities(query_filter, parameters=parameters, select=select).by_page()
        for page in pages:
            yield from page

    def _transact(self, operations: list[tuple[Any, ...]], what: str) -> list[Any]:
        """Submit same-partition operations as one atomic transaction; per-op metadata back.

        Never split: a batch over Azure's 100 operations is a bug of the caller, refused."""
        if len(operations) > BATCH_LIMIT:
            raise ValueError(f"{what}: {len(operations)} operations exceed a transaction's {BATCH_LIMIT}")
        self.ensure_table()
        try:
            return list(self._table.submit_transaction(operations))  # type: ignore[arg-type]
        except TableTransactionError as error:
            if error.status_code in (404, 409, 412):
                raise Conflict(f"{what}: {error.status_code} {error.message}") from error
            raise

    def _update(self, entity: Entity, etag: str | None, what: str) -> str | None:
        """Replace a row we read, if unchanged (ETag); its new ETag back, or `Conflict`."""
        self.ensure_table()
        try:
            metadata = self._table.update_entity(entity, mode=UpdateMode.REPLACE, **conditional(etag, what))
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise Conflict(what) from error
        except HttpResponseError as error:
            if error.status_code == 412:
                raise Conflict(what) from error
            raise
        new_etag = (metadata or {}).get("etag")
        return str(new_etag) if new_etag else None

    def _create(self, entity: Entity, what: str) -> str | None:
        """Insert a row that must not exist yet; its ETag back, or `Conflict`."""
        self.ensure_table()
        try:
            metadata = self._table.create_entity(entity)
        except ResourceExistsError as error:
            raise Conflict(what) from error
        etag = (metadata or {}).get("etag")
        return str(etag) if etag else None

    def _delete(self, partition: str, row: str, etag: str | None, what: str) -> None:
        """Delete a row, if unchanged since it was read (its ETag; None: whatever it holds);
        `Conflict` when it changed, nothing when it is gone already."""
        self.ensure_table()
        condition: dict[str, Any] = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            self._table.delete_entity(partition, row, **condition)
        except ResourceModifiedError as error:
            raise Conflict(what) from error
        except ResourceNotFoundError:
            return
        except HttpResponseError as error:
            if error.status_code == 412:
                raise Conflict(what) from error
            raise

    def _delete_rows(self, partition: str, rows: Sequence[str], what: str) -> None:
        """Delete rows of one partition, a batch at a time; a batch that finds one gone
        already (another run deleted it) is done row by row, missing rows being fine."""
        for start in range(0, len(rows), BATCH_LIMIT):
            part = rows[start : start + BATCH_LIMIT]
            try:
                self._transact([("delete", {"PartitionKey": partition, "RowKey": row}) for row in part], what)
            except Conflict:
                for row in part:
                    self._delete(partition, row, None, what)

    def _upsert(self, entity: Entity) -> None:
        """Insert or replace a row whatever it holds (rows only one writer ever changes)."""
        self.ensure_table()
        self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)


def retrying(action: Callable[[], T], attempts: int = 5) -> T:
    """Run a read-decide-write step again when it loses an ETag race, after a short
    random pause that doubles each time (full jitter): racers on a hot row (a region's
    counter) spread out instead of colliding again in lockstep."""
    for attempt in range(attempts):
        try:
            return action()
        except Conflict:
            if attempt == attempts - 1:
                raise
            log.debug("conflict, retrying (%d)", attempt + 1)
            time.sleep(random.uniform(0.0, min(CONFLICT_PAUSE_MAX, CONFLICT_PAUSE * 2**attempt)))
    raise ValueError("attempts must be at least 1")
