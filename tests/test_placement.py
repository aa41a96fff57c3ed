"""Policies in the settings and where copies go (pure: no Azure, no table)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from shared.admission import new_job
from shared.config import load_settings
from shared.errors import ConfigError
from shared.ids import ResourceGroupId, ResourceId, Scope, TargetResourceGroup
from shared.model import MAX_TAGS, SOURCE_TAG, CopyState, Snapshot, target_snapshot_id
from shared.placement import TAG_TEXT_BUDGET, Placement, Selected, copy_tags, place, selector
from shared.policies import Policy, Target, implicit_policy
from tests.builders import OTHER_SUB, SUB, T0, a_snapshot

DES = "/providers/Microsoft.Compute/diskEncryptionSets/des"
STATE = {"STATE_CONNECTION_STRING": "UseDevelopmentStorage=true"}


def policies_env(*policies: Mapping[str, object], **extra: str) -> dict[str, str]:
    return {**STATE, "COPY_POLICIES": json.dumps(list(policies)), **extra}


def test_without_copy_policies_the_old_settings_are_one_implicit_policy():
    settings = load_settings({**STATE, "COPY_TARGET_REGIONS": "westus3,centralus", "COPY_TARGET_RESOURCE_GROUP": "dr"})
    (policy,) = settings.policies
    assert policy.implicit and not policy.copy_tags
    assert [(t.region, t.resource_group) for t in policy.targets] == [
        ("westus3", TargetResourceGroup(name="dr")),
        ("centralus", TargetResourceGroup(name="dr")),
    ]


def test_copy_policies_replace_the_old_settings_and_refuse_to_sit_beside_them():
    env = policies_env({"name": "a", "targets": [{"region": "westus3"}, {"region": "centralus"}]})
    settings = load_settings(env)
    assert settings.target_regions == ("westus3", "centralus") and settings.policies[0].name == "a"
    for clash in ("COPY_TARGET_REGIONS", "COPY_TARGET_RESOURCE_GROUP"):
        with pytest.raises(ConfigError) as caught:
            load_settings({**env, clash: "westus3" if clash == "COPY_TARGET_REGIONS" else "dr"})
        message = str(caught.value)
        assert "COPY_TARGET_REGIONS" in message and "COPY_TARGET_RESOURCE_GROUP" in message and clash in message


def test_a_source_is_in_scope_when_any_policy_may_select_it():
    scoped = {
        "name": "a",
        "sources": {"scopes": [f"/subscriptions/{SUB}/resourceGroups/prod-rg"]},
        "targets": [{"region": "westus3"}],
    }
    settings = load_settings(policies_env(scoped))
    assert settings.in_scope(ResourceId(SUB, "PROD-RG", "snapshots", "x"))
    assert not settings.in_scope(ResourceId(SUB, "test-rg", "snapshots", "x"))
    everything = {"name": "b", "targets": [{"region": "centralus"}]}
    assert load_settings(policies_env(scoped, everything)).in_scope(ResourceId(OTHER_SUB, "x", "snapshots", "y"))
    narrowed = replace(load_settings(policies_env(everything)), source_scopes=(Scope(OTHER_SUB),))
    assert not narrowed.in_scope(ResourceId(SUB, "x", "snapshots", "y"))  # no scopes of its own: COPY_SOURCE_SCOPES


# --- placement -----------------------------------------------------------------------------


def test_the_implicit_policy_names_copies_as_snapcopy_always_did():
    snapshot = a_snapshot().build()
    policy = implicit_policy(("westus3",), TargetResourceGroup(name="dr"))
    group = ResourceGroupId(SUB, "dr")
    placement = place(Selected(policy, policy.targets[0]), snapshot, group)
    assert placement.target_id == target_snapshot_id(snapshot.id, "westus3", group)
    assert placement.tags == ((SOURCE_TAG, str(snapshot.id)),) and placement.policy == "default"


def test_copy_tags_carry_the_source_s_then_the_policy_s_and_ours_wins():
    snapshot = a_snapshot().tagged(env="prod", Owner="app-team", **{"SNAPCOPY-SOURCE": "forged"}).build()
    policy = Policy("p", (Target("westus3"),), tags=(("owner", "dr-team"),))
    tags, dropped = copy_tags(snapshot, policy)
    assert dict(tags) == {"env": "prod", "owner": "dr-team", SOURCE_TAG: str(snapshot.id)} and dropped == ()
    assert copy_tags(snapshot, replace(policy, copy_tags=False))[0] == (
        ("owner", "dr-team"),
        (SOURCE_TAG, str(snapshot.id)),
    )


def test_past_arms_50_tags_source_tags_are_dropped_first_and_named():
    many = {f"t{i:02}": "v" for i in range(60)}
    snapshot = a_snapshot().tagged(**many).build()
    tags, dropped = copy_tags(snapshot, Policy("p", (Target("westus3"),), tags=(("owner", "x"),)))
    assert len(tags) == MAX_TAGS and dict(tags)["owner"] == "x" and SOURCE_TAG in dict(tags)
    assert dropped == tuple(f"t{i:02}" for i in range(48, 60))
    long = {f"k{i:02}" + "n" * 500: "v" * 256 for i in range(48)}  # 48 tags: more text than a job row keeps
    tags, dropped = copy_tags(a_snapshot().tagged(**long).build(), Policy("p", (Target("westus3"),)))
    assert sum(len(k) + len(v) for k, v in tags) <= TAG_TEXT_BUDGET and dropped


def test_a_selector_answers_per_region_with_the_first_policy_winning():
    first = Policy("first", (Target("westus3", TargetResourceGroup(name="a")),), source_tags=(("backup", "dr"),))
    second = Policy("second", (Target("westus3"), Target("centralus")))
    select = selector((first, second), ())
    tagged = a_snapshot().tagged(Backup="dr").build()
    assert (choice := select(tagged, "westus3")) is not None and choice.policy.name == "first"
    assert (choice := select(a_snapshot().build(), "westus3")) is not None and choice.policy.name == "second"
    assert select(tagged, "eastus") is None


# --- encryption ----------------------------------------------------------------------------

SET = f"/subscriptions/{SUB}/resourceGroups/dr{DES}"


def encrypted(snapshot_set: str = "/x/des-source") -> Snapshot:
    return replace(
        a_snapshot().build(), encryption_type="EncryptionAtRestWithCustomerKey", disk_encryption_set_id=snapshot_set
    )


def placed(target: Target, snapshot: Snapshot) -> Placement:
    policy = Policy("p", (target,))
    return place(Selected(policy, target), snapshot, snapshot.id.group)


def test_a_customer_key_source_without_a_set_for_its_region_fails_at_once():
    snapshot = encrypted()
    job = new_job(snapshot, placed(Target("westus3"), snapshot), T0)
    assert job.state is CopyState.FAILED and job.finished_at == T0
    assert job.error is not None and job.error.code == "EncryptionSetRequired" and "westus3" in job.error.message
    ok = new_job(snapshot, placed(Target("westus3", disk_encryption_set_id=SET), snapshot), T0)
    assert ok.state is CopyState.QUEUED and ok.disk_encryption_set_id == SET
    plain = a_snapshot().build()  # platform keys: a set on the copy is allowed, none is too
    assert new_job(plain, placed(Target("westus3"), plain), T0).state is CopyState.QUEUED


def test_a_chain_keeps_its_set_and_a_changed_one_fails_with_a_clear_reason():
    snapshot = encrypted()
    placement = placed(Target("westus3", disk_encryption_set_id=SET), snapshot)
    assert new_job(snapshot, placement, T0, chain_set=SET.upper()).state is CopyState.QUEUED  # ids ignore case
    changed = new_job(snapshot, placement, T0, chain_set="")
    assert changed.state is CopyState.FAILED and changed.error is not None
    assert changed.error.code == "EncryptionSetChanged" and "platform-managed keys" in changed.error.message


def test_the_chains_set_binds_only_once_a_copy_started():
    from shared.admission import chain_set
    from tests.builders import head_for

    snapshot = encrypted()
    head = head_for(snapshot)
    assert chain_set(head) is None  # nothing copied yet: a corrected policy may still choose its set
    started = replace(head, last_started_key="k", disk_encryption_set_id=SET)
    assert chain_set(started) == SET


def test_the_sweep_lists_every_policys_scopes_once_each():
    from typing import cast

    from shared.engine.caches import Caches
    from shared.engine.parts import Deps
    from shared.engine.sweep import Reconciler
    from shared.store import StateStore

    scoped = {
        "name": "a",
        "sources": {"scopes": [f"/subscriptions/{SUB}/resourceGroups/prod-rg"]},
        "targets": [{"region": "westus3"}],
    }
    other = {"name": "b", "sources": {"scopes": [f"/subscriptions/{OTHER_SUB}"]}, "targets": [{"region": "westus3"}]}
    settings = load_settings(policies_env(scoped, other, COPY_SOURCE_SCOPES=f"/subscriptions/{SUB}"))
    deps = Deps(settings, cast(StateStore, None), cast(Any, None), lambda: T0, Caches(lambda: T0), cast(Any, None))
    scopes = Reconciler(deps, cast(Any, None), cast(Any, None), cast(Any, None)).scopes()
    assert sorted(str(scope) for scope in scopes) == sorted([f"/subscriptions/{SUB}", f"/subscriptions/{OTHER_SUB}"])


def test_a_set_in_another_subscription_than_the_copy_fails_at_once():
    snapshot = encrypted()
    elsewhere = f"/subscriptions/{OTHER_SUB}/resourceGroups/dr{DES}"
    job = new_job(snapshot, placed(Target("westus3", disk_encryption_set_id=elsewhere), snapshot), T0)
    assert job.state is CopyState.FAILED and job.error is not None
    assert job.error.code == "EncryptionSetSubscription" and OTHER_SUB in job.error.message


def test_a_listing_names_the_source_tags_a_copy_could_not_carry():
    from shared.scheduler import plan_chain
    from tests.builders import created, family_snapshots, head_for

    many = {f"t{i:02}": "v" for i in range(60)}
    snaps = [replace(snap, tags=many) for snap in family_snapshots(2)]
    keep_all = Policy("p", (Target("westus3"),))
    plan = plan_chain(
        head_for(snaps[0]), [], created(snaps[1]), listing=snaps, listed_at=created(snaps[1]),
        select=selector((keep_all,), ()),
    )  # fmt: skip
    assert [name for name, _ in plan.dropped_tags] == [snap.id.name for snap in snaps]
    assert all(len(names) == 11 for _, names in plan.dropped_tags)


def test_a_diff_target_s_method_and_storage_travel_to_its_job_and_chain():
    from shared.admission import new_head
    from shared.policies import DiffStorage, Method

    storage = DiffStorage("https://drstore.blob.core.windows.net", "snapcopy")
    policy = Policy("dr", (Target("westus3", method=Method.DIFF, storage=storage),))
    snapshot = a_snapshot().build()
    placement = place(Selected(policy, policy.targets[0]), snapshot, snapshot.id.group)
    assert (placement.method, placement.storage) == ("diff", storage)
    job = new_job(snapshot, placement, T0)
    assert (job.method, job.blob_endpoint, job.blob_container) == ("diff", storage.blob_endpoint, "snapcopy")
    assert new_head(snapshot, "westus3", snapshot.id.group, method=placement.method).method == "diff"
    copy_start = place(
        Selected(implicit_policy(("westus3",), TargetResourceGroup()), Target("westus3")), snapshot, snapshot.id.group
    )
    assert new_job(snapshot, copy_start, T0).method == "copyStart" and copy_start.storage is None
