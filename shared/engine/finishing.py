"""The finish protocol: a copy's end recorded, its slot given back, its chain kept in line.

1. commit the chain (job final, head freed, one batch)
2. release the region slot (counter - 1, flight row deleted, one batch), and in the same
   batch set the chain's wait marker (more queued) or drop it (nothing left)

A crash between the two leaves a flight row the next tick finishes again.

It must not start the next copy: it only keeps the chain in line for the tick.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from shared.engine.parts import Part
from shared.model import ChainKey, CopyError, CopyState, InFlight, Job, Waiting
from shared.scheduler import overtaken
from shared.store import retrying

log = logging.getLogger("snapcopy")

_MOVED_ON = "the copy failed; the chain moved on to its next snapshot"


class Finisher(Part):
    """Ends copies and gives their slots back."""

    def finish(self, flight: InFlight, state: CopyState, error: CopyError | None) -> bool:
        """Record a copy's end and free its slot; True when its chain has more queued."""
        now = self.clock()
        left: list[tuple[str, list[Job]]] = []  # the watermark and queue once recorded, as the commit saw them

        def commit() -> None:
            left.clear()
            head, rows = self.store.load_chain_from(flight.chain, flight.job_key)
            job = next((item for item in rows if item.key == flight.job_key), None)
            if head is None or job is None:
                return
            if job.state.is_final and head.copying_key != job.key:
                return  # finished by an earlier run that died before releasing the slot
            final = replace(
                job,
                state=state,
                finished_at=now,
                error=error,
                started_at=job.started_at or flight.started_at,
                percent=100.0 if state == CopyState.SUCCEEDED else flight.percent,
                reason="" if state == CopyState.SUCCEEDED else _MOVED_ON,
            )
            changes: dict[str, Any] = {
                "copying_key": "" if head.copying_key == job.key else head.copying_key,
                "last_started_key": max(head.last_started_key, job.key),
            }
            if state == CopyState.SUCCEEDED:
                changes.update(
                    last_completed_key=job.key, last_completed_source=str(job.source_id), last_completed_at=now
                )
            passed: list[Job] = []
            if job.state == CopyState.QUEUED:  # never started: what queued before it is overtaken
                pending = self.store.load_pending(head) if head.last_started_key < job.key else rows
                passed = overtaken(head, pending, job.key, now)
            self.store.save_chain(replace(head, **changes), [final], overtaken=passed)
            watermark = changes["last_started_key"]
            left.append((watermark, [item for item in rows if item.state == CopyState.QUEUED and item.key > watermark]))

        retrying(commit)
        if state == CopyState.SUCCEEDED:
            log.info("copy completed: %s → %s", flight.source_id, flight.target_id)
        else:
            assert error is not None
            log.error(
                "copy failed: %s → %s: %s %s; the chain moves on to its next snapshot",
                flight.source_id,
                flight.target_id,
                error.code,
                error.message,
            )
        return self.hand_back(flight, left[0] if left else None)

    def give_back(self, flight: InFlight) -> None:
        """Release the slot, if this attempt still holds it."""

        def release() -> None:
            load = self.store.load_slot(flight.region, flight.chain)
            current = next((item for item in load.in_flight if item.chain == flight.chain), None)
            if current is None or current.attempt != flight.attempt:
                return
            self.store.release_slot(load, current)
            self.caches.freed(flight.region)

        retrying(release)

    def hand_back(self, flight: InFlight, queued: tuple[str, list[Job]] | None = None) -> bool:
        """After a copy ends: give its slot back (if this attempt still holds it) and, in
        the same batch, keep the chain in line by its oldest queued job, or drop its wait
        marker when nothing is left.

        The marker is read before the queue, so a job that arrives (and marks the chain)
        meanwhile is never dropped. `queued` is the queue as the finish just saw it: good
        enough to keep a marker, but not to drop one that exists (an arrival may have
        touched it since); then the queue is read again. `queued`: (watermark, jobs).
        Returns whether the chain has more queued."""

        def release() -> bool:
            load = self.store.load_slot(flight.region, flight.chain)
            current = next((item for item in load.in_flight if item.chain == flight.chain), None)
            waiting = next((item for item in load.waiting if item.chain == flight.chain), None)
            watermark, left = queued or (None, [])
            if queued is None or (not left and waiting is not None):
                watermark, left = self._queued(flight.chain, flight.job_key)
            wait = None
            if left:  # in line by its oldest queued job, which starts next
                since = min(job.queued_at or self.clock() for job in left)
                wait = Waiting(flight.region, flight.chain, since, from_key=watermark, next_bytes=left[0].size_bytes)
            drop = waiting if not left else None
            if current is not None and current.attempt == flight.attempt:
                self.store.release_slot(load, current, wait=wait, drop=drop)
                self.caches.freed(flight.region)
            elif wait is not None:
                self.store.set_waiting(wait)
            elif drop is not None:
                self.store.clear_waiting(drop)
            return wait is not None

        return retrying(release)

    def _queued(self, chain: ChainKey, low: str) -> tuple[str | None, list[Job]]:
        """The chain's watermark and queued jobs (those from the watermark on), read now."""
        head, pending = self.store.load_queue(chain, low)
        if head is None:
            return None, []
        return head.last_started_key, [job for job in pending if job.state == CopyState.QUEUED]
