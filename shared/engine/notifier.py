"""Publishing the outbox: notices go out after the transitions they tell of committed.

Every entry point ends with `flush` (what this process committed since); the timer run
`resend`s partitions a failed publish marked; the sweep marks outbox rows that a crash
between a commit and its publish left behind (`collect_strays`). A notice is deleted
only after the topic took it, so each is published at least once, with its recorded id.

A publish never fails, delays or repeats a copy: every error here is logged and left to
the next run. It must not write anything but outbox rows and marks.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from shared.engine.parts import Part
from shared.notices import Notice
from shared.topic import PublishFailed

log = logging.getLogger("snapcopy")

RESEND_BATCH = 100  # notices a resend request carries (Event Grid takes 1 MB; each is a few KiB)
RESEND_BUDGET = timedelta(seconds=60)  # a timer run's resending stops after this long


@dataclass
class Delivery:
    """What one publishing step did."""

    sent: int = 0
    left: int = 0  # left in the outbox for the next run (the topic failed, or rests)

    def add(self, other: Delivery) -> None:
        self.sent += other.sent
        self.left += other.left


class Notifier(Part):
    """Sends the outbox to the topic (a no-op without NOTIFY_TOPIC_ENDPOINT)."""

    def flush(self) -> Delivery:
        """Count the transitions this process committed, and publish their notices; on
        failure, mark their partitions. Never raises (the metrics cannot either)."""
        taken = self.store.take_committed()
        self.metrics.transitions([notice for _, notice in taken])
        if not taken or self.deps.topic is None:
            return Delivery()  # no topic: no outbox rows either
        by_partition: dict[str, list[Notice]] = defaultdict(list)
        for partition, notice in taken:
            by_partition[partition].append(notice)
        if self.caches.topic_resting():
            return self._leave(by_partition, "the topic refused a publish within the last minute")
        return self._send(by_partition, unmark={})

    def resend(self) -> Delivery:
        """The timer's step: send what the marked partitions still hold (RESEND_BATCH
        notices a request), then unmark them; stop at the first failure, or at
        RESEND_BUDGET, so a topic that hangs costs the run one timeout, not one per
        partition."""
        delivery = Delivery()
        if self.deps.topic is None:
            return delivery
        deadline = self.clock() + RESEND_BUDGET
        try:
            marks = self.store.outbox_marks()
            while marks and self.clock() < deadline:
                batch: dict[str, list[Notice]] = {}
                unmark: dict[str, str | None] = {}
                while marks and sum(len(group) for group in batch.values()) < RESEND_BATCH:
                    partition, etag = marks.pop(0)
                    batch[partition], unmark[partition] = self.store.load_outbox(partition), etag
                sent = self._send(batch, unmark=unmark)
                delivery.add(sent)
                if sent.left:
                    break  # the topic failed: the next run tries again
        except Exception as error:  # the table failing here must not fail the run's copies
            log.error("notifications: cannot read the outbox (%s); the next run tries again", error)
        if delivery.sent:
            log.info("notifications: resent %d", delivery.sent)
        return delivery

    def collect_strays(self) -> int:
        """The sweep's step: mark partitions holding outbox rows (a crash between a commit
        and its publish leaves them unmarked); the next timer run sends them."""
        if self.deps.topic is None:
            return 0
        try:
            strays = self.store.stray_outbox()
            for partition in strays:
                self.store.mark_outbox(partition)
        except Exception as error:
            log.error("notifications: cannot scan the outbox (%s); the next sweep tries again", error)
            return 0
        found = sum(len(notices) for notices in strays.values())
        if found:
            log.warning(
                "notifications: %d unsent in %d partition(s); the next timer run sends them", found, len(strays)
            )
        return found

    def _send(self, by_partition: dict[str, list[Notice]], unmark: dict[str, str | None]) -> Delivery:
        topic = self.deps.topic
        notices = [notice for group in by_partition.values() for notice in group]
        if topic is None:
            return Delivery(left=len(notices))
        try:
            if notices:
                topic.send(notices)
        except PublishFailed as error:
            self.caches.note_topic(ok=False)
            return self._leave(by_partition, str(error))
        except Exception as error:  # never let a publish fail the run
            self.caches.note_topic(ok=False)
            return self._leave(by_partition, f"{type(error).__name__}: {error}")
        if notices:  # only a publish the topic took ends its rest
            self.caches.note_topic(ok=True)
            self.metrics.delivered(len(notices), 0)
        try:
            for partition, group in by_partition.items():
                self.store.drop_outbox(partition, [notice.id for notice in group])
            for partition, etag in unmark.items():
                self.store.unmark_outbox(partition, etag)
        except Exception as error:  # sent: left rows are sent again (same ids) by a later run
            log.warning("notifications: sent, but cannot clear the outbox (%s)", error)
        return Delivery(sent=len(notices))

    def _leave(self, by_partition: dict[str, list[Notice]], why: str) -> Delivery:
        """Keep notices for the next timer run: mark their partitions."""
        count = sum(len(group) for group in by_partition.values())
        self.metrics.delivered(0, count)
        log.warning("notifications: %d left in the outbox (%s); the next timer run sends them", count, why)
        for partition in by_partition:
            try:
                self.store.mark_outbox(partition)
            except Exception as error:  # unmarked rows are found by the sweep's scan
                log.error("notifications: cannot mark %s (%s); the sweep finds it", partition, error)
        return Delivery(left=count)
