"""The diff method's increments through the engine's own steps: start, plan, chunks through
Azurite's queue (driven as the Functions host drives a queue trigger), finish. A chain of
snapshots of one disk ends with a blob snapshot equal to each source, the chain's diff
base moving on, every read access let go and no increment or chunk row left."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.host import FunctionHost
from shared.admission import new_head, new_job
from shared.chunk_queue import ChunkQueue
from shared.engine.access import Access
from shared.engine.differ import Differ, DiffIo
from shared.ids import ResourceId
from shared.increment_steps import IncrementState
from shared.increments import PAGE, joined
from shared.model import CopyState
from shared.pageblobs import allocated
from shared.placement import Selected, place
from shared.policies import DiffStorage, Method, Policy, Target
from tests.apps import differ_app
from tests.conftest import Deployment
from tests.test_functions import RG

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

MIB = 1024 * 1024


@pytest.fixture
def blobs(storage_connection_string: str, table_name: str) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    container = service.get_container_client(f"differ{table_name.lower()}"[:63])
    yield container
    container.delete_container()
    service.close()


def test_a_diff_chain_copies_each_snapshot_exactly_through_the_engine_s_steps(
    deployment: Deployment, blobs: ContainerClient, storage_connection_string: str, table_name: str
):
    world, fleet = deployment.world, deployment.fleet
    queue = ChunkQueue.from_connection_string(storage_connection_string, f"chunks-{table_name.lower()}"[:63])
    io = DiffIo(queue, lambda endpoint, container: blobs, {"connection_verify": str(world_ca(deployment))})
    differ = Differ(deployment.replicator.deps, Access(deployment.replicator.deps), io)
    differ_app.DIFFER[:] = [differ]
    host = FunctionHost("tests.apps.differ_app")
    storage = DiffStorage("http://127.0.0.1:10000/devstoreaccount1", blobs.container_name)
    policy = Policy("dr", (Target("westus3", method=Method.DIFF, storage=storage),))

    disk = fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    writes = [
        [(0, 9 * MIB, 1), (100 * MIB, 8 * PAGE, 2)],
        [(3 * MIB, 2 * MIB, 3), (300 * MIB, 6 * MIB, 4)],
        [(0, PAGE, 5)],
    ]
    snapshots = []
    for index, step in enumerate(writes):
        for start, length, seed in step:
            world.write_disk(disk, start, length, seed)
        if index == 1:
            world.clear_disk(disk, 100 * MIB, 8 * PAGE)
        snapshots.append(fleet.take_snapshot(disk, f"vm0-data0-s{index}", "eastus2"))
        deployment.advance(60)
    store = deployment.store
    for index, snapshot_id in enumerate(snapshots):
        snapshot = deployment.replicator.arm.get_snapshot(ResourceId.parse(snapshot_id))
        assert snapshot is not None
        placement = place(Selected(policy, policy.targets[0]), snapshot, snapshot.id.group)
        job = new_job(snapshot, placement, deployment.world.clock.now())
        if index == 0:
            store.create_head(new_head(snapshot, "westus3", snapshot.id.group, method="diff"))
        (job,) = store.add_jobs([job])
        head = store.load_head(job.chain)
        assert head is not None
        differ.start(head, job)
        for _ in range(10):  # the host drains the queue until the increment is done
            run = host.drain_queue(queue.client, function="copy_chunk")
            assert run.failed == 0, run.errors
            if run.done == 0:
                break
        finished = store.load_job(job.chain, job.key)
        assert finished is not None and finished.state is CopyState.SUCCEEDED, index
        head = store.load_head(job.chain)
        assert head is not None and head.diff_base == snapshot_id and head.copying_key == ""
        assert store.load_increment(job.chain, job.key) is None
        assert store.chunks_done(job.chain, job.key, 1) == set()
        blob, stamp = finished.blob_snapshot.split("?snapshot=")
        copy = blobs.get_blob_client(blob, snapshot=stamp)
        image = world.snapshot_image(snapshot_id)
        held = joined(allocated(copy))
        assert held == image.allocated(), index
        for start, end in held:
            ours = copy.download_blob(offset=start, length=end - start).readall()
            assert hashlib.sha256(ours).digest() == hashlib.sha256(image.read(start, end - start)).digest()
    assert world.open_grants() == []  # every read access let go
    assert world.access_counters()["most_at_once"] <= 2 and world.access_counters()["refused"] == 0
    assert store.load_increment(job.chain, job.key) is None

    # someone deletes the target blob: the chain's base is gone, so the next increment re-bases
    assert finished is not None
    blob_name = finished.blob_snapshot.split("?")[0]
    blobs.get_blob_client(blob_name).delete_blob(delete_snapshots="include")
    world.write_disk(disk, 50 * MIB, MIB, seed=6)
    last = fleet.take_snapshot(disk, "vm0-data0-s3", "eastus2")
    snapshot = deployment.replicator.arm.get_snapshot(ResourceId.parse(last))
    assert snapshot is not None
    (job,) = store.add_jobs(
        [new_job(snapshot, place(Selected(policy, policy.targets[0]), snapshot, snapshot.id.group), world.clock.now())]
    )
    head = store.load_head(job.chain)
    assert head is not None
    planned = differ.start(head, job)
    assert planned is not None and planned.base_id == ""  # a full copy, not a diff onto an empty blob
    while host.drain_queue(queue.client, function="copy_chunk").done:
        pass
    finished = store.load_job(job.chain, job.key)
    assert finished is not None and finished.state is CopyState.SUCCEEDED
    blob, stamp = finished.blob_snapshot.split("?snapshot=")
    copy = blobs.get_blob_client(blob, snapshot=stamp)
    image = world.snapshot_image(last)
    held = joined(allocated(copy))
    assert held == image.allocated()


def world_ca(deployment: Deployment) -> str:
    settings = deployment.replicator.settings
    assert settings.arm_ca_bundle is not None
    return settings.arm_ca_bundle


def test_an_increment_waits_while_its_family_holds_its_read_access_budget_then_plans(
    deployment: Deployment, blobs: ContainerClient, storage_connection_string: str, table_name: str
):
    world, fleet, store = deployment.world, deployment.fleet, deployment.store
    queue = ChunkQueue.from_connection_string(storage_connection_string, f"chunks-{table_name.lower()}"[:63])
    io = DiffIo(queue, lambda endpoint, container: blobs, {"connection_verify": world_ca(deployment)})
    access = Access(deployment.replicator.deps)
    differ = Differ(deployment.replicator.deps, access, io)
    disk = fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    world.write_disk(disk, 0, MIB, seed=1)
    ids = [ResourceId.parse(fleet.take_snapshot(disk, f"s{index}", "eastus2")) for index in range(5)]
    snapshot = deployment.replicator.arm.get_snapshot(ids[4])
    assert snapshot is not None and snapshot.family_id
    for other in ids[:4]:  # another region's chains hold the family's budget
        assert access.acquire(other, snapshot.family_id, "chain|elsewhere")
    storage = DiffStorage("http://127.0.0.1:10000/devstoreaccount1", blobs.container_name)
    policy = Policy("dr", (Target("westus3", method=Method.DIFF, storage=storage),))
    job = new_job(snapshot, place(Selected(policy, policy.targets[0]), snapshot, snapshot.id.group), world.clock.now())
    store.create_head(new_head(snapshot, "westus3", snapshot.id.group, method="diff"))
    (job,) = store.add_jobs([job])
    head = store.load_head(job.chain)
    assert head is not None
    assert differ.start(head, job) is None  # committed, and waiting for read access
    waiting = store.load_increment(job.chain, job.key)
    assert waiting is not None and waiting.state is IncrementState.PLANNING
    started = store.load_job(job.chain, job.key)
    assert started is not None and started.state is CopyState.COPYING
    assert world.access_counters()["refused"] == 0  # it waited; ARM was never asked past the limit
    access.release(ids[0], snapshot.family_id, "chain|elsewhere")
    planned = differ.plan(job.chain, job.key)
    assert planned is not None and planned.state is IncrementState.COPYING and planned.chunks == 1
