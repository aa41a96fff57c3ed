"""`make bench` stays runnable: one tiny run of the whole benchmark, checked for sense.

The benchmark's figures are its output, not assertions; this only proves that every part
runs end to end and that the figures it writes are consistent with each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from local.emulator.server import EmulatorServer
from local.emulator.world import World

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_a_tiny_benchmark_runs_end_to_end_and_reports_consistent_figures(tmp_path: Path):
    command = [
        sys.executable, "-m", "local.bench", "--quick", "--serial", "--no-docs", "--out", str(tmp_path),
        "--w1-disks", "12", "--cap", "5", "--w2-disks", "3", "--w2-snapshots", "4",
        "--history-small", "60", "--history-large", "600", "--in-flight", "5", "--rounds", "2", "--import-runs", "1",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((tmp_path / "latest-quick.json").read_text())
    assert (tmp_path / "latest-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(document["runs"]) == {"W1/snapcopy", "W1/naive", "W2/snapcopy", "W2/naive"}
    for name, run in document["runs"].items():
        assert run["copies_completed"] == run["copies_expected"] > 0, name
        assert run["refusals"] == {}, name  # neither system ever broke an Azure rule
        assert run["makespan_seconds"] >= run["lower_bound_seconds"], name  # a lower bound holds
        requests = run["arm_requests"]
        assert requests["PUT snapshot"] >= run["copies_completed"], name  # one CopyStart per copy at least
        assert run["table_operations"]["total"] > 0 and run["timeline"]["in_flight"], name
        assert max(run["timeline"]["in_flight"]) <= document["workloads"][name.split("/")[0]]["params"]["cap"]
    # the baseline reads every pending copy every minute: it must cost more ARM calls
    for workload in ("W1", "W2"):
        ours, naive = document["runs"][f"{workload}/snapcopy"], document["runs"][f"{workload}/naive"]
        assert naive["arm_requests"]["total"] > ours["arm_requests"]["total"]
    history = document["history"]
    assert history["history_rows"]["snapcopy/large"] > history["history_rows"]["snapcopy/small"]
    assert history["ratio_snapcopy"] > 0 and history["ratio_naive"] > 0
    assert 0 < document["import"]["median_seconds"] < 10
    names = {target["name"] for target in document["targets"]}
    assert any("makespan" in name for name in names) and any("cold import" in name for name in names)
    diff = document["diff"]  # W4: the diff copy method, byte for byte, nothing copied twice
    assert [run["workers"] for run in diff["runs"]] == [1, 2, 4]
    assert all(run["equal_to_source"] for run in diff["runs"])
    assert diff["read_per_changed"] == diff["written_per_changed"] == 1.0
    assert diff["access"]["most_at_once"] <= 2 and diff["access"]["refused"] == 0


def test_slot_refill_pairs_each_freed_slot_with_a_copy_that_was_waiting_for_one():
    """Three slots free within 2 s with two copies waiting: two refills, not three (the
    third has nothing to wait for; a copy taken much later is not its refill)."""
    from local.bench.metrics import CopyRecord, chain_handoffs, slot_refills

    records = [
        CopyRecord("a", 0, 0, 100, 100),
        CopyRecord("b", 0, 0, 101, 101),
        CopyRecord("c", 0, 0, 102, 102),
        CopyRecord("d", 0, 150, 400, 250),
        CopyRecord("e", 4990, 5000, 5100, 100),
        CopyRecord("a", 10, 130, 200, 70),  # a's successor: taken at 10 s, handed off 30 s after a's first
    ]
    assert slot_refills(records) == [30, 49]  # freed at 100 → a's next at 130; at 101 → d at 150
    assert chain_handoffs(records) == [30]


def test_the_baseline_starts_the_disk_with_the_oldest_waiting_snapshot_first(
    world: World, emulator: EmulatorServer, storage_connection_string: str
):
    """First come, first served whatever the (random) family ids: its makespan is the same
    in every run, so the comparison with snapcopy is too."""
    from local.bench.run import Naive, create_disk, drop_table, new_table, take_snapshot
    from local.chaos import Backend

    backend = Backend(world, emulator.url, str(emulator.ca_path), storage_connection_string)
    clock = backend.clock
    table = new_table("naiveorder")
    naive = Naive(backend, table, cap=1)
    taken = []
    for index in range(5):
        disk = create_disk(world, "rg-order", f"vm{index}-data", 1)
        taken.append(take_snapshot(world, disk, "rg-order", f"vm{index}-data-snap"))
        clock.advance(60)
    for event in world.events(drain=True):
        naive.deliver(event)
    for _ in range(12):
        naive.tick()
        clock.advance(61)
    started = sorted(world.ledger(), key=lambda copy: copy.started_at)
    assert [copy.source_id.lower() for copy in started] == [snapshot.lower() for snapshot in taken]
    drop_table(backend, table)


def test_history_seeded_by_the_javascript_sdk_reads_back_as_the_python_sdk_wrote_it(storage_connection_string: str):
    """W3 seeds its rows with Node: the product must read them exactly as its own writes."""
    import uuid
    from datetime import UTC, datetime

    from azure.data.tables import TableClient

    from local.bench.history import seed_table

    when = datetime(2026, 11, 25, 17, 5, 9, 123456, tzinfo=UTC)
    rows = [
        {"PartitionKey": "chain|a", "RowKey": f"job|{index:03d}", "State": "succeeded", "Percent": 100.0,
         "SizeBytes": float(2**40), "Attempts": index, "Ready": index % 2 == 0, "StartedAt": when,
         "NotBefore": None, "Reason": ""}
        for index in range(150)  # two transactions in one partition
    ] + [{"PartitionKey": "snap|rg", "RowKey": "s1", "Kind": "source", "RecordedAt": when}]  # fmt: skip
    by_python, by_node = (f"seed{kind}{uuid.uuid4().hex[:10]}" for kind in ("py", "js"))
    python = TableClient.from_connection_string(storage_connection_string, by_python)
    python.create_table()
    for row in rows:
        python.create_entity(row)
    assert seed_table(storage_connection_string, by_node, rows) == len(rows)
    node = TableClient.from_connection_string(storage_connection_string, by_node)
    try:

        def read(client: TableClient) -> dict[tuple[str, str], dict[str, tuple[object, type]]]:
            return {
                (entity["PartitionKey"], entity["RowKey"]): {k: (v, type(v)) for k, v in entity.items()}
                for entity in client.list_entities()
            }

        written, seeded = read(python), read(node)
        assert len(seeded) == len(rows)
        assert seeded == written  # the same values, of the same Python types
        assert seeded[("chain|a", "job|007")]["StartedAt"][0] == when
        assert seeded[("chain|a", "job|007")]["Attempts"] == (7, int)
    finally:
        python.delete_table()
        node.delete_table()
