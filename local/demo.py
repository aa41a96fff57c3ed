"""`make demo`: snapcopy replicating 3 disks x 4 incremental snapshots, eastus2 → westus3;
then policies at work (local/demo_policies.py); then one disk both ways, by CopyStart and
by the diff method, checked byte for byte (local/demo_diff.py).

Everything is real but Azure itself: Azurite holds the state, the ARM emulator (its own
process, real HTTPS) plays Compute, the unmodified SDKs talk to both, and the functions
are invoked as the Functions host invokes them. Events are delivered with a duplicate and
an out-of-order pair thrown in. The demo checks its own result against the emulator's
ground truth and exits non-zero if any snapshot was not copied exactly once, in order.
Every transition is published as a CloudEvent to a local Event Grid topic; the demo
prints what arrived and checks that each copy announced its start and its end once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from local import demo_diff, demo_policies
from local.azurite import Azurite
from local.fleet import Fleet
from local.host import FunctionHost
from local.tables import TableRows
from local.topic import TopicServer, distinct_by_copy

TABLE_NAME = "snapcopydemo"
SUBSCRIPTION = "6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d"
RESOURCE_GROUP = "demo-rg"
SOURCE_REGION = "eastus2"
TARGET_REGION = "westus3"
DISKS = 3
SNAPSHOTS_PER_DISK = 4
GIB = 1024**3

console = Console(width=None if sys.stdout.isatty() else 110)


@dataclass
class Emulator:
    url: str
    ca_path: str
    process: subprocess.Popen[str]

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.url}/_admin/{path}", verify=self.ca_path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@contextmanager
def emulator_process(copy_seconds: float) -> Iterator[Emulator]:
    """The ARM emulator in its own process; copies of a 128 GiB disk take `copy_seconds`."""
    command = [
        sys.executable, "-m", "local.emulator",
        "--copy-bytes-per-second", str(128 * GIB / copy_seconds),
        "--min-copy-seconds", str(copy_seconds / 2),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the ARM emulator did not start")
        ready = json.loads(line)
        emulator = Emulator(ready["url"], ready["ca_path"], process)
        yield emulator
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def configure_app(connection_string: str, emulator: Emulator, topic: TopicServer) -> None:
    """App settings, exactly as they would be set on the function app."""
    os.environ.update(
        {
            "NOTIFY_TOPIC_ENDPOINT": topic.endpoint,
            "NOTIFY_CA_BUNDLE": str(topic.ca_path),
            "COPY_TARGET_REGIONS": TARGET_REGION,
            "STATE_CONNECTION_STRING": connection_string,
            "STATE_TABLE_NAME": TABLE_NAME,
            "ARM_ENDPOINT": emulator.url,
            "ARM_CA_BUNDLE": emulator.ca_path,
            "POLL_SCHEDULE": "*/1 * * * * *",
        }
    )


def take_snapshots(fleet: Fleet) -> list[tuple[str, list[str]]]:
    """3 disks, then 4 rounds of snapshots of each in quick succession."""
    disks = [fleet.create_disk(RESOURCE_GROUP, f"vm{i}-data0", SOURCE_REGION) for i in range(DISKS)]
    chains: dict[str, list[str]] = {disk: [] for disk in disks}
    for round_ in range(SNAPSHOTS_PER_DISK):
        for index, disk in enumerate(disks):
            name = f"vm{index}-data0-snap{round_}"
            chains[disk].append(fleet.take_snapshot(disk, name, SOURCE_REGION))
    return list(chains.items())


def delivery_order(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Event Grid's habits: one duplicate, one pair out of order."""
    ordered = list(events)
    if len(ordered) >= 3:
        i = rng.randrange(1, len(ordered) - 1)
        ordered[i - 1], ordered[i] = ordered[i], ordered[i - 1]
        ordered.insert(rng.randrange(len(ordered)), dict(ordered[rng.randrange(len(ordered))]))
    return ordered


def chain_progress(store_rows: list[dict[str, Any]], flights: list[dict[str, Any]]) -> dict[str, float]:
    """Percent done per source disk, from the state table."""
    live = {row["SourceId"].lower(): float(row.get("Percent", 0.0)) for row in flights if "SourceId" in row}
    done: dict[str, float] = defaultdict(float)
    for row in store_rows:
        if not row["RowKey"].startswith("job|"):
            continue
        disk = row["SourceId"].rsplit("-snap", 1)[0].lower()
        if row["State"] in ("succeeded", "failed", "skipped"):
            done[disk] += 100.0
        elif row["State"] == "copying":
            done[disk] += live.get(row["SourceId"].lower(), 0.0)
    return done


