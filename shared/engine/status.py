"""The state of replication per target region, for `GET /api/status`: what is in flight,
queued and waiting (for the cap or for a source), what completed and failed in the last
24 hours, the worst RPO and the chains over RPO_ALERT_MINUTES.

It reads what `GET /api/chains` reads (Operator.chains, without the flight rows), a query
per chain for the last 24 hours, and each region partition; it must not write or decide.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from shared.engine.operator import Operator
from shared.engine.parts import Deps, Part
from shared.model import ChainHead, CopyState

RECENT = timedelta(hours=24)


@dataclass
class RegionStatus:
    """One target region, summed over its target subscriptions."""

    region: str
    in_flight: int = 0
    queued: int = 0
    waiting_for_cap: int = 0  # chains with a copy ready to start and no free slot
    waiting_for_source: int = 0  # queued copies whose source's own background copy runs
    completed: int = 0  # in the last 24 hours
    failed: int = 0  # in the last 24 hours
    worst_rpo: timedelta | None = None
    over_rpo: list[tuple[ChainHead, timedelta]] = field(default_factory=list)


class Status(Part):
    """Summarises every chain by target region."""

    def __init__(self, deps: Deps, operator: Operator) -> None:
        super().__init__(deps)
        self.operator = operator

    def regions(self) -> list[RegionStatus]:
        now = self.clock()
        loads = {key.partition: self.store.load_region(key) for key in self.store.list_regions()}
        by_region: dict[str, RegionStatus] = {}
        for chain in self.operator.chains(live=False):
            head = chain.head
            status = by_region.setdefault(head.key.region, RegionStatus(head.key.region))
            status.in_flight += int(bool(head.copying_key))
            status.queued += chain.queued
            status.waiting_for_source += chain.waiting_for_source
            load = loads.get(head.region.partition)
            full = load is not None and load.in_flight_count >= self.cap(head.region)
            if full and not head.copying_key and chain.queued > chain.waiting_for_source:
                status.waiting_for_cap += 1
            ended: defaultdict[CopyState, int] = defaultdict(int)
            for job in self.store.finished_since(head.key, now - RECENT):
                ended[job.state] += 1
            status.completed += ended[CopyState.SUCCEEDED]
            status.failed += ended[CopyState.FAILED]
            rpo = chain.rpo
            if rpo is not None and (status.worst_rpo is None or rpo > status.worst_rpo):
                status.worst_rpo = rpo
            if rpo is not None and chain.rpo_breached:
                status.over_rpo.append((head, rpo))
        return [by_region[name] for name in sorted(by_region)]
