"""Where a snapshot's copies go under the replication policies: which policy targets
select it (scope, tags, the first policy winning a region), and what each copy is called
and tagged.

Pure functions of (policies, the snapshot as ARM shows it): it must not read the table,
ARM or a clock. The engine records the answer on the job when the snapshot is queued, so
a copy keeps the name and tags it was queued with.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.ids import ResourceGroupId, ResourceId, Scope
from shared.model import (
    MAX_SNAPSHOT_NAME,
    MAX_TAGS,
    SOURCE_TAG,
    STANDARD_SPEED,
    Snapshot,
    short_hash,
    target_snapshot_id,
)
from shared.policies import DiffStorage, Method, Policy, Target

_TOKEN_RE = re.compile(r"\{([^{}]*)\}")
# The copy's tags are stored with its job (one Table property: 64 KiB, UTF-16), so the
# carried source tags stop at this many characters of names and values.
TAG_TEXT_BUDGET = 24_000


@dataclass(frozen=True)
class Selected:
    """One target a snapshot is copied to, and the policy that chose it."""

    policy: Policy
    target: Target


@dataclass(frozen=True)
class Passed:
    """A policy or target that does not copy the snapshot, and why (for operators)."""

    policy: str
    region: str | None
    reason: str


@dataclass(frozen=True)
class Placement:
    """One copy as queued: its policy, its id, its tags (and the source tags that did not fit)."""

    policy: str
    region: str
    target_id: ResourceId
    tags: tuple[tuple[str, str], ...]
    dropped_tags: tuple[str, ...] = ()
    copy_speed: str = STANDARD_SPEED
    disk_encryption_set_id: str = ""
    method: str = Method.COPY_START.value  # how the copy is made: CopyStart, or the diff method
    storage: DiffStorage | None = None  # the diff method's blob endpoint and container


# For a snapshot and a target region: the policy target that copies it there, if any.
Selector = Callable[[Snapshot, str], Selected | None]


def tags_match(wanted: tuple[tuple[str, str], ...], tags: dict[str, str]) -> str | None:
    """None when every wanted pair is present (names case-insensitive, values exact);
    else what is missing."""
    folded = {key.lower(): value for key, value in tags.items()}
    for key, value in wanted:
        if key not in folded:
            return f"tag {key!r} missing"
        if folded[key] != value:
            return f"tag {key!r} is {folded[key]!r}, not {value!r}"
    return None


def evaluate(
    policies: tuple[Policy, ...], source: ResourceId, tags: dict[str, str], default_scopes: tuple[Scope, ...]
) -> tuple[list[Selected], list[Passed]]:
    """Which targets copy this source and which do not, and why. The first policy in the
    list that selects a snapshot for a region wins that region."""
    chosen: list[Selected] = []
    passed: list[Passed] = []
    taken: dict[str, str] = {}
    for policy in policies:
        scopes = policy.scopes or default_scopes
        if scopes and not any(scope.contains(source) for scope in scopes):
            passed.append(Passed(policy.name, None, "source not in the policy's scopes"))
            continue
        missing = tags_match(policy.source_tags, tags)
        if missing is not None:
            passed.append(Passed(policy.name, None, missing))
            continue
        for target in policy.targets:
            if target.region in taken:
                passed.append(Passed(policy.name, target.region, f"region taken by policy {taken[target.region]!r}"))
                continue
            taken[target.region] = policy.name
            chosen.append(Selected(policy, target))
    return chosen, passed


def selector(policies: tuple[Policy, ...], default_scopes: tuple[Scope, ...]) -> Selector:
    """The policy target (if any) that copies a snapshot into a region."""

    def select(snapshot: Snapshot, region: str) -> Selected | None:
        chosen, _ = evaluate(policies, snapshot.id, snapshot.tags, default_scopes)
        return next((item for item in chosen if item.target.region == region), None)

    return select


def target_group(selected: Selected, source: ResourceId) -> ResourceGroupId:
    """Where a new chain's copies go: the target's resource group, else the source's."""
    return selected.target.resource_group.for_source(source.subscription, source.resource_group)


def place(selected: Selected, snapshot: Snapshot, group: ResourceGroupId) -> Placement:
    """The copy of `snapshot` that `selected` asks for, in `group` (the chain's)."""
    policy, region = selected.policy, selected.target.region
    if policy.implicit:  # the names snapcopy always gave (a hash when groups are shared)
        target_id = target_snapshot_id(snapshot.id, region, group)
    else:
        disk = snapshot.disk_id.rsplit("/", 1)[-1] if snapshot.disk_id else None
        name = expand_name(policy.name_template, snapshot.id, disk, region, snapshot.time_created)
        target_id = ResourceId(group.subscription, group.resource_group, "snapshots", name)
    tags, dropped = copy_tags(snapshot, policy)
    target = selected.target
    return Placement(
        policy.name,
        region,
        target_id,
        tags,
        dropped,
        target.copy_speed.value,
        target.disk_encryption_set_id or "",
        target.method.value,
        target.storage,
    )


def copy_tags(source: Snapshot, policy: Policy) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The copy's tags: the source's (when the policy carries them), then the policy's own,
    then snapcopy's provenance tag, a later one winning a name (names are case-insensitive,
    as ARM's are). Past ARM's 50 tags, source tags are dropped first; their names come back."""
    ours = {SOURCE_TAG: str(source.id)}
    extra = dict(policy.tags)
    carried = dict(source.tags) if policy.copy_tags else {}
    taken = {name.lower() for name in (*ours, *extra)}
    carried = {name: value for name, value in carried.items() if name.lower() not in taken}
    extra = {name: value for name, value in extra.items() if name.lower() != SOURCE_TAG}
    room = max(0, MAX_TAGS - len(ours) - len(extra))
    budget = TAG_TEXT_BUDGET - sum(len(name) + len(value) for name, value in (*extra.items(), *ours.items()))
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    for name, value in carried.items():
        if len(kept) < room and len(name) + len(value) <= budget:
            kept.append((name, value))
            budget -= len(name) + len(value)
        else:
            dropped.append(name)
    return (*kept, *extra.items(), *ours.items()), tuple(dropped)


def expand_name(template: str, source: ResourceId, disk: str | None, region: str, time: datetime | None) -> str:
    """The copy's name from the policy's template, within ARM's 80 characters: a name too
    long keeps its start and ends with `{hash}-{region}`, so it stays unique."""
    digest = short_hash(str(source).lower())
    values = {
        "source": source.name,
        "disk": disk or source.name,
        "region": region,
        "time": time.strftime("%Y%m%d%H%M%S") if time is not None else "",
        "hash": digest,
    }
    name = _TOKEN_RE.sub(lambda match: values[match.group(1)], template)
    if len(name) > MAX_SNAPSHOT_NAME:  # cut, and told apart by source ({hash}) and region
        suffix = f"{digest}-{region}"
        name = name[: MAX_SNAPSHOT_NAME - len(suffix) - 1].rstrip("-.") + "-" + suffix
    return name
