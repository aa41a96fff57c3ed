"""The outbox: notices recorded in the same batch as the transition they tell of.

A transition's notice is a row (`outbox|<id>`) in the partition the transition writes,
in the same Table transaction, so one is never recorded without the other. After the
commit the process publishes what it committed and deletes the rows; a publish that
fails marks the partition in the `outbox` directory, which the next timer run reads
(one small partition), and the hourly sweep scans for rows a crash left unmarked.

It must not publish or decide what to announce: `shared/notices.py` decides, the engine
publishes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from azure.data.tables import UpdateMode

from shared.model import Job
from shared.notices import Notice, announce
from shared.tables.codec import Entity, conditional, result_etag
from shared.tables.gateway import Conflict, TableGateway
from shared.tables.keys import OUTBOX, OUTBOX_HIGH, OUTBOX_LOW, OUTBOX_PREFIX


def outbox_entity(partition: str, notice: Notice) -> Entity:
    return {
        "PartitionKey": partition,
        "RowKey": OUTBOX_PREFIX + notice.id,
        "Type": notice.type.value,
        "Notice": notice.to_json(),  # at most a few KiB: well within a property's 64 KiB
    }


def outbox_upserts(partition: str, notices: list[Notice]) -> list[tuple[Any, ...]]:
    """Batch operations recording notices (an upsert: recording one twice is harmless)."""
    return [("upsert", outbox_entity(partition, notice)) for notice in notices]


class OutboxRows(TableGateway):
    """Outbox rows beside the transitions, the directory of partitions left unsent, and
    the process's list of notices committed and not yet published."""

    def __init__(self, table: Any) -> None:
        super().__init__(table)
        self.announcing = False  # set when a topic is configured: no outbox rows otherwise
        self._committed: list[tuple[str, Notice]] = []
        self._committed_lock = threading.Lock()

    def _announce(self, job: Job) -> tuple[Job, list[Notice]]:
        """The job as it must be written (marked with what it announced), and the notices
        its write owes: counted by the metrics always, kept in the outbox when announcing."""
        return announce(job)

    def _outbox(self, partition: str, notices: Sequence[Notice]) -> list[tuple[Any, ...]]:
        """The batch operations that keep notices in the outbox (none when nobody listens)."""
        return outbox_upserts(partition, list(notices)) if self.announcing else []

    def _committed_now(self, partition: str, notices: Sequence[Notice]) -> None:
        """Called after a transaction holding these notices committed: they may be published."""
        if notices:
            with self._committed_lock:
                self._committed.extend((partition, notice) for notice in notices)

    def take_committed(self) -> list[tuple[str, Notice]]:
        """The notices committed since the last call, with their partitions (then forgotten)."""
        with self._committed_lock:
            taken, self._committed = self._committed, []
        return taken

    def load_outbox(self, partition: str) -> list[Notice]:
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": partition, "low": OUTBOX_LOW, "high": OUTBOX_HIGH},
            select=["Notice"],
        )
        return [Notice.from_json(row["Notice"]) for row in rows]

    def stray_outbox(self) -> dict[str, list[Notice]]:
        """Every outbox row in the table, by partition (the sweep's check for rows a crash
        between a commit and its publish left behind: a scan, hourly only)."""
        rows = self._query(
            "RowKey ge @low and RowKey lt @high", {"low": OUTBOX_LOW, "high": OUTBOX_HIGH}, ["PartitionKey", "Notice"]
        )
        found: dict[str, list[Notice]] = {}
        for row in rows:
            found.setdefault(row["PartitionKey"], []).append(Notice.from_json(row["Notice"]))
        return found

    def drop_outbox(self, partition: str, notice_ids: list[str]) -> None:
        """Delete published notices (rows already gone are fine: another run published them too)."""
        self._delete_rows(partition, [OUTBOX_PREFIX + ident for ident in notice_ids], f"outbox {partition}")

    def mark_outbox(self, partition: str) -> None:
        """Name a partition whose notices are still unsent (the next timer run reads it)."""
        self._upsert({"PartitionKey": OUTBOX, "RowKey": partition})

    def outbox_marks(self) -> list[tuple[str, str | None]]:
        """The partitions marked unsent, with each mark's ETag."""
        rows = self._query("PartitionKey eq @pk", {"pk": OUTBOX}, select=["RowKey"])
        return [(row["RowKey"], (row.metadata or {}).get("etag")) for row in rows]

    def unmark_outbox(self, partition: str, etag: str | None) -> None:
        """Remove a mark, unless it was set again since it was read (then it stays)."""
        with contextlib.suppress(Conflict):
            self._delete(OUTBOX, partition, etag, f"outbox mark {partition}")

    def _write_noticed(
        self, entity: Entity, etag: str | None, partition: str, notices: Sequence[Notice], what: str
    ) -> str | None:
        """Write a row (insert without an ETag, else replace the row read) with the notices
        its write owes in the same batch, when they are kept; its new ETag back."""
        kept = self._outbox(partition, notices)
        if not kept:
            new = self._create(entity, what) if etag is None else self._update(entity, etag, what)
        else:
            mode = {"mode": UpdateMode.REPLACE, **conditional(etag, what)} if etag is not None else None
            write = ("create", entity) if mode is None else ("update", entity, mode)
            new = result_etag(self._transact([write, *kept], what), 0)
        self._committed_now(partition, notices)
        return new