def verify(chains: list[tuple[str, list[str]]], copies: list[dict[str, Any]], counters: dict[str, Any]) -> list[str]:
    """Problems found in the emulator's ground truth (empty: all good)."""
    problems = []
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for copy in copies:
        by_source[copy["source_id"].lower()].append(copy)
    for disk, snapshots in chains:
        started = []
        for snapshot in snapshots:
            made = by_source.get(snapshot.lower(), [])
            if len(made) != 1:
                problems.append(f"{snapshot}: copied {len(made)} times")
            elif made[0]["state"] != "succeeded":
                problems.append(f"{snapshot}: copy {made[0]['state']}")
            else:
                started.append(made[0]["started_at"])
        if started != sorted(started):
            problems.append(f"{disk}: copies did not start in creation order")
    refusals = {name: count for name, count in counters.get("refusals", {}).items() if count}
    if refusals:
        problems.append(f"the emulator refused copies for rule violations: {refusals}")
    return problems


def notifications_table(events: list[dict[str, Any]]) -> Table:
    """What the local Event Grid topic received: how many of each type, and an example."""
    table = Table(title="notifications received by the local Event Grid topic (CloudEvents 1.0)")
    for label in ("type", "count", "example subject", "example data"):
        table.add_column(label, overflow="fold")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    for kind, group in by_type.items():
        data = group[-1]["data"]
        shown = {
            k: data[k] for k in ("targetRegion", "state", "completionPercent", "reason") if data.get(k) is not None
        }
        table.add_row(kind, str(len({e["id"] for e in group})), group[-1]["subject"].rsplit("/", 1)[-1], str(shown))
    return table


def notice_problems(events: list[dict[str, Any]], copies: int) -> list[str]:
    """Each copy announced its start and its end once (by distinct id)."""
    kinds = distinct_by_copy(events)
    expected = {"Snapcopy.CopyStarted": 1, "Snapcopy.CopyCompleted": 1}
    wrong = [copy for copy, found in kinds.items() if found != expected]
    problems = [f"{len(wrong)} copies without exactly one start and one end notice"] if wrong else []
    if len(kinds) != copies:
        problems.append(f"notices for {len(kinds)} copies, {copies} expected")
    return problems


def summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"snapcopy: {SOURCE_REGION} → {TARGET_REGION}")
    for column in ("source snapshot", "target snapshot", "started", "finished", "state"):
        table.add_column(column)

    def clock(value: Any) -> str:
        return value.strftime("%H:%M:%S.%f")[:-3] if isinstance(value, datetime) else "-"

    for row in sorted((r for r in rows if r["RowKey"].startswith("job|")), key=lambda r: r["SourceId"]):
        style = {"succeeded": "green", "failed": "red", "skipped": "yellow"}.get(row["State"], "")
        table.add_row(
            row["SourceId"].rsplit("/", 1)[-1],
            row["TargetId"].rsplit("/", 1)[-1],
            clock(row.get("StartedAt")),
            clock(row.get("FinishedAt")),
            f"[{style}]{row['State']}[/{style}]" if style else row["State"],
        )
    return table


