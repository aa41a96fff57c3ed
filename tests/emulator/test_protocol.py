"""What ARM checks on every request before any rule: api-version and a bearer token."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from local.emulator import World

from .conftest import Arm, Http, snapshot_path

pytestmark = pytest.mark.emulator


def test_missing_api_version_is_refused(http: Http, world: World) -> None:
    response = http.request("GET", snapshot_path("snap0"))

    assert response.status == 400
    assert response.body["error"]["code"] == "MissingApiVersionParameter"


@pytest.mark.parametrize("version", ["2019-07-01", "2020-11-30-preview", "latest", "2021-02-30"])
def test_old_or_malformed_api_version_is_refused_and_counted(http: Http, world: World, version: str) -> None:
    response = http.request("GET", snapshot_path("snap0") + f"?api-version={version}")

    assert response.status == 400
    assert response.body["error"]["code"] == "InvalidApiVersionParameter"
    assert world.counters()["refusals"]["api_version"] == 1


@pytest.mark.parametrize("version", ["2020-12-01", "2023-10-02-preview", "2026-03-02"])
def test_supported_api_versions_reach_the_resource(http: Http, version: str) -> None:
    response = http.request("GET", snapshot_path("snap0") + f"?api-version={version}")

    assert response.status == 404
    assert response.body["error"]["code"] == "ResourceNotFound"


def test_sdk_with_an_old_api_version_is_refused(arm: Arm, world: World) -> None:
    with pytest.raises(HttpResponseError) as caught:
        arm.client.snapshots.get("prod-rg", "snap0", api_version="2019-07-01")

    assert caught.value.status_code == 400
    assert world.counters()["refusals"]["api_version"] == 1


@pytest.mark.parametrize("token", [None, "", "   "])
def test_requests_without_a_bearer_token_are_401(http: Http, token: str | None) -> None:
    response = http.request("GET", snapshot_path("snap0") + "?api-version=2024-03-02", token=token)

    assert response.status == 401
    assert response.body["error"]["code"] == "AuthenticationFailed"
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_every_arm_response_carries_request_ids(http: Http) -> None:
    response = http.request("GET", snapshot_path("snap0") + "?api-version=2024-03-02")

    assert response.headers["x-ms-request-id"]
    assert response.headers["x-ms-correlation-request-id"]


def test_requests_are_counted_by_method_and_kind(arm: Arm, world: World) -> None:
    arm.snapshot(arm.disk(), "snap0")
    arm.get("snap0")
    list(arm.client.snapshots.list_by_resource_group("prod-rg"))

    requests = world.counters()["requests"]

    assert requests == {
        "PUT disk": 1,
        "GET disk": 1,
        "PUT snapshot": 1,
        "GET snapshot": 2,
        "GET operation": 2,
        "LIST snapshots": 1,
    }
