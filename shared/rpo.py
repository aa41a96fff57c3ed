"""Recovery point of a chain: how old the newest copy a region can restore from is.

RPO = now − `timeCreated` of the newest source snapshot whose copy into the region has
completed. Until one has, now − `timeCreated` of the chain's oldest snapshot still waiting
to be copied, so a chain that never completes a copy is behind too. A chain with neither
has nothing to protect yet (None).

Pure: it must not read the table, ARM or a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from shared.model import ChainHead, CopyState, Job

_KEY_TIME = "%Y%m%dT%H%M%S.%fZ"  # model.order_key's time part


def key_time(order_key: str) -> datetime:
    """The source `timeCreated` an order key (model.order_key) begins with."""
    return datetime.strptime(order_key.split("|", 1)[0], _KEY_TIME).replace(tzinfo=UTC)


def chain_rpo(head: ChainHead, pending: Sequence[Job], now: datetime) -> timedelta | None:
    """The chain's recovery point age (see the module's docstring)."""
    waiting = [job.source_time for job in pending if job.state in (CopyState.QUEUED, CopyState.COPYING)]
    return behind(head, waiting, now)


def behind(head: ChainHead, waiting: Sequence[datetime], now: datetime) -> timedelta | None:
    """The RPO from the head and the source times of the snapshots still to be copied
    (the sweep has only their keys: `key_time` gives the times)."""
    if head.last_completed_key:
        return max(timedelta(0), now - key_time(head.last_completed_key))
    return max(timedelta(0), now - min(waiting)) if waiting else None


class Breach(StrEnum):
    BEGAN = "began"  # over the threshold, not announced yet: announce it
    ENDED = "ended"  # announced before, back under the threshold: the next breach is news


def breach_change(head: ChainHead, rpo: timedelta | None, alert_after: timedelta) -> Breach | None:
    """Whether a chain's breach began or ended since it was last announced (once per breach)."""
    over = breached(rpo, alert_after)
    if over and head.rpo_breached_at is None:
        return Breach.BEGAN
    if not over and head.rpo_breached_at is not None:
        return Breach.ENDED
    return None


def breached(rpo: timedelta | None, alert_after: timedelta) -> bool:
    """Whether a chain is further behind than the alert threshold (RPO_ALERT_MINUTES)."""
    return rpo is not None and rpo > alert_after
