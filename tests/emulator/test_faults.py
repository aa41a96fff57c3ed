"""Injected faults as the SDK meets them: throttling, server errors, delays, dropped connections."""

from __future__ import annotations

import time
from typing import cast

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.rest import HttpResponse

from local.emulator import EmulatorServer, Fault, World

from .conftest import API_VERSION, RG, Arm, Http, copy_body, make_client, snapshot_path

pytestmark = pytest.mark.emulator


def test_throttling_is_seen_raw_with_retry_after(emulator: EmulatorServer, arm: Arm, http: Http) -> None:
    arm.snapshot(arm.disk(), "snap0")
    http.admin("POST", "faults", {"method": "GET", "kind": "snapshot", "status": 429, "retry_after": 7})

    with make_client(emulator, retry_total=0) as client, pytest.raises(HttpResponseError) as caught:
        client.snapshots.get(RG, "snap0")

    assert caught.value.status_code == 429
    assert caught.value.error is not None and caught.value.error.code == "TooManyRequests"
    response = cast(HttpResponse, caught.value.response)
    assert response.headers["Retry-After"] == "7"
    assert arm.get("snap0").name == "snap0"  # the fault was for one request only


def test_sdk_default_retry_recovers_from_one_503(arm: Arm, world: World, http: Http) -> None:
    arm.snapshot(arm.disk(), "snap0")
    http.admin("POST", "faults", {"kind": "snapshot", "method": "GET", "status": 503, "count": 1})

    snapshot = arm.get("snap0")

    assert snapshot.name == "snap0"
    assert world.counters()["requests"]["GET snapshot"] == 3  # LRO final GET, the 503, the retry


def test_delay_then_normal_answer(arm: Arm, world: World) -> None:
    arm.snapshot(arm.disk(), "snap0")
    world.add_fault(Fault(kind="snapshot", delay_seconds=0.3))

    started = time.monotonic()
    snapshot = arm.get("snap0")

    assert time.monotonic() - started >= 0.3
    assert snapshot.name == "snap0"


def test_dropped_connection_surfaces_raw_and_is_retried_by_default(
    emulator: EmulatorServer, arm: Arm, http: Http
) -> None:
    arm.snapshot(arm.disk(), "snap0")
    http.admin("POST", "faults", {"kind": "snapshot", "method": "GET", "drop_connection": True})

    with (
        make_client(emulator, retry_total=0) as client,
        pytest.raises((ServiceRequestError, ServiceResponseError)),
    ):
        client.snapshots.get(RG, "snap0")
    http.admin("POST", "faults", {"kind": "snapshot", "method": "GET", "drop_connection": True})
    recovered = arm.get("snap0")

    assert recovered.name == "snap0"
    assert http.admin("GET", "faults") == []


def test_faults_match_method_kind_and_path_and_run_out(emulator: EmulatorServer, arm: Arm, http: Http) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    armed = http.admin(
        "POST",
        "faults",
        {"method": "PUT", "kind": "snapshot", "path_contains": "WESTUS3", "status": 500, "count": 2},
    )

    arm.get("snap0")  # a GET does not match
    with make_client(emulator, retry_total=0) as client, pytest.raises(HttpResponseError) as caught:
        Arm(client).copy(source, "snap0-westus3")
    remaining = http.admin("GET", "faults")
    cleared = http.admin("DELETE", "faults")

    assert armed[0]["remaining"] == 2
    assert caught.value.status_code == 500
    assert caught.value.error is not None and caught.value.error.code == "InternalServerError"
    assert remaining[0]["remaining"] == 1
    assert cleared == []
    assert arm.copy(source, "snap0-westus3").name == "snap0-westus3"


def test_a_body_fault_refuses_one_source_for_ever_while_the_others_copy(arm: Arm, world: World, http: Http) -> None:
    blocked = arm.snapshot(arm.disk("disk0"), "disk0-snap0")
    other = arm.snapshot(arm.disk("disk1"), "disk1-snap0")
    assert blocked.id is not None
    http.admin(
        "POST",
        "faults",
        {
            "method": "PUT",
            "kind": "snapshot",
            "body_contains": blocked.id.upper(),  # case-insensitive
            "status": 409,
            "error_code": "OperationNotAllowed",
            "count": 1_000_000,
        },
    )

    attempts = []
    for _ in range(3):
        with pytest.raises(HttpResponseError) as caught:
            arm.copy(blocked)
        attempts.append((caught.value.status_code, caught.value.error and caught.value.error.code))
    accepted = arm.copy(other)
    (armed,) = http.admin("GET", "faults")

    assert attempts == [(409, "OperationNotAllowed")] * 3
    assert accepted.name == "disk1-snap0-westus3"
    assert [copy["source_id"] for copy in world.copies()] == [other.id]
    assert armed["remaining"] == 1_000_000 - 3
    assert armed["body_contains"] == blocked.id.upper()


def test_a_body_fault_can_drop_the_connection_after_reading_the_body(
    emulator: EmulatorServer, arm: Arm, world: World
) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    world.add_fault(Fault(method="PUT", body_contains="/snapshots/snap0", drop_connection=True))

    with (
        make_client(emulator, retry_total=0) as client,
        pytest.raises((ServiceRequestError, ServiceResponseError)),
    ):
        Arm(client).copy(source)
    accepted = arm.copy(source)

    assert accepted.name == "snap0-westus3"
    assert world.faults() == []


def test_a_body_fault_needs_every_other_filter_to_match_too(arm: Arm, world: World, http: Http) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    assert source.id is not None
    world.add_fault(Fault(method="PUT", path_contains="elsewhere", body_contains="snap0", status=500))
    world.add_fault(Fault(method="GET", body_contains="snap0", status=500))

    copied = http.request("PUT", snapshot_path("snap0-westus3") + f"?api-version={API_VERSION}", copy_body(source.id))
    read = http.request("GET", snapshot_path("snap0") + f"?api-version={API_VERSION}")  # a GET has no body

    assert (copied.status, read.status) == (202, 200)
    assert [fault["remaining"] for fault in world.faults()] == [1, 1]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "drop_connection": True},
        {"kind": "snapshot"},
        {"status": 200},
        {"status": 503, "count": 0},
        {"kind": "nonsense", "status": 500},
    ],
)
def test_nonsensical_faults_are_refused(http: Http, fault: dict[str, object]) -> None:
    response = http.request("POST", "/_admin/faults", fault, token=None)

    assert response.status == 422
    assert http.admin("GET", "faults") == []