def run(timeout: float, copy_seconds: float, seed: int) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("snapcopy").setLevel(logging.WARNING)
    rng = random.Random(seed)
    began = time.monotonic()
    console.print("[bold]snapcopy demo[/bold]: starting Azurite and the ARM emulator…")
    topic = TopicServer()
    with Azurite.start() as azurite, emulator_process(copy_seconds) as emulator, _running(topic):
        configure_app(azurite.connection_string, emulator, topic)
        host = FunctionHost()
        from local.emulator.credential import EmulatorCredential
        from shared import runtime
        from shared.config import load_settings

        # the app as deployed, but for its identity: the emulator's token, handed in
        runtime.install(runtime.build(load_settings(os.environ), credential=EmulatorCredential()))
        table = TableRows.from_connection_string(azurite.connection_string, TABLE_NAME)
        fleet = Fleet(emulator.url, emulator.ca_path, SUBSCRIPTION)
        chains = take_snapshots(fleet)
        console.print(f"took {DISKS * SNAPSHOTS_PER_DISK} incremental snapshots of {DISKS} disks in {SOURCE_REGION}")

        events = emulator.admin("GET", "events", params={"drain": "true"})
        deliveries = delivery_order(events, rng)
        for event in deliveries:
            host.deliver_event(event)
        console.print(f"delivered {len(deliveries)} events ({len(deliveries) - len(events)} duplicate, 1 pair swapped)")

        total = len(chains) * SNAPSHOTS_PER_DISK
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            tasks = {
                disk.lower(): progress.add_task(disk.rsplit("/", 1)[-1], total=100.0 * SNAPSHOTS_PER_DISK)
                for disk, _ in chains
            }
            finished = 0
            while time.monotonic() - began < timeout:
                host.run_timer()
                for event in emulator.admin("GET", "events", params={"drain": "true"}):
                    host.deliver_event(event)  # our own copies' write events: the loop guard drops them
                rows = table.rows("chain|")
                done = chain_progress(rows, table.rows("region|"))
                for disk, task in tasks.items():
                    snapshot_disk = next((key for key in done if key.endswith(disk.rsplit("/", 1)[-1])), None)
                    progress.update(task, completed=done.get(snapshot_disk or "", 0.0))
                finished = sum(
                    1
                    for r in rows
                    if r["RowKey"].startswith("job|") and r["State"] != "copying" and r["State"] != "queued"
                )
                if finished >= total:
                    break
                time.sleep(1.0)
        rows = table.rows("chain|")
        console.print(summary_table(rows))
        problems = verify(chains, emulator.admin("GET", "copies"), emulator.admin("GET", "counters"))
        if finished < total:
            problems.append(f"only {finished}/{total} copies finished within {timeout:.0f} s")
        total_first = total
        first_act = topic.topic.events()
        console.print(notifications_table(first_act))
        problems += notice_problems(first_act, total)
        topic.topic.reset()

        console.print("\n[bold]second act[/bold]: replication policies (tags, retention, mode latest)")
        demo_policies.configure(azurite.connection_string)
        runtime.install(runtime.build(load_settings(os.environ), credential=EmulatorCredential()))
        act = demo_policies.run_act(
            console,
            fleet,
            host,
            TableRows.from_connection_string(azurite.connection_string, demo_policies.TABLE_NAME),
            lambda: list(emulator.admin("GET", "events", params={"drain": "true"})),
            resource_group=RESOURCE_GROUP,
            location=SOURCE_REGION,
            timeout=max(10.0, timeout - (time.monotonic() - began)),
        )
        problems += act
        console.print(notifications_table(topic.topic.events()))
        topic.topic.reset()

        console.print("\n[bold]third act[/bold]: one disk both ways, CopyStart and the diff method")
        demo_diff.configure(azurite.connection_string)
        runtime.install(runtime.build(load_settings(os.environ), credential=EmulatorCredential()))
        problems += demo_diff.run_act(
            console,
            fleet,
            host,
            emulator.admin,
            azurite.connection_string,
            resource_group=RESOURCE_GROUP,
            location=SOURCE_REGION,
            timeout=max(20.0, timeout - (time.monotonic() - began)),
        )
        third_act = topic.topic.events()
        console.print(notifications_table(third_act))
        problems += notice_problems(third_act, 2 * len(demo_diff.WRITES))
        counters = emulator.admin("GET", "counters")
        refusals = {name: count for name, count in counters.get("refusals", {}).items() if count}
        if refusals and not any("refused" in problem for problem in problems):
            problems.append(f"the emulator refused requests for rule violations: {refusals}")
        fleet.close()
    elapsed = time.monotonic() - began
    requests_made = sum(counters.get("requests", {}).values())
    console.print(f"ARM requests seen by the emulator: {requests_made}; elapsed {elapsed:.1f} s")
    if problems:
        for problem in problems:
            console.print(f"[red]✗ {problem}[/red]")
        return 1
    console.print(
        f"[green]✓ all {total_first} snapshots copied once, in creation order per disk; no rule refused[/green]"
    )
    console.print("[green]✓ every copy announced its start and its end once (CloudEvents to the local topic)[/green]")
    console.print(
        "[green]✓ policies: gold copies tagged and pruned to the 2 newest; in mode latest the newest "
        "superseded the queued ones[/green]"
    )
    console.print(
        "[green]✓ both ways: every snapshot copied by CopyStart and by the diff method; each blob snapshot "
        "equals its source byte for byte; no SAS left open[/green]"
    )
    return 0


@contextmanager
def _running(server: TopicServer) -> Iterator[TopicServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=200.0, help="give up after this many seconds")
    parser.add_argument("--copy-seconds", type=float, default=4.0, help="how long one copy takes")
    parser.add_argument("--seed", type=int, default=7, help="seed for the delivery order")
    args = parser.parse_args()
    return run(args.timeout, args.copy_seconds, args.seed)


if __name__ == "__main__":
    sys.exit(main())
