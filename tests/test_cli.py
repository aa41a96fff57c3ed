"""The operator CLI and the local functions gateway, against Azurite and the ARM emulator.

The gateway serves the app's HTTP functions on a loopback port as the Functions host
would; the CLI's `main` talks to it over real HTTP. Waiting is driven by an injected sleep
that moves the world on (virtual time, then the timer function), so nothing waits for real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.gateway import gateway, serve
from snapcopy_cli import main
from tests.builders import SUB
from tests.conftest import Deployment
from tests.test_functions import RG, disk_with_snapshots

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

KEY = "local-function-key-4f9c2a"


@pytest.fixture
def api(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The gateway's base URL, with the CLI's environment pointing at it."""
    with serve(gateway(deployment.host, {KEY})) as url:
        monkeypatch.setenv("SNAPCOPY_URL", url)
        monkeypatch.setenv("SNAPCOPY_KEY", KEY)
        monkeypatch.setenv("COLUMNS", "200")  # rich tables: no wrapping in captured output
        yield url


class World:
    """The injected sleep: each wait moves virtual time on and lets Azure and the timer act."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.deployment.tick(advance=seconds)
        self.deployment.deliver(self.deployment.drain_events())  # our copies' own events come back


def run(capsys: pytest.CaptureFixture[str], *argv: str, sleep: Any = None) -> tuple[int, str, str]:
    code = main(list(argv), sleep=sleep or (lambda seconds: None))
    out, err = capsys.readouterr()
    assert KEY not in out and KEY not in err  # the key is never printed
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, sleep: Any = None) -> Any:
    code, out, err = run(capsys, "--json", *argv, sleep=sleep)
    assert code == 0, err
    return json.loads(out)


def disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/disks/{name}"


# --- the CLI ------------------------------------------------------------------------------


def test_copy_with_wait_shows_progress_until_the_copy_succeeds(
    deployment: Deployment, api: str, capsys: pytest.CaptureFixture[str]
):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.drain_events()  # taken before snapcopy was deployed: the operator asks for it
    world = World(deployment)
    code, out, err = run(capsys, "copy", snap, "--wait", "--interval", "30", sleep=world)
    assert code == 0, err
    assert world.slept and set(world.slept) == {30.0}
    assert len(world.slept) >= 4  # a 128 GiB copy takes 128 s of virtual time
    assert "vm0-data0-s0" in out and "westus3" in out and "succeeded" in out and "1 new, 0 already requested" in out
    assert "vm0-data0-s0 → westus3" in err  # the progress bar
    (copy,) = deployment.world.copies()
    assert copy["state"] == "succeeded" and copy["source_id"].lower() == snap.lower()


def test_a_copy_that_fails_while_waited_for_exits_1(
    deployment: Deployment, api: str, capsys: pytest.CaptureFixture[str]
):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.drain_events()
    world = World(deployment)

    def source_lost(seconds: float) -> None:
        if not world.slept:
            (copy,) = deployment.world.copies()
            deployment.world.fail_copy(copy["target_id"], "CopySourceNotFound", "the source snapshot is gone")
        world(seconds)

    code, out, _ = run(capsys, "copy", snap, "--wait", "--interval", "30", sleep=source_lost)
    assert code == 1
    assert "failed" in out and "CopySourceNotFound" in out


def test_backfill_queues_every_snapshot_and_status_pages_through_them(
    deployment: Deployment, api: str, capsys: pytest.CaptureFixture[str]
):
    snaps = disk_with_snapshots(deployment, "vm0-data0", 3)
    deployment.drain_events()
    answer = run_json(capsys, "backfill", disk_id("vm0-data0"))
    assert [copy["sourceSnapshotId"].lower() for copy in answer["copies"]] == [s.lower() for s in snaps]
    assert [copy["state"] for copy in answer["copies"]] == ["copying", "queued", "queued"]

    listed = run_json(capsys, "status", "--disk", disk_id("vm0-data0"), "--page-size", "1")
    assert [copy["copyId"] for copy in listed["value"]] == [copy["copyId"] for copy in answer["copies"]]
    first_two = run_json(capsys, "status", "--page-size", "1", "--limit", "2")
    assert len(first_two["value"]) == 2
    assert run_json(capsys, "status", "--state", "queued")["value"] == listed["value"][1:]

    code, out, err = run(capsys, "status", "--page-size", "1", "--limit", "2")
    assert code == 0 and "2 copies" in out and "raise --limit" in err
    code, out, _ = run(capsys, "status", answer["copies"][0]["copyId"])
    assert code == 0 and answer["copies"][0]["copyId"] in out and "copying" in out  # full id in the detail


def test_backfill_with_wait_copies_the_disk_in_order(
    deployment: Deployment, api: str, capsys: pytest.CaptureFixture[str]
):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.drain_events()
    world = World(deployment)
    code, out, err = run(capsys, "backfill", disk_id("vm0-data0"), "--wait", "--interval", "60", sleep=world)
    assert code == 0, err
    assert out.count("succeeded") == 2
    started = [copy["started_at"] for copy in deployment.world.copies()]
    assert len(started) == 2 and started == sorted(started)


def test_chains_show_the_copy_in_flight_and_the_queue(
    deployment: Deployment, api: str, capsys: pytest.CaptureFixture[str]
):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.drain_events()
    run_json(capsys, "backfill", disk_id("vm0-data0"))
    (chain,) = run_json(capsys, "chains")["value"]
    assert chain["queued"] == 1 and chain["copying"]["sourceSnapshotId"].endswith("vm0-data0-s0")
    code, out, _ = run(capsys, "chains")
    assert code == 0 and "vm0-data0" in out and "vm0-data0-s0 0%" in out and "westus3" in out


def test_cancel_and_retry_refusals_print_the_problem_and_exit_2(
    deployment: Deployment, api: str, capsys: pytest.CaptureFixture[str]
):
    disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.drain_events()
    copying, queued = run_json(capsys, "backfill", disk_id("vm0-data0"))["copies"]

    code, out, err = run(capsys, "cancel", copying["copyId"])
    assert code == 2 and out == ""
    assert "409 Not possible in the copy's current state" in err and "ARM cannot stop a CopyStart copy" in err

    code, _, err = run(capsys, "retry", copying["copyId"])
    assert code == 2 and "only failed or cancelled copies can be retried; this one is copying" in err

    assert run_json(capsys, "cancel", queued["copyId"])["state"] == "cancelled"
    retried = run_json(capsys, "retry", queued["copyId"])
    assert retried["state"] == "queued" and retried["reason"].startswith("retried on request")

    code, _, err = run(capsys, "status", "not-a-copy-id!")
    assert code == 2 and "400 Invalid copy id" in err


def test_a_wrong_or_missing_key_is_a_401_and_exit_2(api: str, capsys: pytest.CaptureFixture[str]):
    code, out, err = run(capsys, "--key", "wrong-key", "chains")
    assert code == 2 and out == "" and "401 Unauthorized: the function key was refused" in err
    assert "wrong-key" not in err
    code, _, err = run(capsys, "chains", "--key", "")
    assert code == 2 and "no function key" in err


def test_usage_errors_exit_2(api: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    assert run(capsys, "status", "some-id", "--state", "failed")[0] == 2
    assert run(capsys, "copy")[0] == 2  # argparse: the snapshot id is missing
    assert run(capsys, "status", "--interval", "0")[0] == 2
    monkeypatch.delenv("SNAPCOPY_URL")
    code, _, err = run(capsys, "chains")
    assert code == 2 and "SNAPCOPY_URL" in err


def test_options_given_before_the_command_are_kept(api: str, capsys: pytest.CaptureFixture[str], monkeypatch):
    monkeypatch.setenv("SNAPCOPY_URL", "http://127.0.0.1:9")  # nothing listens there
    assert run_json(capsys, "--url", api, "chains") == {"value": []}
    assert run_json(capsys, "chains", "--url", api + "/api/") == {"value": []}


# --- the gateway --------------------------------------------------------------------------


def test_gateway_answers_404_for_unknown_routes_and_405_for_wrong_methods(api: str):
    headers = {"x-functions-key": KEY}
    assert requests.get(f"{api}/api/nothing", headers=headers, timeout=10).status_code == 404
    assert requests.get(f"{api}/chains", headers=headers, timeout=10).status_code == 404  # no /api prefix
    assert requests.get(f"{api}/api/copies/a/b", headers=headers, timeout=10).status_code == 404
    wrong = requests.put(f"{api}/api/copies", headers=headers, timeout=10)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, POST"


def test_gateway_wants_a_function_key_in_the_header_or_the_code_parameter(api: str):
    assert requests.get(f"{api}/api/chains", timeout=10).status_code == 401
    assert requests.get(f"{api}/api/chains", headers={"x-functions-key": "nope"}, timeout=10).status_code == 401
    assert requests.get(f"{api}/api/chains", params={"code": KEY}, timeout=10).json() == {"value": []}
    assert requests.get(f"{api}/api/copies", params={"code": KEY}, timeout=10).json() == {"value": []}


def test_gateway_passes_route_parameters_bodies_and_answers_through(deployment: Deployment, api: str):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    headers = {"x-functions-key": KEY}
    posted = requests.post(f"{api}/api/copies", json={"sourceSnapshotId": snap}, headers=headers, timeout=30)
    assert posted.status_code == 202 and posted.headers["Content-Type"] == "application/json"
    (copy,) = posted.json()["copies"]
    assert posted.headers["Location"] == f"/api/copies/{copy['copyId']}"

    got = requests.get(api + posted.headers["Location"], headers=headers, timeout=10)
    assert got.status_code == 200 and got.json()["copyId"] == copy["copyId"]
    refused = requests.post(f"{api}/api/copies/{copy['copyId']}/retry", headers=headers, timeout=10)
    assert refused.status_code == 409 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["detail"].endswith("this one is copying")


def test_policies_and_evaluate_show_what_the_policies_make_of_a_snapshot(
    deployment: Deployment, api: str, capsys: pytest.CaptureFixture[str]
):
    (policy,) = run_json(capsys, "policies")["value"]
    assert policy["implicit"] and policy["targets"][0]["region"] == "westus3"
    code, out, _ = run(capsys, "policies")
    assert code == 0 and "default (implicit)" in out and "westus3" in out
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    evaluated = run_json(capsys, "evaluate", snap)
    assert evaluated["copied"] and evaluated["copies"][0]["targetRegion"] == "westus3"
    code, out, _ = run(capsys, "evaluate", snap)
    assert code == 0 and "copy as vm0-data0-s0-westus3" in out
    code, _, err = run(capsys, "evaluate", snap.replace("-s0", "-gone"))
    assert code == 2 and "422" in err
