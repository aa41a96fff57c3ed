"""On-demand copies, backfill, retry, cancel and listing, called as the host calls HTTP functions."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.api import parse_copy_id
from shared.ids import Scope
from shared.model import CopyOrder
from shared.problems import MAX_BODY_BYTES
from tests.builders import SUB
from tests.conftest import Deployment
from tests.test_functions import RG, copies, disk_with_snapshots, jobs, run_until_done

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

REGIONS = ("westus3", "centralus")


@pytest.fixture
def app_settings(app_settings: dict[str, str]) -> dict[str, str]:
    return {**app_settings, "COPY_TARGET_REGIONS": ",".join(REGIONS)}


def call(
    deployment: Deployment,
    function: str,
    method: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    copy: str | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], Any]:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    response = deployment.host.call_http(
        function,
        method,
        "https://snapcopy.example/api/copies",
        body=data,
        route_params={"copyId": copy} if copy is not None else None,
        params=params,
        headers={"content-type": "application/json"},
    )
    headers = dict(response.headers)
    headers["content-type"] = response.mimetype
    return response.status_code, headers, json.loads(response.get_body())


def post(deployment: Deployment, body: Any = None, *, raw: bytes | None = None) -> tuple[int, dict[str, Any], Any]:
    return call(deployment, "request_copies", "POST", body=body, raw=raw)


def disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/disks/{name}"


def world_state(deployment: Deployment) -> tuple[str, int]:
    """Everything a request could have written: every table row, and ARM's PUT count."""
    rows = sorted(json.dumps(row, sort_keys=True, default=str) for row in deployment.rows(""))
    return "\n".join(rows), deployment.requests("PUT snapshot")


# --- one snapshot -----------------------------------------------------------------------------


def test_a_requested_copy_starts_at_once_and_a_repeat_creates_nothing(deployment: Deployment):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.drain_events()  # the event never came: the request is all snapcopy hears
    status, headers, body = post(deployment, {"sourceSnapshotId": snap, "targetRegions": ["westus3"]})
    assert status == 202
    (copy,) = body["copies"]
    assert copy["created"] is True and copy["state"] == "copying" and copy["targetRegion"] == "westus3"
    assert headers["Location"] == f"/api/copies/{copy['copyId']}"
    assert body["ignored"] == []
    rows, puts = len(jobs(deployment)), deployment.requests("PUT snapshot")
    status, _, again = post(deployment, {"sourceSnapshotId": snap.lower(), "targetRegions": ["WestUS3"]})
    assert status == 202 and [c["created"] for c in again["copies"]] == [False]
    assert again["copies"][0]["copyId"] == copy["copyId"]
    assert len(jobs(deployment)) == rows and deployment.requests("PUT snapshot") == puts
    run_until_done(deployment)
    status, _, done = call(deployment, "get_copy", "GET", copy=copy["copyId"])
    assert status == 200 and done["state"] == "succeeded"
    status, _, after = post(deployment, {"sourceSnapshotId": snap, "targetRegions": ["westus3"]})
    assert status == 200 and after["copies"][0]["state"] == "succeeded"  # nothing left to do


def test_without_target_regions_every_configured_region_is_copied(deployment: Deployment):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    status, _, body = post(deployment, {"sourceSnapshotId": snap})
    assert status == 202
    assert sorted(c["targetRegion"] for c in body["copies"]) == sorted(REGIONS)
    assert sorted(c["region"] for c in copies(deployment)) == sorted(REGIONS)


def test_a_requested_copy_keeps_the_copy_order_of_its_chain(deployment: Deployment):
    """Asking for the newest snapshot first does not let it jump its older siblings."""
    snaps = disk_with_snapshots(deployment, "vm0-data0", 3)
    deployment.drain_events()
    assert post(deployment, {"sourceSnapshotId": snaps[2], "targetRegions": ["westus3"]})[0] == 202
    run_until_done(deployment)
    started = [c["source_id"].lower() for c in copies(deployment)]
    assert started == [snap.lower() for snap in snaps]  # the listing found the older two and copied them first
    assert deployment.refusals() == {}


# --- backfill ---------------------------------------------------------------------------------


