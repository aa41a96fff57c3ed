"""The demo's second act: replication policies at work, checked against the emulator.

One disk, four snapshots tagged `backup=gold`, two policies:
- `gold` copies gold snapshots to westus3, tags the copies (the source's tags and
  `owner=dr-team`), and keeps the 2 newest: the retention run prunes the older two;
- `newest` copies everything to centralus in mode `latest`: the four are queued together
  (their events arrive after the last is taken), so only the newest is copied and the
  older three are recorded superseded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from local.fleet import Fleet
from local.host import FunctionHost
from local.tables import TableRows

TABLE_NAME = "snapcopypolicies"
GOLD_REGION, LATEST_REGION = "westus3", "centralus"
SNAPSHOTS = 4
SOURCE_TAGS = {"backup": "gold", "app": "billing"}
POLICIES = [
    {
        "name": "gold",
        "sources": {"tags": {"backup": "gold"}},
        "targets": [{"region": GOLD_REGION, "retain": {"count": 2}}],
        "tags": {"owner": "dr-team"},
    },
    {"name": "newest", "targets": [{"region": LATEST_REGION}], "mode": "latest", "copyTags": False},
]


def configure(connection_string: str) -> None:
    """The second act's app settings: COPY_POLICIES instead of COPY_TARGET_REGIONS."""
    os.environ.pop("COPY_TARGET_REGIONS", None)
    os.environ.update({"COPY_POLICIES": json.dumps(POLICIES), "STATE_TABLE_NAME": TABLE_NAME})
    os.environ["STATE_CONNECTION_STRING"] = connection_string


def run_act(
    console: Console,
    fleet: Fleet,
    host: FunctionHost,
    table: TableRows,
    drain_events: Callable[[], list[dict[str, Any]]],
    *,
    resource_group: str,
    location: str,
    timeout: float,
) -> list[str]:
    """Take the snapshots, let snapcopy work, prune, and check; the problems found."""
    disk = fleet.create_disk(resource_group, "db0-data0", location)
    snapshots = []
    for index in range(SNAPSHOTS):
        snapshots.append(fleet.take_snapshot(disk, f"db0-data0-snap{index}", location, tags=SOURCE_TAGS))
        time.sleep(1.1)  # a second apart: distinct timeCreated
    for event in drain_events():
        host.deliver_event(event)
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        host.run_timer()
        for event in drain_events():
            host.deliver_event(event)
        jobs = [row for row in table.rows("chain|") if row["RowKey"].startswith("job|")]
        if len(jobs) == 2 * SNAPSHOTS and all(row["State"] not in ("queued", "copying") for row in jobs):
            break
        time.sleep(1.0)
    host.run_timer(function="prune_copies")
    jobs = [row for row in table.rows("chain|") if row["RowKey"].startswith("job|")]
    console.print(policy_table(jobs))
    return check(fleet, jobs, snapshots)


def _name(resource_id: str) -> str:
    return resource_id.rsplit("/", 1)[-1]


def _region(row: dict[str, Any]) -> str:
    return str(row["PartitionKey"]).rsplit("|", 1)[-1]


def policy_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title="replication policies: gold → westus3 (keep 2), newest → centralus (mode latest)")
    for column in ("source snapshot", "region", "policy", "state", "what happened"):
        table.add_column(column)
    for row in sorted(jobs, key=lambda r: (_region(r), r["SourceId"])):
        style = {"succeeded": "green", "failed": "red", "skipped": "yellow"}.get(row["State"], "")
        note = str(row.get("Reason") or "").split(":")[0]
        if row.get("PrunedAt"):
            note = f"pruned by {row.get('PrunedBy')}: retain keeps the 2 newest"
        table.add_row(
            _name(row["SourceId"]),
            _region(row),
            row.get("Policy", ""),
            f"[{style}]{row['State']}[/{style}]" if style else row["State"],
            note[:70],
        )
    return table


def check(fleet: Fleet, jobs: list[dict[str, Any]], snapshots: list[str]) -> list[str]:
    """What the act must show, from the table and from ARM itself."""
    problems = []
    by = {(_name(row["SourceId"]), _region(row)): row for row in jobs}
    names = [_name(snapshot) for snapshot in snapshots]
    gold = [by.get((name, GOLD_REGION)) for name in names]
    if any(row is None or row["State"] != "succeeded" for row in gold):
        problems.append("gold: not every snapshot was copied to westus3")
    elif [bool(row.get("PrunedAt")) for row in gold if row is not None] != [True, True, False, False]:
        problems.append("gold: retention did not prune exactly the two oldest copies")
    for row in gold[2:]:
        if row is None:
            continue
        tags = fleet.snapshot_tags(row["TargetId"])
        wanted = {**SOURCE_TAGS, "owner": "dr-team", "snapcopy-source": row["SourceId"]}
        if tags != wanted:
            problems.append(f"{_name(row['TargetId'])}: tags {tags}, expected {wanted}")
    for row in gold[:2]:
        if row is not None and fleet.snapshot_exists(row["TargetId"]):
            problems.append(f"{_name(row['TargetId'])}: pruned, yet ARM still has it")
    latest = [by.get((name, LATEST_REGION)) for name in names]
    states = [row["State"] if row is not None else "missing" for row in latest]
    if states != ["skipped", "skipped", "skipped", "succeeded"]:
        problems.append(f"newest: centralus copies ended {states}, expected the newest only")
    elif not all(str(row.get("Reason", "")).startswith("superseded by") for row in latest[:3] if row is not None):
        problems.append("newest: the skipped snapshots do not say they were superseded")
    return problems
