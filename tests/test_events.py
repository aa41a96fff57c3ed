"""Event parsing against every sample delivery in ../shared/samples/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from shared.events import Malformed, NotOurs, SnapshotWritten, parse_event

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
EXPECTED = {
    "eventgrid-snapshot-write-success.json": SnapshotWritten,
    "eventgrid-snapshot-tag-update.json": SnapshotWritten,  # same snapshot: the table dedupes it
    "eventgrid-own-copy-write-success.json": SnapshotWritten,  # the loop guard catches it later
    "cloudevents-snapshot-write-success.json": SnapshotWritten,
    "eventgrid-disk-write-success.json": NotOurs,
    "eventgrid-snapshot-write-failure.json": NotOurs,
    "eventgrid-snapshot-delete-success.json": NotOurs,
}


def as_host_delivers(body: dict[str, Any]) -> func.EventGridEvent | func.CloudEvent:
    """Decode one array element exactly as the Functions Python worker does."""
    datum = meta.Datum(json.dumps(body), "json")
    return EventGridEventInConverter.decode(datum, trigger_metadata={})


def test_every_event_sample_has_an_expectation():
    samples = {path.name for path in SAMPLES.glob("*.json") if not path.name.startswith("arm-")}
    assert samples == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_is_read_as_expected_through_the_worker_converter(name):
    for body in json.loads((SAMPLES / name).read_text()):
        observation = parse_event(as_host_delivers(body))
        assert isinstance(observation, EXPECTED[name]), observation
        assert observation.event_id == body["id"]
        assert isinstance(parse_event(body), EXPECTED[name])  # plain dicts too


def test_lower_case_resourcegroups_subject_is_the_same_snapshot():
    body = json.loads((SAMPLES / "eventgrid-snapshot-write-success.json").read_text())[0]
    observation = parse_event(as_host_delivers(body))
    assert isinstance(observation, SnapshotWritten)
    assert observation.snapshot_id.resource_group == "prod-rg"
    assert str(observation.snapshot_id).startswith(
        "/subscriptions/6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d/resourceGroups/"
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda body: body.pop("id"),
        lambda body: body.__setitem__("data", "not an object"),
        lambda body: body["data"].__setitem__("resourceUri", "/subscriptions/nope"),
        lambda body: (body["data"].pop("resourceUri"), body.pop("subject")),
    ],
)
def test_malformed_events_are_named_not_raised(mutate):
    body = json.loads((SAMPLES / "eventgrid-snapshot-write-success.json").read_text())[0]
    mutate(body)
    assert isinstance(parse_event(body), Malformed)


def test_unreadable_object_is_malformed():
    assert isinstance(parse_event(object()), Malformed)