def test_backfill_copies_every_existing_snapshot_in_order_through_the_timer(deployment: Deployment):
    snaps = disk_with_snapshots(deployment, "vm1-data0", 5)
    deployment.fleet.take_snapshot(disk_id("vm1-data0"), "vm1-data0-full", "eastus2", incremental=False)
    other = disk_with_snapshots(deployment, "vm2-data0", 2)  # another disk: not part of the backfill
    deployment.drain_events()
    status, headers, body = post(deployment, {"sourceDiskId": disk_id("vm1-data0"), "targetRegions": ["westus3"]})
    assert status == 202
    assert headers["Location"].startswith("/api/copies?sourceDiskId=")
    assert [c["sourceSnapshotId"].lower() for c in body["copies"]] == [s.lower() for s in snaps]
    assert all(c["created"] for c in body["copies"])
    assert [c["state"] for c in body["copies"]] == ["copying"] + ["queued"] * 4
    (ignored,) = body["ignored"]
    assert ignored["sourceSnapshotId"].endswith("vm1-data0-full") and "not incremental" in ignored["reason"]

    run_until_done(deployment)
    started = [c["source_id"].lower() for c in copies(deployment)]
    assert started == [s.lower() for s in snaps]
    assert all(c["state"] == "succeeded" for c in copies(deployment))
    assert not {o.lower() for o in other} & set(started)
    assert deployment.refusals() == {}

    before = world_state(deployment)
    status, _, again = post(deployment, {"sourceDiskId": disk_id("vm1-data0"), "targetRegions": ["westus3"]})
    assert status == 200 and not any(c["created"] for c in again["copies"])
    assert {c["state"] for c in again["copies"]} == {"succeeded"}
    assert len(jobs(deployment)) == 5 and deployment.requests("PUT snapshot") == before[1]


def test_backfill_finds_snapshots_kept_in_other_resource_groups_and_of_deleted_disks(deployment: Deployment):
    disk = deployment.fleet.create_disk(RG, "vm3-data0", "eastus2")
    kept = deployment.fleet.take_snapshot(disk, "vm3-data0-s0", "eastus2", resource_group="backup-rg")
    deployment.fleet.client.disks.begin_delete(RG, "vm3-data0").result()
    status, _, body = post(deployment, {"sourceDiskId": disk, "targetRegions": ["westus3"]})
    assert status == 202
    assert [c["sourceSnapshotId"].lower() for c in body["copies"]] == [kept.lower()]


# --- bad requests: a precise problem, and nothing written ---------------------------------------


def _bad_requests(deployment: Deployment) -> list[tuple[Any, int, str]]:
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    full = deployment.fleet.take_snapshot(disk_id("vm0-data0"), "vm0-full", "eastus2", incremental=False)
    local = disk_with_snapshots(deployment, "vm9-data0", 1, location="westus3")[0]
    deployment.fleet.create_disk(RG, "empty-disk", "eastus2")
    deployment.drain_events()
    missing = snap.replace("vm0-data0-s0", "nothing-here")
    return [
        (b"{not json", 400, "not JSON"),
        (b"", 400, "empty"),
        (b"\xff\xfe\x00", 400, "not"),
        (b"[1, 2]", 400, "JSON object"),
        (b"[" * 5000 + b"]" * 5000, 400, ""),
        (b'{"sourceSnapshotId": "' + b"a" * MAX_BODY_BYTES + b'"}', 413, "at most"),
        ({"sourceSnapshotId": snap, "extra": 1}, 400, "unknown field"),
        ({}, 400, "exactly one"),
        ({"sourceSnapshotId": snap, "sourceDiskId": disk_id("vm0-data0")}, 400, "exactly one"),
        ({"sourceSnapshotId": 42}, 400, "must be a string"),
        ({"sourceSnapshotId": "vm0-data0-s0"}, 400, "sourceSnapshotId"),
        ({"sourceSnapshotId": disk_id("vm0-data0")}, 400, "not a snapshot id"),
        ({"sourceDiskId": snap}, 400, "not a disk id"),
        ({"sourceSnapshotId": snap, "targetRegions": "westus3"}, 400, "array"),
        ({"sourceSnapshotId": snap, "targetRegions": []}, 400, "non-empty"),
        ({"sourceSnapshotId": snap, "targetRegions": ["west us 3!"]}, 400, "not an Azure region"),
        ({"sourceSnapshotId": snap, "targetRegions": ["eastasia"]}, 422, "not in COPY_TARGET_REGIONS"),
        ({"sourceSnapshotId": missing}, 422, "ARM has no snapshot"),
        ({"sourceSnapshotId": full}, 422, "not incremental"),
        ({"sourceSnapshotId": local, "targetRegions": ["westus3"]}, 422, "already in every target region (westus3)"),
        ({"sourceDiskId": disk_id("no-such-disk")}, 422, "ARM has no disk"),
        ({"sourceDiskId": disk_id("empty-disk")}, 422, "no snapshots"),
    ]


