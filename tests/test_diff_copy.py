"""The diff copy method, correct to the byte: a chain of snapshots of one disk copied
increment by increment onto a page blob in Azurite (the target side), read from the ARM
emulator through SAS URLs (the source side, with the managed-disk diff Azurite cannot
compute). After each increment the blob snapshot equals the source snapshot: the same
allocated ranges and the same bytes in them. Chunks run out of order and one twice.

The chain has changes, clears, an unchanged snapshot (an empty diff), ranges over 4 MiB,
a range straddling a chunk boundary, and a disk that grows."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from azure.mgmt.compute.models import GrantAccessData
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.compare import blob_differs
from local.emulator import World
from local.emulator.server import EmulatorServer
from local.fleet import Fleet
from shared.increments import PAGE, plan
from shared.pageblobs import SourceSnapshot, TargetBlob, copy_chunk
from tests.builders import SUB

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

MIB = 1024 * 1024
GIB = 1024 * MIB
RG = "prod-rg"
CHUNK = 4 * MIB  # small chunks, so ranges straddle their boundaries


@pytest.fixture
def fleet(emulator: EmulatorServer, world: World) -> Iterator[Fleet]:
    fleet = Fleet(emulator.url, str(emulator.ca_path), SUB)
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def container(storage_connection_string: str, table_name: str) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    client = service.get_container_client(f"diff{table_name.lower()}"[:63])
    try:
        yield client
    finally:
        client.delete_container()
        service.close()


def grant(fleet: Fleet, snapshot_id: str) -> str:
    sas = fleet.client.snapshots.begin_grant_access(
        RG, snapshot_id.rsplit("/", 1)[-1], GrantAccessData(access="Read", duration_in_seconds=3600)
    ).result()
    assert sas.access_sas
    return sas.access_sas


def revoke(fleet: Fleet, snapshot_id: str) -> None:
    fleet.client.snapshots.begin_revoke_access(RG, snapshot_id.rsplit("/", 1)[-1]).result()


def test_each_increment_leaves_a_blob_snapshot_equal_to_its_source_snapshot(
    fleet: Fleet, world: World, emulator: EmulatorServer, container: ContainerClient
):
    disk = fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    steps: list[list[Callable[[], object]]] = [
        [
            lambda: world.write_disk(disk, 0, 9 * MIB, seed=1),
            lambda: world.write_disk(disk, 100 * MIB, PAGE * 8, seed=2),
        ],
        [
            lambda: world.write_disk(disk, 3 * MIB + PAGE * 3, 2 * MIB, seed=3),  # straddles the 4 MiB boundary
            lambda: world.clear_disk(disk, 6 * MIB, MIB),
            lambda: world.write_disk(disk, 200 * MIB, 10 * MIB, seed=4),  # over 4 MiB in one range
        ],
        [],  # nothing changed: an empty diff
        [
            lambda: fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=2),  # the disk grows (a PUT of its size)
            lambda: world.write_disk(disk, GIB + 5 * MIB, 3 * MIB, seed=5),
            lambda: world.clear_disk(disk, 100 * MIB, PAGE * 8),
        ],
        [lambda: world.write_disk(disk, 0, PAGE, seed=6)],
    ]
    target = TargetBlob(container, "family.vhd")
    rng = random.Random(7)
    previous: tuple[str, str] | None = None
    read_total = changed_total = 0
    for index, step in enumerate(steps):
        for action in step:
            action()
        snapshot_id = fleet.take_snapshot(disk, f"vm0-data0-s{index}", "eastus2")
        sas = grant(fleet, snapshot_id)
        source = SourceSnapshot(sas, connection_verify=str(emulator.ca_path))
        changed, cleared = source.ranges(previous[1] if previous else None)
        size = source.size()
        chunks = plan(changed, cleared, size=size, chunk_bytes=CHUNK)
        assert all(chunk.write_bytes <= CHUNK for chunk in chunks)
        assert target.prepare(size, fence=index + 1) == (index == 0)  # created by the first increment only
        order = rng.sample(chunks, len(chunks)) + chunks[:1]  # any order, and one chunk twice
        read = sum(copy_chunk(source, target, chunk) for chunk in order)
        read_total += read - (chunks[0].write_bytes if chunks else 0)
        changed_total += sum(end - start for start, end in changed)
        stamp = target.snapshot({"sourcesnapshotid": snapshot_id, "increment": str(index)})
        if previous is not None:
            revoke(fleet, previous[0])  # at most two SAS held: this one and its predecessor
        previous = (snapshot_id, sas)

        image = world.snapshot_image(snapshot_id)
        copy = container.get_blob_client("family.vhd", snapshot=stamp)
        assert copy.get_blob_properties().size == image.size
        assert blob_differs(copy, image) == "", f"increment {index}"
        assert copy.get_blob_properties().metadata["sourcesnapshotid"] == snapshot_id
    assert read_total == changed_total  # nothing read twice (the repeated chunk aside), nothing unchanged read
    assert world.access_counters()["most_at_once"] <= 2 and world.access_counters()["refused"] == 0


def test_a_blob_snapshot_is_taken_once_per_source_and_the_blob_says_what_it_holds(container: ContainerClient):
    target = TargetBlob(container, "family.vhd")
    assert target.prepare(MIB, fence=1) and target.holds() == ""
    first = target.snapshot({"sourcesnapshotid": "/s/s0"})
    assert target.snapshot({"sourcesnapshotid": "/s/s0"}) == first  # a finish that died after taking it
    assert target.snapshot({"sourcesnapshotid": "/s/s1"}) != first
    target.mark_holding("/s/s1")
    assert TargetBlob(container, "family.vhd").holds() == "/s/s1"
