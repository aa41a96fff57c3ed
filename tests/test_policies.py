"""Replication policies, pure: parsing and validation, selection, copy names."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.ids import ResourceGroupId, ResourceId, Scope, TargetResourceGroup
from shared.placement import evaluate, expand_name
from shared.policies import (
    CopySpeed,
    DiffStorage,
    Method,
    Mode,
    PolicyError,
    Retention,
    implicit_policy,
    parse_policies,
    policy_document,
)
from tests.builders import SUB

OTHER = "0b7e7c1e-5d2a-4c39-9b0e-2f1d3c4b5a69"
DIFF_STORAGE = {"blobEndpoint": "https://drstore.blob.core.windows.net/", "container": "snapcopy"}
DES = f"/subscriptions/{SUB}/resourceGroups/dr-rg/providers/Microsoft.Compute/diskEncryptionSets/des-westus3"
EXAMPLE: dict[str, Any] = {
    "name": "prod-dr",
    "sources": {"scopes": [f"/subscriptions/{SUB}/resourceGroups/prod-rg"], "tags": {"backup": "dr"}},
    "targets": [
        {
            "region": "westus3",
            "resourceGroup": "dr-rg",
            "diskEncryptionSetId": DES,
            "copySpeed": "Enhanced",
            "retain": {"count": 7, "days": 30},
        }
    ],
    "copyTags": True,
    "tags": {"owner": "dr-team"},
    "nameTemplate": "{source}-{region}",
    "mode": "all",
}


def diff(**fields: Any) -> dict[str, Any]:
    """A policy with one diff target (none of the CopyStart-only fields)."""
    target = {"region": "westus3", "resourceGroup": "dr-rg", "method": "diff", "storage": DIFF_STORAGE, **fields}
    return {**EXAMPLE, "targets": [{key: value for key, value in target.items() if value is not None}]}


def parse(*policies: dict[str, Any]) -> Any:
    return parse_policies(json.dumps(list(policies)))


def with_(change: dict[str, Any], target: dict[str, Any] | None = None) -> dict[str, Any]:
    policy = {**EXAMPLE, **change}
    if target is not None:
        policy["targets"] = [{**EXAMPLE["targets"][0], **target}]
    return policy


def test_the_issues_example_parses_field_by_field():
    (policy,) = parse(EXAMPLE)
    assert policy.name == "prod-dr" and policy.mode is Mode.ALL and policy.copy_tags
    assert policy.scopes == (Scope(SUB, "prod-rg"),)
    assert policy.source_tags == (("backup", "dr"),) and policy.tags == (("owner", "dr-team"),)
    (target,) = policy.targets
    assert target.region == "westus3" and target.resource_group == TargetResourceGroup(name="dr-rg")
    assert target.disk_encryption_set_id == DES and target.copy_speed is CopySpeed.ENHANCED
    assert target.retain == Retention(count=7, days=30)


def test_defaults_of_a_minimal_policy():
    (policy,) = parse({"name": "p", "targets": [{"region": "westus3"}]})
    (target,) = policy.targets
    assert policy.scopes == () and policy.source_tags == () and policy.copy_tags and policy.mode is Mode.ALL
    assert policy.name_template == "{source}-{region}" and target.retain is None
    assert target.copy_speed is CopySpeed.STANDARD and target.resource_group == TargetResourceGroup()


@pytest.mark.parametrize(
    ("policy", "field", "expected"),
    [
        (with_({"name": "Prod_DR"}), "name", "a-z, 0-9 and -"),
        (with_({"mode": "newest"}), "mode", "'all' or 'latest'"),
        (with_({"copyTags": "yes"}), "copyTags", "true or false"),
        (with_({"targets": []}), "targets", "non-empty"),
        (with_({}, {"region": "West US 3"}), "targets[0].region", "region name"),
        (with_({}, {"copySpeed": "Fast"}), "targets[0].copySpeed", "'Standard' or 'Enhanced'"),
        (with_({}, {"retain": {"count": 0}}), "targets[0].retain.count", "at least 1"),
        (with_({}, {"retain": {"days": True}}), "targets[0].retain.days", "at least 1"),
        (with_({}, {"retain": {}}), "targets[0].retain", "'count' and/or 'days'"),
        (
            with_({}, {"diskEncryptionSetId": DES.replace("diskEncryptionSets", "disks")}),
            "diskEncryptionSetId",
            "diskEncryptionSets",
        ),
        (
            with_({}, {"resourceGroup": f"/subscriptions/{OTHER}/resourceGroups/dr"}),
            "targets[0].diskEncryptionSetId",
            "in the target's subscription",
        ),
        (with_({}, {"resourceGroup": "bad/name"}), "targets[0].resourceGroup", "resource group name"),
        (with_({}, {"method": "copy"}), "targets[0].method", "'copyStart' or 'diff'"),
        (diff(storage=None), "targets[0].storage", "a JSON object"),
        (diff(storage={"blobEndpoint": "http://store.example", "container": "snapcopy"}), "blobEndpoint", "https://"),
        (diff(storage={**DIFF_STORAGE, "container": "A"}), "targets[0].storage.container", "3-63 lower-case"),
        (diff(copySpeed="Standard"), "targets[0].copySpeed", "CopyStart only"),
        (diff(retain={"count": 2}), "targets[0].retain", "CopyStart only"),
        (with_({}, {"storage": DIFF_STORAGE}), "targets[0].storage", "only the diff method"),
        (with_({}, {"speed": "Enhanced"}), "targets[0].speed", "one of"),
        (with_({"sources": {"scopes": ["/subscriptions/nope"]}}), "sources.scopes[0]", "/subscriptions/<guid>"),
        (with_({"sources": {"tags": {"backup": 1}}}), "sources.tags.backup", "a string"),
        (with_({"tags": {"Owner": "a", "owner": "b"}}), "tags", "case-insensitive"),
        (with_({"nameTemplate": "{source}-{zone}"}), "nameTemplate", "tokens among"),
        (with_({"nameTemplate": "copy-{region}"}), "nameTemplate", "{source}, {time} or {hash}"),
        (with_({"nameTemplate": "{source} {region}"}), "nameTemplate", "around the tokens"),
        (with_({"nameTemplate": "{source}-"}), "nameTemplate", "ends with"),
        (with_({"nameTemplate": "-{source}"}), "nameTemplate", "starts with"),
        (
            with_({"nameTemplate": "{source}-copy", "targets": [{"region": "westus3"}, {"region": "centralus"}]}),
            "nameTemplate",
            "{region} when two targets",
        ),
        (with_({"targets": [{"region": "westus3"}, {"region": "westus3"}]}), "targets", "each region once"),
        (with_({"colour": "blue"}), "colour", "one of"),
    ],
)
def test_every_bad_field_fails_start_up_naming_the_policy_field_value_and_what_was_expected(
    policy: dict[str, Any], field: str, expected: str
):
    with pytest.raises(PolicyError) as caught:
        parse(policy)
    message = str(caught.value)
    assert message.startswith("setting COPY_POLICIES is invalid: policy ")
    assert field in message and expected in message and caught.value.setting == "COPY_POLICIES"


@pytest.mark.parametrize("text", ["", "{", "{}", "[]", '"x"'])
def test_a_setting_that_is_not_an_array_of_policies_is_refused(text: str):
    with pytest.raises(ValueError, match="COPY_POLICIES"):
        parse_policies(text)


def test_two_policies_may_not_share_a_name():
    with pytest.raises(PolicyError, match="no other policy has"):
        parse(EXAMPLE, EXAMPLE)


def test_the_implicit_policy_is_the_old_settings():
    policy = implicit_policy(("westus3", "centralus"), TargetResourceGroup(name="dr-rg"))
    assert policy.implicit and [t.region for t in policy.targets] == ["westus3", "centralus"]
    assert all(t.resource_group == TargetResourceGroup(name="dr-rg") and t.retain is None for t in policy.targets)


# --- selection ------------------------------------------------------------------------------

SOURCE = ResourceId(SUB, "prod-rg", "snapshots", "vm0-data0-s1")


def test_scopes_and_tags_select_with_names_case_insensitive_and_values_exact():
    policies = parse(EXAMPLE)
    assert [s.target.region for s in evaluate(policies, SOURCE, {"Backup": "dr"}, ())[0]] == ["westus3"]
    chosen, passed = evaluate(policies, SOURCE, {"backup": "DR"}, ())
    assert chosen == [] and "is 'DR', not 'dr'" in passed[0].reason
    chosen, passed = evaluate(policies, SOURCE, {}, ())
    assert chosen == [] and "missing" in passed[0].reason
    elsewhere = ResourceId(SUB, "test-rg", "snapshots", "x")
    assert evaluate(policies, elsewhere, {"backup": "dr"}, ())[1][0].reason == "source not in the policy's scopes"


def test_without_scopes_a_policy_uses_the_default_scopes_and_else_everything():
    policies = parse({"name": "all", "targets": [{"region": "westus3"}]})
    assert evaluate(policies, SOURCE, {}, ())[0]
    assert not evaluate(policies, SOURCE, {}, (Scope(OTHER),))[0]
    assert evaluate(policies, SOURCE, {}, (Scope(SUB.upper(), "PROD-RG"),))[0]


def test_the_first_policy_that_selects_a_snapshot_for_a_region_wins_it():
    first = {"name": "first", "targets": [{"region": "westus3", "resourceGroup": "a"}]}
    second = {"name": "second", "targets": [{"region": "westus3", "resourceGroup": "b"}, {"region": "centralus"}]}
    chosen, passed = evaluate(parse(first, second), SOURCE, {}, ())
    assert [(s.policy.name, s.target.region) for s in chosen] == [("first", "westus3"), ("second", "centralus")]
    assert [(p.policy, p.region, p.reason) for p in passed] == [("second", "westus3", "region taken by policy 'first'")]


# --- names ----------------------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,78}[A-Za-z0-9_]|[A-Za-z0-9]")
WHEN = datetime(2026, 11, 20, 3, 4, 5, tzinfo=UTC)


def test_templates_expand_every_token():
    name = expand_name("{disk}.{source}_{region}-{time}-{hash}", SOURCE, "vm0-data0", "westus3", WHEN)
    assert re.fullmatch(r"vm0-data0\.vm0-data0-s1_westus3-20261120030405-[0-9a-f]{8}", name)
    assert expand_name("{source}-{region}", SOURCE, None, "westus3", WHEN) == "vm0-data0-s1-westus3"


def test_a_long_name_is_cut_to_80_and_stays_unique_by_its_hash():
    long_a = ResourceId(SUB, "prod-rg", "snapshots", "a" * 78 + "x1")
    long_b = ResourceId(SUB, "prod-rg", "snapshots", "a" * 78 + "x2")
    names = {expand_name("{source}-{region}", rid, None, "westus3", WHEN) for rid in (long_a, long_b)}
    assert len(names) == 2 and all(len(name) <= 80 and NAME_RE.fullmatch(name) for name in names)


def test_names_are_stable_for_the_same_source_and_differ_by_region():
    a = expand_name("{source}-{hash}-{region}", SOURCE, None, "westus3", WHEN)
    assert a == expand_name("{source}-{hash}-{region}", SOURCE, None, "westus3", WHEN)
    assert a != expand_name("{source}-{hash}-{region}", SOURCE, None, "centralus", WHEN)
    other_group = ResourceId(SUB, "prod-rg2", "snapshots", SOURCE.name)
    assert expand_name("{source}-{hash}", SOURCE, None, "w", WHEN) != expand_name(
        "{source}-{hash}", other_group, None, "w", WHEN
    )


def test_a_policy_target_group_may_be_in_another_subscription():
    (policy,) = parse(
        {"name": "x", "targets": [{"region": "westus3", "resourceGroup": f"/subscriptions/{OTHER}/resourceGroups/dr"}]}
    )
    assert policy.targets[0].resource_group.group == ResourceGroupId(OTHER, "dr")


def test_a_policy_reads_back_from_the_form_the_api_shows():
    from shared.policies import policy_document

    for policy in parse(EXAMPLE, {"name": "bare", "targets": [{"region": "centralus"}]}):
        (again,) = parse_policies(json.dumps([policy_document(policy)]))
        assert again == policy


def test_retain_with_only_nulls_and_too_many_policy_tags_are_refused():
    for retain in ({"count": None}, {"count": None, "days": None}):
        with pytest.raises(PolicyError, match="'count' and/or 'days'"):
            parse(with_({}, {"retain": retain}))
    (policy,) = parse(with_({}, {"retain": {"count": 3, "days": None}}))
    assert policy.targets[0].retain == Retention(count=3)
    with pytest.raises(PolicyError, match="at most 49 tags"):
        parse(with_({"tags": {f"t{i}": "v" for i in range(50)}}))


def test_a_cut_name_differs_by_region_even_without_a_region_token():
    long = ResourceId(SUB, "prod-rg", "snapshots", "a" * 75)
    west = expand_name("{source}-{region}", long, None, "westus3", WHEN)
    central = expand_name("{source}-{region}", long, None, "centralus", WHEN)
    assert west != central and len(west) <= 80 and len(central) <= 80


def test_a_diff_target_reads_back_as_written():
    (policy,) = parse(diff())
    (target,) = policy.targets
    assert target.method is Method.DIFF
    assert target.storage == DiffStorage("https://drstore.blob.core.windows.net", "snapcopy")
    local = {"blobEndpoint": "http://127.0.0.1:10000/devstoreaccount1", "container": "snapcopy"}
    assert parse(diff(storage=local))[0].targets[0].storage == DiffStorage(local["blobEndpoint"], "snapcopy")
    assert parse_policies(json.dumps([policy_document(policy)])) == (policy,)


def test_a_region_is_copied_one_way_by_every_policy():
    storage = {"blobEndpoint": "https://drstore.blob.core.windows.net", "container": "snapcopy"}
    both = [
        {"name": "a", "targets": [{"region": "westus3"}]},
        {"name": "b", "targets": [{"region": "westus3", "method": "diff", "storage": storage}]},
    ]
    with pytest.raises(PolicyError, match="a region's copies are made one way"):
        parse_policies(json.dumps(both))
    other_container = {**storage, "container": "other"}
    two_blobs = [
        {"name": "a", "targets": [{"region": "westus3", "method": "diff", "storage": storage}]},
        {"name": "b", "targets": [{"region": "westus3", "method": "diff", "storage": other_container}]},
    ]
    with pytest.raises(PolicyError, match="policy 'a' uses for westus3"):
        parse_policies(json.dumps(two_blobs))
    same = [two_blobs[0], {"name": "b", "targets": [{"region": "westus3", "method": "diff", "storage": storage}]}]
    assert len(parse_policies(json.dumps(same))) == 2