def test_bad_requests_get_a_precise_problem_and_write_nothing(deployment: Deployment):
    for request, status, words in _bad_requests(deployment):
        before = world_state(deployment)
        raw = request if isinstance(request, bytes) else None
        got, headers, body = post(deployment, None if raw is not None else request, raw=raw)
        assert (got, headers["content-type"]) == (status, "application/problem+json"), (request, body)
        assert body["status"] == status and words in body["detail"], (request, body)
        assert "Traceback" not in body["detail"] and "AccountKey" not in json.dumps(body)
        assert world_state(deployment) == before, request


def test_a_source_outside_the_scopes_is_refused_before_arm_is_asked(deployment: Deployment):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    settings_ = deployment.replicator.settings
    deployment.replicator.settings = replace(
        settings_, source_scopes=(Scope.parse(f"/subscriptions/{SUB}/resourceGroups/other"),)
    )
    gets = deployment.requests("GET snapshot")
    status, _, body = post(deployment, {"sourceSnapshotId": snap})
    assert status == 422 and "outside COPY_SOURCE_SCOPES" in body["detail"]
    assert deployment.requests("GET snapshot") == gets and jobs(deployment) == []


def test_arm_trouble_is_a_5xx_that_says_nothing_was_recorded(deployment: Deployment):
    from local.emulator.faults import Fault

    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=503, count=10))
    status, headers, body = post(deployment, {"sourceSnapshotId": snap})
    assert status == 503 and headers["Retry-After"] == "30" and "nothing was recorded" in body["detail"]
    deployment.world.clear_faults()
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=403, error_code="AuthorizationFailed"))
    status, _, body = post(deployment, {"sourceSnapshotId": snap})
    assert status == 502 and "AuthorizationFailed" in body["detail"]
    assert jobs(deployment) == []


# --- arbitrary input --------------------------------------------------------------------------

