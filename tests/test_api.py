"""The read-only status API, called as the host calls HTTP functions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.api import InvalidCopyId, parse_copy_id
from shared.model import ChainKey
from shared.notices import copy_id
from tests.conftest import Deployment
from tests.test_functions import RG, disk_with_snapshots, run_until_done, snapshot_events

FAMILY = "3c2b1a09-8f7e-4d6c-b5a4-938271605f4e"


def test_copy_ids_round_trip():
    chain = ChainKey(FAMILY, "westus3")
    key = "20261120T030002.123456Z|sqlvm-data0-20261120t0300"
    assert parse_copy_id(copy_id(chain, key)) == (chain, key)


@given(st.text(max_size=300))
def test_any_text_is_a_valid_copy_id_or_a_clear_refusal(text: str):
    try:
        chain, key = parse_copy_id(text)
    except InvalidCopyId:
        return
    assert copy_id(chain, key).rstrip("=") == text.rstrip("=")


def test_every_http_route_requires_a_function_key(deployment: Deployment):
    http = [name for name in deployment.host.functions if deployment.host.binding(name)["type"] == "httpTrigger"]
    assert http
    for name in http:
        assert str(deployment.host.binding(name)["authLevel"]).lower().endswith("function")


def get(deployment: Deployment, function: str, route_params: dict[str, str] | None = None):
    response = deployment.host.call_http(function, "GET", "/api/x", route_params=route_params)
    return response.status_code, response.mimetype, json.loads(response.get_body())


def test_a_copy_reports_its_progress_then_its_result(deployment: Deployment):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.deliver(snapshot_events(deployment))
    deployment.tick(advance=64)  # half of a 128 s copy
    status, _, chains = get(deployment, "list_chains")
    assert status == 200
    (chain,) = chains["value"]
    assert chain["queued"] == 1 and chain["lastCompletedAt"] is None
    copying = chain["copying"]
    assert copying["state"] == "copying" and 0 < copying["percent"] < 100
    assert copying["targetSnapshotId"].endswith(
        f"/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots/vm0-data0-s0-westus3"
    )
    status, _, view = get(deployment, "get_copy", {"copyId": copying["copyId"]})
    assert status == 200 and view["state"] == "copying"
    run_until_done(deployment)
    status, _, view = get(deployment, "get_copy", {"copyId": copying["copyId"]})
    assert view["state"] == "succeeded" and view["percent"] == 100.0 and view["finishedAt"]
    (chain,) = get(deployment, "list_chains")[2]["value"]
    assert chain["queued"] == 0 and chain["copying"] is None
    assert chain["lastCompletedSnapshotId"].endswith("vm0-data0-s1") and chain["lastCompletedAgeSeconds"] >= 0


@pytest.mark.parametrize("bad", ["", "not base64!", "a" * 400, "JyBvciAnMSc9JzE", copy_id(ChainKey("x", "y"), "z")])
def test_a_bad_copy_id_is_a_400_problem(deployment: Deployment, bad: str):
    status, mimetype, body = get(deployment, "get_copy", {"copyId": bad})
    assert status == 400 and mimetype == "application/problem+json"
    assert body["status"] == 400 and body["detail"]


def test_an_unknown_copy_is_a_404_problem(deployment: Deployment):
    unknown = copy_id(ChainKey(FAMILY, "westus3"), "20261120T030002.123456Z|nothing")
    status, mimetype, body = get(deployment, "get_copy", {"copyId": unknown})
    assert status == 404 and mimetype == "application/problem+json" and "Traceback" not in json.dumps(body)
