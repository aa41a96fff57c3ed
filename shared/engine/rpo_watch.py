"""The RPO watch: every chain's RPO measured (metrics), and the chains further behind
than RPO_ALERT_MINUTES announced once per breach (`Snapcopy.RpoBreached`), and again
only after the chain recovered.

It runs in the sweep, from the heads and queued keys the sweep has read anyway (no read
of its own but a rare one for a subject). The breach is kept on the head
(`rpo_breached_at`), written with its notice in one batch.

It must not decide what a breach is (shared/rpo.py does) nor publish (the notifier does).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from shared.engine.parts import Part
from shared.model import ChainHead
from shared.notices import rpo_notice
from shared.rpo import Breach, behind, breach_change, breached, key_time
from shared.store import Conflict

log = logging.getLogger("snapcopy")


class RpoWatch(Part):
    """Compares each chain's RPO with the threshold and records breaches that began or ended."""

    def check(
        self, heads: Sequence[ChainHead], queued: dict[str, list[tuple[str, datetime | None]]], errors: list[str]
    ) -> int:
        """Measure every chain (metrics), announce the breaches that began (the count back)
        and forget those that ended. No breach is written when nobody listens (no
        NOTIFY_TOPIC_ENDPOINT). A chain's trouble is added to `errors`: the others, and
        the sweep's repairs, go on."""
        now = self.clock()
        began = 0
        regions: dict[str, list[timedelta]] = {}
        waiting: dict[str, int] = {}
        for head in heads:
            # what GET /api/chains counts: the queue from the watermark on, and the copy in flight
            keys = [key for key, _ in queued.get(head.key.partition, []) if key >= head.last_started_key]
            waiting[head.key.region] = waiting.get(head.key.region, 0) + len(keys)
            rpo = behind(head, [key_time(key) for key in (*keys, head.copying_key) if key], now)
            regions.setdefault(head.key.region, [])
            if rpo is not None:
                regions[head.key.region].append(rpo)
                self.metrics.chain_rpo(head.key.region, head.key.family_id, head.disk_id, rpo)
            change = breach_change(head, rpo, self.settings.rpo_alert)
            if change is None or self.deps.topic is None:
                continue
            try:
                began += self._record(head, change, rpo or timedelta(0), keys, now)
            except Conflict:
                continue  # the head moved meanwhile: the next sweep looks again
            except Exception as error:
                errors.append(f"RPO of {head.key.partition}: {error}")
                log.exception("sweep: cannot record the RPO breach of %s (the next sweep retries)", head.key.partition)
        for region, rpos in regions.items():
            self.metrics.queued(region, waiting.get(region, 0))
            self.metrics.region_rpo(
                region, max(rpos, default=None), sum(breached(r, self.settings.rpo_alert) for r in rpos)
            )
        return began

    def _record(self, head: ChainHead, change: Breach, rpo: timedelta, keys: list[str], now: datetime) -> int:
        if change is Breach.ENDED:
            self.store.save_head(replace(head, rpo_breached_at=None))
            log.info("RPO of %s is %d min again: under the threshold", head.key.partition, rpo.total_seconds() // 60)
            return 0
        newest = head.last_completed_source  # the subject when the disk is not known: the newest source
        pending = [key for key in (*keys, head.copying_key) if key]
        if not head.disk_id and pending:
            job = self.store.load_job(head.key, max(pending))
            newest = str(job.source_id) if job is not None else newest
        notice = rpo_notice(head, rpo, now, newest)
        self.store.save_head(replace(head, rpo_breached_at=now), [notice])
        log.warning(
            "RPO breached: %s is %d min behind (RPO_ALERT_MINUTES=%d)",
            head.key.partition,
            rpo.total_seconds() // 60,
            self.settings.rpo_alert.total_seconds() // 60,
        )
        return 1
