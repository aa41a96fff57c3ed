"""Every answer ARM may give to a create PUT (`Fault.answer`), as the SDK meets them.

The write happens whatever the shape; only the answer changes. What the SDK does with each
shape is pinned here, since the app has to survive all of them:

| answer              | `begin_create_or_update(polling=False)`     | with polling (`.result()`)   |
|---------------------|---------------------------------------------|------------------------------|
| (none): 202 + body  | `.result()` -> Snapshot, `Updating`          | Snapshot, `Succeeded`        |
| `202-empty`         | `.result()` raises `json.JSONDecodeError`    | Snapshot, `Succeeded`        |
| `202-location-only` | `.result()` raises `json.JSONDecodeError`    | Snapshot, `Succeeded`        |
| `201`               | `begin_...` raises `HttpResponseError` (201) | same                         |
| `200`               | `.result()` -> Snapshot, `Updating`          | Snapshot, `Succeeded`        |
"""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.compute.models import CreationData, Snapshot, SnapshotProperties

from local.emulator import Answer, EmulatorServer, Fault, World

from .conftest import API_VERSION, RG, TARGET_REGION, Arm, Http, copy_body, make_client, snapshot_path

pytestmark = pytest.mark.emulator


def copy_model(source_id: str) -> Snapshot:
    return Snapshot(
        location=TARGET_REGION,
        properties=SnapshotProperties(
            creation_data=CreationData(create_option="CopyStart", source_resource_id=source_id), incremental=True
        ),
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, (202, {"azure-asyncoperation", "location"}, True)),
        ("202-empty", (202, {"azure-asyncoperation", "location"}, False)),
        ("202-location-only", (202, {"location"}, False)),
        ("201", (201, set(), True)),
        ("200", (200, set(), True)),
    ],
)
def test_each_answer_shape_reaches_the_sdk_pipeline_and_the_copy_starts(
    arm: Arm, world: World, answer: Answer | None, expected: tuple[int, set[str], bool]
) -> None:
    status, headers, has_body = expected
    source = arm.snapshot(arm.disk(), "snap0")
    assert source.id is not None
    if answer is not None:
        world.add_fault(Fault(method="PUT", kind="snapshot", answer=answer))

    request = HttpRequest(
        "PUT", snapshot_path("snap0-westus3") + f"?api-version={API_VERSION}", json=copy_body(source.id)
    )
    response = arm.client.send_request(request)

    assert response.status_code == status
    assert {"azure-asyncoperation", "location"} & {name.lower() for name in response.headers} == headers
    if has_body:
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["name"] == "snap0-westus3"
    else:
        assert response.content == b""
        assert "Content-Type" not in response.headers
    assert arm.get("snap0-westus3").properties is not None  # created all the same
    assert world.counters()["copies_started"] == 1
    assert world.faults() == []


@pytest.mark.parametrize("answer", ["202-empty", "202-location-only", "200"])
def test_polling_completes_for_every_shape_but_201(arm: Arm, world: World, answer: Answer) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    assert source.id is not None
    world.add_fault(Fault(method="PUT", kind="snapshot", answer=answer))

    result = arm.client.snapshots.begin_create_or_update(RG, "snap0-westus3", copy_model(source.id)).result()

    assert result.name == "snap0-westus3"
    assert result.properties is not None and result.properties.provisioning_state == "Succeeded"
    assert result.properties.creation_data.create_option == "CopyStart"


def test_location_only_is_followed_to_the_resource_through_the_monitor_url(arm: Arm, world: World, http: Http) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    assert source.id is not None
    world.add_fault(Fault(method="PUT", kind="snapshot", answer="202-location-only"))

    created = http.request("PUT", snapshot_path("snap0-westus3") + f"?api-version={API_VERSION}", copy_body(source.id))
    result = http.request("GET", created.headers["location"].removeprefix(http.base))
    arm.client.snapshots.begin_delete(RG, "snap0-westus3").result()
    after_delete = http.request("GET", created.headers["location"].removeprefix(http.base))

    assert "monitor=true" in created.headers["location"]
    assert created.headers["retry-after"] == "0"
    assert (result.status, result.body["name"]) == (200, "snap0-westus3")
    assert after_delete.status == 204


@pytest.mark.parametrize("answer", ["202-empty", "202-location-only"])
def test_without_polling_an_empty_202_fails_to_deserialize(arm: Arm, world: World, answer: Answer) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    assert source.id is not None
    world.add_fault(Fault(method="PUT", kind="snapshot", answer=answer))

    poller = arm.client.snapshots.begin_create_or_update(RG, "snap0-westus3", copy_model(source.id), polling=False)
    with pytest.raises(json.JSONDecodeError):  # a ValueError, not an azure-core error
        poller.result()

    assert poller.done()
    assert arm.get("snap0-westus3").name == "snap0-westus3"


@pytest.mark.parametrize("polling", [False, True])
def test_a_201_is_refused_by_the_sdk_although_the_copy_started(
    emulator: EmulatorServer, arm: Arm, world: World, polling: bool
) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    assert source.id is not None
    world.add_fault(Fault(method="PUT", kind="snapshot", answer="201"))

    with make_client(emulator, retry_total=0) as client, pytest.raises(HttpResponseError) as caught:
        client.snapshots.begin_create_or_update(RG, "snap0-westus3", copy_model(source.id), polling=polling)

    assert (caught.value.status_code, caught.value.reason, caught.value.error) == (201, "Created", None)
    assert world.copies()[0]["state"] == "copying"


def test_without_polling_a_200_gives_the_body_as_it_was(arm: Arm, world: World) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    assert source.id is not None
    world.add_fault(Fault(method="PUT", kind="snapshot", answer="200"))

    result = arm.copy(source)

    assert result.properties is not None and result.properties.provisioning_state == "Updating"
    assert result.properties.completion_percent == 0.0


def test_an_update_answered_202_gets_an_operation_of_its_own(arm: Arm, world: World, http: Http) -> None:
    arm.snapshot(arm.disk(), "snap0")
    body = http.request("GET", snapshot_path("snap0") + f"?api-version={API_VERSION}").body
    world.add_fault(Fault(answer="202-empty"))

    updated = http.request("PUT", snapshot_path("snap0") + f"?api-version={API_VERSION}", body)
    operation = http.request("GET", updated.headers["azure-asyncoperation"].removeprefix(http.base))

    assert updated.status == 202
    assert (operation.status, operation.body["status"]) == (200, "Succeeded")


def test_an_answer_fault_leaves_refusals_alone(arm: Arm, world: World) -> None:
    world.add_fault(Fault(method="PUT", kind="snapshot", answer="202-empty"))
    with pytest.raises(HttpResponseError) as caught:
        arm.copy(snapshot_path("gone"), "gone-westus3")

    assert caught.value.status_code == 404
    assert world.faults() == []  # used up by the refused PUT


@pytest.mark.parametrize(
    "fault",
    [
        {"answer": "202-empty", "status": 500},
        {"answer": "202-empty", "drop_connection": True},
        {"answer": "200", "method": "GET"},
        {"answer": "204"},
    ],
)
def test_nonsensical_answer_faults_are_refused(http: Http, fault: dict[str, object]) -> None:
    response = http.request("POST", "/_admin/faults", fault, token=None)

    assert response.status == 422
    assert http.admin("GET", "faults") == []
