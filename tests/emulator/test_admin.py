"""`/_admin/...`: steering the emulator's clock, copies, limits and state over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from local.emulator import REFUSALS, EmulatorServer, RealClock, World

from .conftest import RG, Arm, Http

pytestmark = pytest.mark.emulator

COPY_KEYS = {
    "source_id", "target_id", "family_id", "region", "subscription", "source_time_created", "started_at",
    "finished_at", "duration_seconds", "state", "percent", "error", "target_deleted",
}  # fmt: skip


def test_virtual_clock_is_read_and_advanced_over_http(http: Http) -> None:
    before = http.admin("GET", "clock")

    after = http.admin("POST", "clock", {"advance_seconds": 90})

    assert before["virtual"] is True
    elapsed = datetime.fromisoformat(after["now"]) - datetime.fromisoformat(before["now"])
    assert elapsed == timedelta(seconds=90)


def test_real_clock_cannot_be_advanced() -> None:
    with EmulatorServer(World(RealClock())) as emulator:
        http = Http.to(emulator)
        response = http.request("POST", "/_admin/clock", {"advance_seconds": 1}, token=None)

        assert http.admin("GET", "clock")["virtual"] is False
    assert response.status == 409
    assert response.body["error"]["code"] == "ClockNotVirtual"


def test_copies_report_ground_truth_as_time_passes(arm: Arm, http: Http) -> None:
    source = arm.snapshot(arm.disk(size_gb=60), "snap0")  # 60 s at 1 GiB/s
    arm.copy(source, "snap0-westus3")

    (copying,) = http.admin("GET", "copies")
    http.admin("POST", "clock", {"advance_seconds": 60})
    (done,) = http.admin("GET", "copies")

    assert set(copying) == COPY_KEYS
    assert (copying["state"], copying["percent"], copying["finished_at"]) == ("copying", 0.0, None)
    assert copying["source_id"] == source.id
    assert copying["region"] == "westus3"
    assert copying["duration_seconds"] == 60.0
    assert (done["state"], done["percent"]) == ("succeeded", 100.0)
    assert done["finished_at"] is not None


def test_failing_a_copy_freezes_it_and_frees_its_family_slot(arm: Arm, http: Http) -> None:
    disk = arm.disk(size_gb=100)
    first = arm.snapshot(disk, "snap0")
    http.admin("POST", "clock", {"advance_seconds": 1})
    second = arm.snapshot(disk, "snap1")
    arm.copy(first, "snap0-westus3")
    http.admin("POST", "clock", {"advance_seconds": 25})
    target_id = arm.get("snap0-westus3").id

    failed = http.admin(
        "POST",
        "copies/fail",
        {"target_id": target_id, "error_code": "InternalError", "error_message": "boom"},
    )
    again = http.request("POST", "/_admin/copies/fail", {"target_id": target_id}, token=None)
    http.admin("POST", "clock", {"advance_seconds": 500})
    target = arm.get("snap0-westus3")
    next_copy = arm.copy(second)

    assert failed["state"] == "failed"
    assert failed["error"] == {"errorCode": "InternalError", "errorMessage": "boom"}
    assert again.status == 409
    assert target.properties is not None and target.properties.completion_percent == 25.0
    assert target.properties.copy_completion_error is not None
    assert target.properties.copy_completion_error.error_code == "InternalError"
    assert next_copy.name == "snap1-westus3"


def test_counters_always_list_every_refusal(http: Http) -> None:
    counters = http.admin("GET", "counters")

    assert counters == {"requests": {}, "refusals": dict.fromkeys(REFUSALS, 0), "copies_started": 0}


def test_config_changes_limits_and_refuses_nonsense(http: Http, world: World) -> None:
    changed = http.admin(
        "POST", "config", {"cap": 5, "min_copy_seconds": 1, "list_lag_seconds": 30, "source_copy_seconds_factor": 2}
    )
    refused = [
        http.request("POST", "/_admin/config", change, token=None)
        for change in (
            {"cap": -1},
            {"list_lag_seconds": -1},
            {"source_copy_seconds_factor": -0.5},
            {"enhanced_copy_factor": 0.5},
            {"page_ranges_per_answer": 0},
        )
    ]

    assert changed == {
        "cap": 5,
        "copy_bytes_per_second": float(1024**3),
        "min_copy_seconds": 1.0,
        "page_size": 100,
        "page_ranges_per_answer": 10_000,
        "list_lag_seconds": 30.0,
        "source_copy_seconds_factor": 2.0,
        "enhanced_copy_factor": 2.0,
    }
    assert http.admin("GET", "config") == changed
    assert world.config.cap == 5
    assert world.config.list_lag_seconds == 30.0
    assert [response.status for response in refused] == [422, 422, 422, 422, 422]


def test_reset_forgets_everything(arm: Arm, http: Http) -> None:
    source = arm.snapshot(arm.disk(), "snap0")
    arm.copy(source)
    http.admin("POST", "config", {"cap": 1})
    http.admin("POST", "faults", {"status": 500, "kind": "disk"})

    http.admin("POST", "reset")

    assert list(arm.client.snapshots.list_by_resource_group(RG)) == []
    assert http.admin("GET", "copies") == []
    assert http.admin("GET", "events") == []
    assert http.admin("GET", "faults") == []
    assert http.admin("GET", "config")["cap"] == 100
    assert http.admin("GET", "counters")["requests"] == {"LIST snapshots": 1}