_KEYS = st.sampled_from(["sourceSnapshotId", "sourceDiskId", "targetRegions", "extra", ""]) | st.text(max_size=12)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
_JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_arbitrary_input_never_causes_a_5xx_or_a_write_on_a_4xx(deployment: Deployment, data: st.DataObject):
    snap = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/snapshots/fuzz-data0-s0"
    ids = st.sampled_from(
        [snap, snap.upper(), snap.replace("fuzz", "gone"), disk_id("fuzz-data0"), disk_id("none"), "", " ", "/"]
    )
    regions = st.lists(st.sampled_from([*REGIONS, "eastus2", "EastUS", "x", "", "westus3 "]) | st.text(max_size=6))
    named_regions = st.lists(st.sampled_from([*REGIONS, "eastus2", "eastasia", "WestUS3"]), min_size=1, max_size=3)
    plausible = st.builds(
        lambda field, source, regions: {field: source, **regions},
        st.sampled_from(["sourceSnapshotId", "sourceDiskId"]),
        _weighted((ids, 3), (_SCALARS, 1)),
        _weighted((st.just(None), 2), (named_regions, 3), (regions, 1)).map(
            lambda r: {} if r is None else {"targetRegions": r}
        ),
    )
    shape = data.draw(st.sampled_from(["bytes", "json", "plausible", "plausible", "plausible", "plausible", "extra"]))
    if shape == "bytes":
        body = data.draw(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
    elif shape == "json":
        body = json.dumps(data.draw(_JSON)).encode()
    else:
        value = data.draw(plausible)
        if shape == "extra":
            value.update(data.draw(st.dictionaries(_KEYS, _JSON, max_size=2)))
        body = json.dumps(value).encode()
    _ensure_fuzz_disk(deployment)
    before = world_state(deployment)
    status, headers, answer = post(deployment, raw=body)
    event(f"status {status} ({shape})")
    assert status < 500, answer
    if status >= 400:
        assert headers["content-type"] == "application/problem+json" and answer["detail"]
        assert world_state(deployment) == before


def _weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """One of several strategies, each drawn about `weight` times as often (`|` would
    flatten nested unions and dilute the plausible choices)."""
    pool = [strategy for strategy, weight in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def _ensure_fuzz_disk(deployment: Deployment) -> None:
    """Hypothesis reuses the fixture across examples: make the fuzz disk exist once."""
    names = {disk.name for disk in deployment.fleet.client.disks.list_by_resource_group(RG)}
    if "fuzz-data0" not in names:
        disk_with_snapshots(deployment, "fuzz-data0", 1)
        deployment.drain_events()


# --- listing ----------------------------------------------------------------------------------


def test_copies_are_listed_by_disk_region_and_state_a_page_at_a_time(deployment: Deployment):
    a = disk_with_snapshots(deployment, "vm0-data0", 3)
    b = disk_with_snapshots(deployment, "vm1-data0", 2)
    deployment.drain_events()
    for disk in ("vm0-data0", "vm1-data0"):
        assert post(deployment, {"sourceDiskId": disk_id(disk)})[0] == 202

    def listing(**params: str) -> list[dict[str, Any]]:
        found, pages, query = [], 0, dict(params)
        while True:
            status, _, body = call(deployment, "list_copies", "GET", params=query)
            assert status == 200, body
            found.extend(body["value"])
            pages += 1
            if "continuationToken" not in body:
                return found
            assert body["nextLink"].startswith("/api/copies?") and "continuationToken=" in body["nextLink"]
            query = {**params, "continuationToken": body["continuationToken"]}

    everything = listing()
    assert len(everything) == 10 and len({c["copyId"] for c in everything}) == 10
    assert [c["copyId"] for c in listing(top="3")] == [c["copyId"] for c in everything]
    mine = listing(sourceDiskId=disk_id("VM0-DATA0").lower(), targetRegion="centralus", top="2")
    assert [c["sourceSnapshotId"].lower() for c in mine] == [s.lower() for s in a]
    assert {c["targetRegion"] for c in mine} == {"centralus"}
    copying = listing(state="copying")
    assert len(copying) == 4 and all(0 <= c["percent"] <= 100 for c in copying)  # 2 disks x 2 regions
    assert {c["sourceSnapshotId"].lower() for c in copying} == {a[0].lower(), b[0].lower()}
    assert listing(state="failed") == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"state": "done"}, "not one of"),
        ({"top": "0"}, "from 1 to"),
        ({"top": "1001"}, "from 1 to"),
        ({"top": "ten"}, "from 1 to"),
        ({"top": "²"}, "from 1 to"),
        ({"sourceDiskId": "' or 1 eq 1 or '"}, "sourceDiskId"),
        ({"targetRegion": "West US"}, "not an Azure region"),
        ({"continuationToken": "garbage!"}, "continuationToken"),
        ({"continuationToken": "eyJmIjogMX0"}, "continuationToken"),
        ({"filter": "x"}, "unknown query parameter"),
    ],
)
def test_bad_list_parameters_are_a_400_problem(deployment: Deployment, params: dict[str, str], words: str):
    status, headers, body = call(deployment, "list_copies", "GET", params=params)
    assert status == 400 and headers["content-type"] == "application/problem+json" and words in body["detail"]


def test_the_function_key_in_the_query_string_is_not_an_unknown_parameter(deployment: Deployment):
    status, _, body = call(deployment, "list_copies", "GET", params={"code": "secret-key"})
    assert status == 200 and "secret-key" not in json.dumps(body)


# --- cancel and retry -------------------------------------------------------------------------


def _backfill(deployment: Deployment, disk: str, count: int) -> list[dict[str, Any]]:
    disk_with_snapshots(deployment, disk, count)
    deployment.drain_events()
    status, _, body = post(deployment, {"sourceDiskId": disk_id(disk), "targetRegions": ["westus3"]})
    assert status == 202
    return list(body["copies"])


