"""ARM id parsing, deterministic target names and settings validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import runtime
from shared.config import load_settings, poll_schedule, sweep_schedule
from shared.errors import ConfigError
from shared.ids import InvalidResourceId, ResourceGroupId, ResourceId, Scope
from shared.model import target_snapshot_id
from tests.builders import OTHER_SUB, SUB

SNAP = f"/subscriptions/{SUB}/resourceGroups/prod-rg/providers/Microsoft.Compute/snapshots/sqlvm-data0-20261120T0300"
BASE_ENV = {"COPY_TARGET_REGIONS": "westus3", "STATE_CONNECTION_STRING": "UseDevelopmentStorage=true"}


def test_ids_compare_case_insensitively_as_arm_does():
    lower = ResourceId.parse(SNAP.replace("resourceGroups", "resourcegroups").lower())
    assert lower == ResourceId.parse(SNAP)
    assert hash(lower) == hash(ResourceId.parse(SNAP))
    assert str(ResourceId.parse(SNAP)) == SNAP


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-an-id",
        f"/subscriptions/{SUB}/resourceGroups/prod-rg/providers/Microsoft.Compute/virtualMachines/vm",
        "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s",
        SNAP + "/extra",
        SNAP + "?$filter=x",
        f"/subscriptions/{SUB}/resourceGroups/prod-rg/providers/Microsoft.Compute/snapshots/a'b",
    ],
)
def test_malformed_ids_are_refused(text):
    with pytest.raises(InvalidResourceId):
        ResourceId.parse(text, kind="snapshots")


def test_a_disk_id_is_not_a_snapshot_id():
    with pytest.raises(InvalidResourceId, match="disk id"):
        ResourceId.parse(SNAP.replace("snapshots/", "disks/"), kind="snapshots")


def test_table_keys_hold_no_forbidden_characters():
    snap = ResourceId.parse(SNAP)
    key = f"{snap.resource_group_key}|{snap.name.lower()}"  # the seen-index's PartitionKey and RowKey
    assert not set(key) & set("/\\#?")


def test_scopes_match_subscriptions_and_resource_groups_ignoring_case():
    snap = ResourceId.parse(SNAP)
    assert Scope.parse(f"/subscriptions/{SUB}").contains(snap)
    assert Scope.parse(f"/subscriptions/{SUB.upper()}/resourcegroups/PROD-RG").contains(snap)
    assert not Scope.parse(f"/subscriptions/{OTHER_SUB}").contains(snap)


def test_target_name_is_deterministic_and_beside_its_source_by_default():
    source = ResourceId.parse(SNAP)
    group = ResourceGroupId(SUB, "prod-rg")
    first = target_snapshot_id(source, "westus3", group)
    assert first == target_snapshot_id(source, "westus3", group)
    assert first.name == "sqlvm-data0-20261120T0300-westus3"


def test_target_names_in_a_shared_group_cannot_collide():
    shared_group = ResourceGroupId(SUB, "dr-copies")
    a = ResourceId(SUB, "rg-a", "snapshots", "daily")
    b = ResourceId(SUB, "rg-b", "snapshots", "daily")
    assert target_snapshot_id(a, "westus3", shared_group) != target_snapshot_id(b, "westus3", shared_group)


def test_long_names_are_shortened_to_azures_limit_without_losing_uniqueness():
    a = ResourceId(SUB, "rg", "snapshots", "x" * 79 + "a")
    b = ResourceId(SUB, "rg", "snapshots", "x" * 79 + "b")
    group = ResourceGroupId(SUB, "rg")
    names = {target_snapshot_id(s, "australiasoutheast", group).name for s in (a, b)}
    assert len(names) == 2 and all(len(name) <= 80 for name in names)


def test_settings_load_with_defaults():
    settings = load_settings({**BASE_ENV, "COPY_TARGET_REGIONS": " WestUS3 , centralus "})
    assert settings.target_regions == ("westus3", "centralus")
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.max_copies_per_region == 100
    assert settings.poll_schedule == "0 */1 * * * *"


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"COPY_TARGET_REGIONS": ""}, "COPY_TARGET_REGIONS"),
        ({"COPY_TARGET_REGIONS": "west us 3"}, "COPY_TARGET_REGIONS"),
        ({"COPY_TARGET_REGIONS": "westus3,westus3"}, "COPY_TARGET_REGIONS"),
        ({"STATE_CONNECTION_STRING": ""}, "STATE_TABLE_ENDPOINT/STATE_CONNECTION_STRING"),
        ({"STATE_TABLE_ENDPOINT": "https://x.table.core.windows.net"}, "STATE_TABLE_ENDPOINT/STATE_CONNECTION_STRING"),
        ({"ARM_ENDPOINT": "http://management.azure.com"}, "ARM_ENDPOINT"),
        ({"ARM_CREDENTIAL": "emulator"}, "ARM_CREDENTIAL"),
        ({"ARM_CREDENTIAL": "password"}, "ARM_CREDENTIAL"),
        ({"COPY_SOURCE_SCOPES": "/subscriptions/abc"}, "COPY_SOURCE_SCOPES"),
        ({"COPY_TARGET_RESOURCE_GROUP": "bad/name"}, "COPY_TARGET_RESOURCE_GROUP"),
        ({"MAX_COPIES_PER_REGION": "101"}, "MAX_COPIES_PER_REGION"),
        ({"MAX_COPIES_PER_REGION": "lots"}, "MAX_COPIES_PER_REGION"),
        ({"POLL_SCHEDULE": "every minute"}, "POLL_SCHEDULE"),
        ({"STATE_TABLE_NAME": "snap-copy"}, "STATE_TABLE_NAME"),
        ({"NOTIFY_TOPIC_ENDPOINT": "http://t.westus3-1.eventgrid.azure.net/api/events"}, "NOTIFY_TOPIC_ENDPOINT"),
        ({"NOTIFY_TOPIC_ENDPOINT": "https://t.westus3-1.eventgrid.azure.net"}, "NOTIFY_TOPIC_ENDPOINT"),
        (
            {"NOTIFY_TOPIC_ENDPOINT": "https://t.westus3-1.eventgrid.azure.net/api/events?key=1"},
            "NOTIFY_TOPIC_ENDPOINT",
        ),
        ({"RPO_ALERT_MINUTES": "1"}, "RPO_ALERT_MINUTES"),
    ],
)
def test_a_bad_setting_fails_with_its_name_and_value(changes, setting):
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE_ENV, **changes})
    assert caught.value.setting == setting
    assert setting in str(caught.value)


def test_notifications_are_off_unless_a_topic_endpoint_is_set_and_name_the_app_when_it_is_known():
    assert load_settings(BASE_ENV).notify_endpoint is None
    endpoint = "https://snapcopy.westus3-1.eventgrid.azure.net/api/events"
    platform = {
        "WEBSITE_OWNER_NAME": f"{SUB}+rg-dev-WestUS3webspace",
        "WEBSITE_RESOURCE_GROUP": "rg-dev",
        "WEBSITE_SITE_NAME": "func-snapcopy",
    }
    settings = load_settings({**BASE_ENV, "NOTIFY_TOPIC_ENDPOINT": endpoint, **platform})
    assert settings.notify_endpoint == endpoint
    assert settings.app_id == f"/subscriptions/{SUB}/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-snapcopy"
    assert load_settings({**BASE_ENV, "WEBSITE_SITE_NAME": "func-snapcopy"}).app_id == ""  # elsewhere: "snapcopy"


def test_a_ca_bundle_that_does_not_exist_stops_the_composition_root_naming_it():
    settings = load_settings({**BASE_ENV, "ARM_CA_BUNDLE": "/nope/ca.pem"})  # parsing reads no file
    with pytest.raises(ConfigError) as caught:
        runtime.build(settings)
    assert caught.value.setting == "ARM_CA_BUNDLE" and "/nope/ca.pem" in str(caught.value)


def test_settings_are_parsed_from_what_they_are_given_never_from_the_environment(monkeypatch):
    monkeypatch.setenv("COPY_TARGET_REGIONS", "centralus")
    monkeypatch.setenv("POLL_SCHEDULE", "0 */5 * * * *")
    settings = load_settings(BASE_ENV)
    assert settings.target_regions == ("westus3",) and settings.poll_schedule == "0 */1 * * * *"
    assert poll_schedule({}) == "0 */1 * * * *" and runtime.poll_schedule() == "0 */5 * * * *"


def test_no_setting_can_choose_the_emulators_fixed_token_even_on_loopback():
    """The offline world hands its credential to runtime.build; the app's settings name only
    real identities, so a deployed app can never be talked into a fixed token."""
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE_ENV, "ARM_ENDPOINT": "https://127.0.0.1:8443", "ARM_CREDENTIAL": "emulator"})
    assert caught.value.setting == "ARM_CREDENTIAL" and "default, managed-identity" in str(caught.value)


def test_target_resource_group_may_be_a_name_or_a_full_id():
    by_name = load_settings({**BASE_ENV, "COPY_TARGET_RESOURCE_GROUP": "dr-rg"}).target_resource_group
    assert by_name.for_source(SUB, "prod-rg") == ResourceGroupId(SUB, "dr-rg")
    full = f"/subscriptions/{OTHER_SUB}/resourceGroups/dr-rg"
    by_id = load_settings({**BASE_ENV, "COPY_TARGET_RESOURCE_GROUP": full}).target_resource_group
    assert by_id.for_source(SUB, "prod-rg") == ResourceGroupId(OTHER_SUB, "dr-rg")


def test_poll_schedule_defaults_to_every_minute():
    assert poll_schedule({}) == "0 */1 * * * *"
    assert poll_schedule({"POLL_SCHEDULE": "*/10 * * * * *"}) == "*/10 * * * * *"


def test_sweep_schedule_defaults_to_hourly_and_names_itself_when_bad():
    assert sweep_schedule({}) == "0 17 * * * *"
    with pytest.raises(ConfigError, match="SWEEP_SCHEDULE"):
        sweep_schedule({"SWEEP_SCHEDULE": "hourly"})


_ID_PARTS = st.sampled_from(
    [
        "/subscriptions/",
        "6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d",
        "/resourceGroups/",
        "/resourcegroups/",
        "prod-rg",
        "/providers/Microsoft.Compute/",
        "snapshots/",
        "disks/",
        "vm0-s0",
        "'",
        " or ",
        "eq",
        "%27",
        "/",
        "..",
        "\n",
        "\x00",
        "#",
        "?",
        "é",
        "٣",
        " ",
    ]
)


@given(st.lists(_ID_PARTS, max_size=12).map("".join) | st.text(max_size=200))
def test_resource_ids_parse_strictly_or_not_at_all(text: str):
    """Whatever reaches the API or an event: either a clean id that round-trips, or a refusal."""
    try:
        parsed = ResourceId.parse(text)
    except InvalidResourceId:
        return
    rendered = str(parsed)
    assert ResourceId.parse(rendered) == parsed
    assert parsed.name.isascii() and parsed.subscription.isascii()
    assert not set(rendered) & set("'\"#?\\\n\r\x00 %")
    assert parsed.kind in ("snapshots", "disks") and len(parsed.name) <= 80
