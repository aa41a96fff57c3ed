"""The demo's third act: one disk replicated both ways, checked byte for byte.

One policy, two targets: westus3 by CopyStart (Azure copies) and centralus by the diff
method (snapcopy reads the pages that changed through a SAS and writes them onto a page
blob in Azurite, then takes a blob snapshot). The disk is written between its four
snapshots: data, a trim, a snapshot with nothing changed. The act checks that every
snapshot reached both regions, and reads each blob snapshot and its source (through a
SAS of its own) to compare them byte for byte; and that no SAS is left open.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from azure.mgmt.compute.models import GrantAccessData
from azure.storage.blob import BlobClient, ContainerClient
from azure.storage.queue import QueueClient
from rich.console import Console
from rich.table import Table

from local.azurite import blob_endpoint
from local.fleet import Fleet
from local.host import FunctionHost
from local.tables import TableRows
from shared.chunk_messages import QUEUE_NAME
from shared.increments import joined
from shared.pageblobs import allocated

TABLE_NAME = "snapcopydiff"
COPY_REGION, DIFF_REGION = "westus3", "centralus"
CONTAINER = "snapcopy-demo"
MIB = 1024 * 1024
# (start, length, seed) written before each snapshot; seed None trims (zeros, unallocated)
WRITES: list[list[tuple[int, int, int | None]]] = [
    [(0, 12 * MIB, 1), (512 * MIB, 3 * MIB, 2)],
    [(4 * MIB, 2 * MIB, 3), (512 * MIB, MIB, None)],
    [],  # nothing changed: an empty diff
    [(100 * MIB, 9 * MIB + 4096, 4)],
]


def policies(blob_endpoint: str) -> list[dict[str, Any]]:
    storage = {"blobEndpoint": blob_endpoint, "container": CONTAINER}
    return [
        {
            "name": "both-ways",
            "targets": [{"region": COPY_REGION}, {"region": DIFF_REGION, "method": "diff", "storage": storage}],
        }
    ]


def configure(connection_string: str) -> None:
    """The third act's app settings: one policy with a CopyStart and a diff target."""
    os.environ.pop("COPY_TARGET_REGIONS", None)
    os.environ.update(
        {
            "COPY_POLICIES": json.dumps(policies(blob_endpoint(connection_string))),
            "STATE_TABLE_NAME": TABLE_NAME,
            "STATE_CONNECTION_STRING": connection_string,
        }
    )


def run_act(
    console: Console,
    fleet: Fleet,
    host: FunctionHost,
    admin: Callable[..., Any],
    connection_string: str,
    *,
    resource_group: str,
    location: str,
    timeout: float,
) -> list[str]:
    """Write, snapshot, replicate both ways, and check; the problems found."""
    table = TableRows.from_connection_string(connection_string, TABLE_NAME)
    queue = QueueClient.from_connection_string(connection_string, QUEUE_NAME)
    disk = fleet.create_disk(resource_group, "app0-data0", location, size_gb=1)
    snapshots = []
    for index, writes in enumerate(WRITES):
        for start, length, seed in writes:
            admin("POST", "disks/write", json={"disk_id": disk, "start": start, "length": length, "seed": seed})
        snapshots.append(fleet.take_snapshot(disk, f"app0-data0-snap{index}", location))
        time.sleep(1.1)  # a second apart: distinct timeCreated
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        for event in admin("GET", "events", params={"drain": "true"}):
            host.deliver_event(event)
        host.run_timer()
        while host.drain_queue(queue, function="copy_chunk").done:
            pass  # the host runs copy_chunk on each chunk as it arrives
        jobs = [row for row in table.rows("chain|") if row["RowKey"].startswith("job|")]
        if len(jobs) == 2 * len(WRITES) and all(row["State"] not in ("queued", "copying") for row in jobs):
            break
        time.sleep(1.0)
    host.run_timer()
    jobs = [row for row in table.rows("chain|") if row["RowKey"].startswith("job|")]
    console.print(both_ways_table(jobs))
    container = ContainerClient.from_connection_string(connection_string, CONTAINER)
    problems = check(fleet, container, jobs, snapshots, resource_group)
    access = admin("GET", "access")
    if access["open"]:
        problems.append(f"read access left open on {access['open']}")
    if access["refused"]:
        problems.append(f"{access['refused']} grant(s) refused: the five-SAS limit was reached")
    return problems


def _name(resource_id: str) -> str:
    return resource_id.rsplit("/", 1)[-1]


def _region(row: dict[str, Any]) -> str:
    return str(row["PartitionKey"]).rsplit("|", 1)[-1]


def both_ways_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"one disk both ways: CopyStart → {COPY_REGION}, diff → {DIFF_REGION}")
    for column in ("source snapshot", "region", "method", "state", "what stands for it in the region"):
        table.add_column(column)
    for row in sorted(jobs, key=lambda r: (_region(r), r["RowKey"])):
        style = {"succeeded": "green", "failed": "red"}.get(row["State"], "")
        target = row.get("BlobSnapshot") or row["TargetId"]
        table.add_row(
            _name(row["SourceId"]),
            _region(row),
            row.get("Method") or "copyStart",
            f"[{style}]{row['State']}[/{style}]" if style else row["State"],
            "…" + str(target)[-58:],
        )
    return table


def check(
    fleet: Fleet, container: ContainerClient, jobs: list[dict[str, Any]], snapshots: list[str], resource_group: str
) -> list[str]:
    """Both regions hold every snapshot; each blob snapshot equals its source byte for byte."""
    problems = []
    by = {(_name(row["SourceId"]), _region(row)): row for row in jobs}
    for snapshot in snapshots:
        name = _name(snapshot)
        copied, diffed = by.get((name, COPY_REGION)), by.get((name, DIFF_REGION))
        if copied is None or copied["State"] != "succeeded" or not fleet.snapshot_exists(copied["TargetId"]):
            problems.append(f"{name}: no CopyStart copy in {COPY_REGION}")
        if diffed is None or diffed["State"] != "succeeded":
            problems.append(f"{name}: not copied by the diff method to {DIFF_REGION}")
            continue
        url, stamp = str(diffed["BlobSnapshot"]).split("?snapshot=")
        ours = container.get_blob_client(url.rsplit("/", 1)[-1], snapshot=stamp)
        if _digest(ours) != _source_digest(fleet, resource_group, name):
            problems.append(f"{name}: the blob snapshot in {DIFF_REGION} differs from its source")
    return problems


def _digest(blob: BlobClient) -> str:
    """The hash of a page blob's allocated ranges and their bytes."""
    digest = hashlib.sha256()
    for start, end in joined(allocated(blob)):
        digest.update(f"{start}-{end}".encode())
        digest.update(blob.download_blob(offset=start, length=end - start).readall())
    return digest.hexdigest()


def _source_digest(fleet: Fleet, resource_group: str, name: str) -> str:
    """The same hash of the source snapshot, read through a SAS of the demo's own."""
    grant = GrantAccessData(access="Read", duration_in_seconds=600)
    sas = fleet.client.snapshots.begin_grant_access(resource_group, name, grant).result().access_sas
    if not sas:
        raise RuntimeError(f"ARM granted no SAS for {name}")
    try:
        return _digest(BlobClient.from_blob_url(sas, connection_verify=fleet.ca_path))
    finally:
        fleet.client.snapshots.begin_revoke_access(resource_group, name).result()