def test_a_queued_copy_is_cancelled_and_the_chain_moves_on(deployment: Deployment):
    first, second, third = _backfill(deployment, "vm0-data0", 3)
    status, _, cancelled = call(deployment, "cancel_copy", "DELETE", copy=second["copyId"])
    assert status == 200 and cancelled["state"] == "cancelled" and cancelled["reason"] == "cancelled on request"
    assert call(deployment, "cancel_copy", "DELETE", copy=second["copyId"])[0] == 200  # idempotent
    status, _, body = call(deployment, "cancel_copy", "DELETE", copy=first["copyId"])
    assert status == 409 and "cannot stop" in body["detail"]
    run_until_done(deployment)
    started = [c["source_id"].lower() for c in copies(deployment)]
    assert started == [first["sourceSnapshotId"].lower(), third["sourceSnapshotId"].lower()]
    status, _, body = call(deployment, "retry_copy", "POST", copy=second["copyId"])
    assert status == 409 and "newer snapshot" in body["detail"] and "creation order" in body["detail"]
    status, _, body = call(deployment, "cancel_copy", "DELETE", copy=third["copyId"])
    assert status == 409 and "already ended (succeeded)" in body["detail"]


def test_a_cancelled_copy_can_be_retried_while_nothing_newer_started(deployment: Deployment):
    _, second = _backfill(deployment, "vm0-data0", 2)
    assert call(deployment, "cancel_copy", "DELETE", copy=second["copyId"])[2]["state"] == "cancelled"
    status, headers, retried = call(deployment, "retry_copy", "POST", copy=second["copyId"])
    assert status == 202 and retried["state"] == "queued" and "was cancelled" in retried["reason"]
    assert headers["Location"] == f"/api/copies/{second['copyId']}"
    run_until_done(deployment)
    assert [c["state"] for c in copies(deployment)] == ["succeeded", "succeeded"]


