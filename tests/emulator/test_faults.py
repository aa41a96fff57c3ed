"""Injected faults as the SDK meets them: throttling, server errors, delays, dropped connections."""

from __future__ import annotations

import time
from typing import cast

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.rest import HttpResponse

from local.emulator import EmulatorServer, Fault, World

from .conftest import RG, Arm, Http, make_client

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
