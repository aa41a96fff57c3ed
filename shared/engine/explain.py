"""Operators ask why: the policies in effect, and which of them would copy a snapshot
where, under what name and tags, and why the others would not. Nothing is written.

It must not queue, start or record anything: the intake does that, from the same
policies (shared/placement.py), so the answer here is the answer an event would get.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.admission import CopyTo, Ignore, eligibility
from shared.engine.operator import read_source
from shared.engine.parts import Part
from shared.ids import ResourceId
from shared.model import ChainKey, Snapshot
from shared.placement import Passed, Placement, Selected, evaluate, target_group
from shared.policies import Policy


@dataclass(frozen=True)
class Evaluation:
    """What the policies make of one snapshot, as ARM shows it now."""

    snapshot: Snapshot
    copies: tuple[Placement, ...]  # the copies an event would queue now
    passed: tuple[Passed, ...]  # policies and targets that do not copy it, and why
    reason: str | None  # why it is not copied at all (None: it is, or only waits for ARM)


class Explainer(Part):
    """Answers operators' questions about the policies."""

    def policies(self) -> tuple[Policy, ...]:
        """The policies in effect (the implicit one when COPY_POLICIES is unset)."""
        return self.settings.policies

    def evaluate(self, snapshot_id: ResourceId) -> Evaluation:
        """Which targets would copy this snapshot, and why not the others (scope, tags, a
        region another policy took, the source's own region, what the snapshot is)."""
        snapshot = read_source(self.arm, snapshot_id)
        policies, scopes = self.settings.policies, self.settings.source_scopes
        chosen, passed = evaluate(policies, snapshot.id, snapshot.tags, scopes)
        decision = eligibility(snapshot, policies, scopes)
        here = snapshot.location.lower()
        passed += [
            Passed(item.policy.name, item.target.region, f"the source is in {here} already")
            for item in chosen
            if item.target.region == here
        ]
        copies: tuple[Placement, ...] = ()
        if isinstance(decision, CopyTo) and snapshot.family_id:
            copies = tuple(self._placed(item, snapshot, snapshot.family_id) for item in decision.targets)
        reason = decision.reason if isinstance(decision, Ignore) else None
        return Evaluation(snapshot, copies, tuple(passed), reason)

    def _placed(self, item: Selected, snapshot: Snapshot, family: str) -> Placement:
        """As the intake would place it: in the chain's group when the chain exists."""
        head = self.store.load_head(ChainKey(family.lower(), item.target.region))
        return self.placed(item, snapshot, head.target_group if head else target_group(item, snapshot.id))