def test_a_failed_copy_is_retried_after_its_failed_target_is_removed(deployment: Deployment):
    (only,) = _backfill(deployment, "vm0-data0", 1)
    deployment.world.fail_copy(only["targetSnapshotId"], "CopySourceUnavailable", "the source went away")
    deployment.tick(advance=30)
    status, _, failed = call(deployment, "get_copy", "GET", copy=only["copyId"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "CopySourceUnavailable"
    status, _, retried = call(deployment, "retry_copy", "POST", copy=only["copyId"])
    assert status == 202 and retried["state"] == "copying" and retried["attempts"] == 0 and retried["error"] is None
    run_until_done(deployment)
    assert call(deployment, "get_copy", "GET", copy=only["copyId"])[2]["state"] == "succeeded"
    assert [c["state"] for c in copies(deployment)] == ["failed", "succeeded"]
    status, _, body = call(deployment, "retry_copy", "POST", copy=only["copyId"])
    assert status == 409 and "already succeeded" in body["detail"]


def test_retry_and_cancel_of_unknown_or_malformed_copies(deployment: Deployment):
    for function, method in (("retry_copy", "POST"), ("cancel_copy", "DELETE"), ("get_copy", "GET")):
        assert call(deployment, function, method, copy="not a copy id")[0] == 400
        unknown = (
            "M2MyYjFhMDktOGY3ZS00ZDZjLWI1YTQtOTM4MjcxNjA1ZjRlfHdlc3R1czN8MjAyNjExMjBUMDMwMDAyLjEyMzQ1Nlp8bm90aGluZw"
        )
        status, headers, _ = call(deployment, function, method, copy=unknown)
        assert status == 404 and headers["content-type"] == "application/problem+json"


def test_a_cancel_saved_after_the_timer_chose_the_copy_still_wins(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    """The timer re-reads the job after reserving its slot: a cancel that landed after the
    plan but before that re-read stops the copy, and the 200 it answered is true."""
    _, second = _backfill(deployment, "vm0-data0", 2)
    _, key = parse_copy_id(second["copyId"])
    reserve = deployment.store.reserve_slot
    answers: list[tuple[int, str]] = []

    def cancel_lands_first(load: Any, flight: Any, cap: int) -> Any:
        if flight.job_key == key and not answers:
            status, _, body = call(deployment, "cancel_copy", "DELETE", copy=second["copyId"])
            answers.append((status, body.get("state", body.get("detail"))))
        return reserve(load, flight, cap)

    monkeypatch.setattr(deployment.store, "reserve_slot", cancel_lands_first)
    run_until_done(deployment)
    assert answers == [(200, "cancelled")]
    assert [c["state"] for c in copies(deployment)] == ["succeeded"]  # the second never went to ARM
    assert call(deployment, "get_copy", "GET", copy=second["copyId"])[2]["state"] == "cancelled"
    assert deployment.store.load_region(deployment.store.list_regions()[0]).in_flight_count == 0


def test_a_cancel_that_lands_while_the_put_is_sent_says_it_may_have_lost(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    """Once the slot is reserved and the job re-read, the PUT goes out: a cancel then
    answers 409 (not a false 200) and writes nothing; the copy runs."""
    _, second = _backfill(deployment, "vm0-data0", 2)
    start_copy = deployment.replicator.arm.start_copy
    answers: list[tuple[int, str]] = []

    def cancel_during_put(order: CopyOrder) -> Any:
        if str(order.source_id).lower() == second["sourceSnapshotId"].lower() and not answers:
            status, _, body = call(deployment, "cancel_copy", "DELETE", copy=second["copyId"])
            answers.append((status, body["detail"]))
        return start_copy(order)

    monkeypatch.setattr(deployment.replicator.arm, "start_copy", cancel_during_put)
    for _ in range(10):
        deployment.tick(advance=30)
        if answers:
            break
    ((status, detail),) = answers
    assert status == 409 and "being sent to ARM right now" in detail
    view = call(deployment, "get_copy", "GET", copy=second["copyId"])[2]
    assert view["state"] == "copying" and view["reason"] is None
    run_until_done(deployment)
    assert [c["state"] for c in copies(deployment)] == ["succeeded", "succeeded"]
    assert call(deployment, "get_copy", "GET", copy=second["copyId"])[2]["state"] == "succeeded"


def test_two_retries_at_once_copy_once_and_never_delete_the_new_copy(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
):
    (only,) = _backfill(deployment, "vm0-data0", 1)
    deployment.world.fail_copy(only["targetSnapshotId"], "CopySourceUnavailable", "the source went away")
    deployment.tick(advance=30)
    delete = deployment.replicator.arm.delete_snapshot
    second: list[tuple[int, str]] = []

    def second_retry_meanwhile(target: Any) -> None:
        if not second:
            status, _, body = call(deployment, "retry_copy", "POST", copy=only["copyId"])
            second.append((status, body.get("detail", "")))
        delete(target)

    monkeypatch.setattr(deployment.replicator.arm, "delete_snapshot", second_retry_meanwhile)
    status, _, first = call(deployment, "retry_copy", "POST", copy=only["copyId"])
    assert status == 202 and first["state"] == "copying"
    ((status, detail),) = second
    assert status == 409 and "only failed or cancelled" in detail
    run_until_done(deployment)
    assert [c["state"] for c in copies(deployment)] == ["failed", "succeeded"]


def test_a_retry_of_a_copy_whose_source_is_gone_is_refused_and_keeps_the_failed_copy(deployment: Deployment):
    (only,) = _backfill(deployment, "vm0-data0", 1)
    deployment.world.fail_copy(only["targetSnapshotId"], "CopySourceUnavailable", "the source went away")
    deployment.tick(advance=30)
    deployment.fleet.delete_snapshot(only["sourceSnapshotId"])
    before = world_state(deployment)
    status, _, body = call(deployment, "retry_copy", "POST", copy=only["copyId"])
    assert status == 409 and "no longer exists" in body["detail"]
    assert world_state(deployment) == before
    assert deployment.fleet.client.snapshots.get(RG, only["targetSnapshotId"].split("/")[-1]) is not None


def test_an_unexpected_failure_is_a_bare_500_and_the_log_never_holds_the_key(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from shared.engine.operator import Operator

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("AccountKey=c2VjcmV0 leaked from somewhere")

    monkeypatch.setattr(Operator, "list_copies", broken)
    response = deployment.host.call_http(
        "list_copies", "GET", "https://snapcopy.example/api/copies?code=SECRET-KEY", params={"code": "SECRET-KEY"}
    )
    body = response.get_body().decode()
    assert response.status_code == 500 and "AccountKey" not in body and "Traceback" not in body
    assert "SECRET-KEY" not in caplog.text and "/api/copies" in caplog.text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["sourceDiskId", "targetRegion", "state", "top", "continuationToken", "x"]),
        st.text(max_size=30) | st.sampled_from(["²", "٣", "1\n", "westus3\n", "copying", "100", disk_id("a")]),
        max_size=4,
    ),
    copy_id_text=st.text(max_size=60) | st.sampled_from(["MXwy\n", "٣"]),
)
def test_arbitrary_query_and_copy_ids_never_cause_a_5xx(
    deployment: Deployment, params: dict[str, str], copy_id_text: str
):
    status, headers, _ = call(deployment, "list_copies", "GET", params=params)
    assert status in (200, 400), params
    for function, method in (("get_copy", "GET"), ("cancel_copy", "DELETE"), ("retry_copy", "POST")):
        status, headers, _ = call(deployment, function, method, copy=copy_id_text)
        assert status in (400, 404) and headers["content-type"] == "application/problem+json"


def test_by_default_a_snapshot_is_copied_to_the_configured_regions_it_is_not_in(deployment: Deployment):
    (snap,) = disk_with_snapshots(deployment, "vm5-data0", 1, location="westus3")
    status, _, body = post(deployment, {"sourceSnapshotId": snap})
    assert status == 202 and [c["targetRegion"] for c in body["copies"]] == ["centralus"]
    status, _, body = post(deployment, {"sourceSnapshotId": snap, "targetRegions": ["westus3", "centralus"]})
    assert status == 422 and "already in" in body["detail"]


def test_chains_show_the_rpo_by_source_time_and_flag_a_breach(deployment: Deployment):
    from datetime import timedelta

    snaps = disk_with_snapshots(deployment, "vm0-data0", 2)
    deployment.drain_events()
    post(deployment, {"sourceDiskId": disk_id("vm0-data0"), "targetRegions": ["westus3"]})
    taken = {s: deployment.fleet.client.snapshots.get(RG, s.rsplit("/", 1)[-1]).time_created for s in snaps}
    status, _, body = call(deployment, "list_chains", "GET")
    (chain,) = body["value"]
    now = deployment.world.clock.now()
    assert status == 200 and chain["rpoSeconds"] == (now - taken[snaps[0]]).total_seconds()  # the oldest waiting
    assert chain["rpoBreached"] is False
    run_until_done(deployment)
    (chain,) = call(deployment, "list_chains", "GET")[2]["value"]
    now = deployment.world.clock.now()
    assert chain["rpoSeconds"] == (now - taken[snaps[1]]).total_seconds()  # the newest copied
    assert chain["rpoBreached"] is False  # RPO_ALERT_MINUTES: 25 hours by default
    age = now - taken[snaps[1]]
    deployment.replicator.settings = replace(deployment.replicator.settings, rpo_alert=age - timedelta(seconds=1))
    (chain,) = call(deployment, "list_chains", "GET")[2]["value"]
    assert chain["rpoBreached"] is True


def test_status_sums_each_region_in_flight_waiting_done_failed_and_behind(deployment: Deployment):
    from datetime import timedelta

    from local.emulator.faults import Fault

    settings = deployment.replicator.settings
    deployment.replicator.settings = replace(settings, max_copies_per_region=1, rpo_alert=timedelta(minutes=5))
    for disk in ("vm0-data0", "vm1-data0"):
        disk_with_snapshots(deployment, disk, 1)
    (lone,) = disk_with_snapshots(deployment, "vm2-data0", 1)
    deployment.world.add_fault(Fault(method="PUT", kind="snapshot", status=404, error_code="ResourceGroupNotFound"))
    post(deployment, {"sourceSnapshotId": lone, "targetRegions": ["centralus"]})  # refused for good: failed
    deployment.world.clear_faults()
    deployment.drain_events()
    for disk in ("vm0-data0", "vm1-data0"):
        post(deployment, {"sourceDiskId": disk_id(disk), "targetRegions": ["westus3"]})
    deployment.advance(600)  # ten minutes behind: over the 5-minute threshold
    status, _, body = call(deployment, "get_status", "GET")
    assert status == 200 and body["rpoAlertMinutes"] == 5
    central, west = body["regions"]
    assert central["targetRegion"] == "centralus" and central["failedLast24h"] == 1 and central["inFlight"] == 0
    assert west["inFlight"] == 1 and west["queued"] == 1 and west["waitingForCap"] == 1  # the cap is 1
    assert west["waitingForSource"] == 0 and west["completedLast24h"] == 0
    assert len(west["chainsOverRpo"]) == 2 and west["worstRpoSeconds"] >= 600
