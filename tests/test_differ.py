"""The diff method through the app, as the Functions host runs it: a snapshot's event starts
an increment in its region's diff lane, its chunks go through Azurite's queue to the
`copy_chunk` function, the last chunk takes the blob snapshot, and the timer starts the
chain's next. Each blob snapshot equals its source byte for byte, no read access is left
open, and the half-done states a crash leaves are finished by the timer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from local.azurite import blob_endpoint
from local.compare import blob_differs
from shared.arm import ArmError
from shared.chunk_messages import ChunkMessage
from shared.engine import differ as differ_module
from shared.engine.access import Access
from shared.engine.differ import NoReadAccess
from shared.grants import GRANT_SECONDS
from shared.ids import ResourceId
from shared.increment_steps import CHUNK_GRACE, MAX_PLANS, PLAN_GRACE, RECOVER_LIMIT, IncrementState
from shared.increments import PAGE
from shared.model import CopyState, Increment, Job, blob_name
from shared.pageblobs import TargetBlob, copy_chunk
from tests.conftest import Deployment
from tests.test_functions import RG

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

MIB = 1024 * 1024
AZURITE_BLOBS = "http://127.0.0.1:{port}/devstoreaccount1"


@pytest.fixture
def container_name(table_name: str) -> str:
    return f"differ{table_name.lower()}"[:63]


@pytest.fixture
def app_settings(app_settings: dict[str, str], container_name: str) -> dict[str, str]:
    """One policy: everything to westus3 by the diff method, onto Azurite's blob service."""
    endpoint = blob_endpoint(app_settings["STATE_CONNECTION_STRING"])
    target = {
        "region": "westus3",
        "method": "diff",
        "storage": {"blobEndpoint": endpoint, "container": container_name},
    }
    settings = {name: value for name, value in app_settings.items() if name != "COPY_TARGET_REGIONS"}
    return {**settings, "COPY_POLICIES": json.dumps([{"name": "dr", "targets": [target]}])}


@pytest.fixture
def blobs(storage_connection_string: str, container_name: str) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    container = service.get_container_client(container_name)
    yield container
    if container.exists():
        container.delete_container()
    service.close()


def run_until_settled(deployment: Deployment, *, limit: int = 40, step: float = 60.0) -> None:
    """Events, chunks and ticks until every job of the run is final (as time passes)."""
    for _ in range(limit):
        deliver_events(deployment)
        run = deployment.drain_chunks()
        assert not run.poisoned, run.errors
        if all(job["State"] in ("succeeded", "failed", "skipped") for job in jobs(deployment)):
            return
        deployment.tick(step)
    raise AssertionError(f"not settled: {[(job['RowKey'], job['State']) for job in jobs(deployment)]}")


def deliver_events(deployment: Deployment) -> None:
    """Deliver the snapshots' write events the emulator has sent since the last call."""
    deployment.deliver([e for e in deployment.drain_events() if "/snapshots/" in e["subject"]])


def lose_every_chunk(deployment: Deployment) -> tuple[Job, QueueClient]:
    """Take one 20 MiB snapshot, start its increment and lose every chunk it queued."""
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, 20 * MIB, 1)])
    deliver_events(deployment)
    diff = deployment.replicator.deps.diff
    assert diff is not None
    diff.queue.client.clear_messages()
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.COPYING
    return job, diff.queue.client


def increment_of(deployment: Deployment, job: Job) -> Increment:
    increment = deployment.store.load_increment(job.chain, job.key)
    assert increment is not None, f"{job.key} has no increment"
    return increment


def jobs(deployment: Deployment) -> list[dict[str, Any]]:
    return [row for row in deployment.rows("chain|") if row["RowKey"].startswith("job|")]


def stored_jobs(deployment: Deployment) -> list[Job]:
    (head,) = deployment.store.list_heads()
    return sorted(deployment.store.iter_jobs(head.key), key=lambda job: job.key)


def assert_equal_to_source(deployment: Deployment, blobs: ContainerClient, job: Job) -> None:
    url, stamp = job.blob_snapshot.split("?snapshot=")
    assert url == f"{blobs.url}/{blob_name(job.chain)}"  # the URL a disk is restored from
    copy = blobs.get_blob_client(blob_name(job.chain), snapshot=stamp)
    assert blob_differs(copy, deployment.world.snapshot_image(str(job.source_id))) == "", job.source_id


def take(deployment: Deployment, disk: str, name: str, writes: list[tuple[int, int, int]]) -> str:
    for start, length, seed in writes:
        deployment.world.write_disk(disk, start, length, seed)
    snapshot = deployment.fleet.take_snapshot(disk, name, "eastus2")
    deployment.advance(60)
    return snapshot


def test_a_diff_chain_copies_each_snapshot_exactly_in_order_through_the_app(
    deployment: Deployment, blobs: ContainerClient
):
    world = deployment.world
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, 9 * MIB, 1), (100 * MIB, 8 * PAGE, 2)])
    take(deployment, disk, "s1", [(3 * MIB, 2 * MIB, 3), (300 * MIB, 6 * MIB, 4)])
    world.clear_disk(disk, 100 * MIB, 8 * PAGE)
    take(deployment, disk, "s2", [(0, PAGE, 5)])
    take(deployment, disk, "s3", [])  # nothing changed: an empty diff
    run_until_settled(deployment)

    done = stored_jobs(deployment)
    assert [job.state for job in done] == [CopyState.SUCCEEDED] * 4
    finished = [job.finished_at for job in done]
    assert None not in finished and finished == sorted(filter(None, finished))  # in creation order
    for job in done:
        assert_equal_to_source(deployment, blobs, job)
    (head,) = deployment.store.list_heads()
    assert head.diff_base == str(done[-1].source_id) and not head.copying_key
    assert world.open_grants() == []  # every read access let go
    assert world.access_counters()["refused"] == 0 and world.access_counters()["most_at_once"] <= 2
    assert world.copies() == []  # no CopyStart, no Azure cap counted
    regions = deployment.store.list_regions()
    assert [region.lane for region in regions] == ["diff"]
    assert deployment.store.load_region(regions[0]).in_flight_count == 0


def test_a_source_deleted_mid_copy_fails_its_increment_and_the_next_re_bases(
    deployment: Deployment, blobs: ContainerClient
):
    world = deployment.world
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, 4 * MIB, 1)])
    run_until_settled(deployment)
    doomed = take(deployment, disk, "s1", [(8 * MIB, 12 * MIB, 2)])
    deliver_events(deployment)
    increment = deployment.store.load_increment(stored_jobs(deployment)[1].chain, stored_jobs(deployment)[1].key)
    assert increment is not None and increment.state is IncrementState.COPYING and increment.chunks >= 1
    deployment.fleet.delete_snapshot(doomed)  # its SAS dies with it: the chunks' reads are refused
    take(deployment, disk, "s2", [(40 * MIB, MIB, 3)])
    run_until_settled(deployment)

    _, failed, last = stored_jobs(deployment)
    assert failed.state is CopyState.FAILED and failed.error is not None
    assert failed.error.code == "SourceDeleted" and "re-bases" in failed.reason
    assert last.state is CopyState.SUCCEEDED
    assert_equal_to_source(deployment, blobs, last)  # a full copy, not a diff onto a half-written blob
    assert world.open_grants() == []


def test_lost_chunks_are_planned_again_by_the_timer_and_the_blob_is_still_exact(
    deployment: Deployment, blobs: ContainerClient
):
    job, _ = lose_every_chunk(deployment)
    first = deployment.store.load_increment(job.chain, job.key)
    assert first is not None and first.plans == 1
    deployment.tick(60)
    assert deployment.store.load_increment(job.chain, job.key) == first  # not yet: within the grace
    deployment.tick(CHUNK_GRACE.total_seconds())  # quiet for longer than the grace, the queue empty
    again = deployment.store.load_increment(job.chain, job.key)
    assert again is not None and again.plans == 2 and again.state is IncrementState.COPYING
    assert again.generation > first.generation  # the lost plan's late messages never count
    run_until_settled(deployment)
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.SUCCEEDED
    assert_equal_to_source(deployment, blobs, job)
    assert deployment.world.open_grants() == []


def test_an_increment_waits_while_its_family_holds_its_read_access_budget(
    deployment: Deployment, blobs: ContainerClient
):
    world, fleet = deployment.world, deployment.fleet
    disk = fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, MIB, 1)])
    s0_events = deployment.drain_events()
    world.write_disk(disk, MIB, MIB, seed=2)
    others = [ResourceId.parse(fleet.take_snapshot(disk, f"other{index}", "eastus2")) for index in range(4)]
    deployment.drain_events()  # these four are found by the chain's listing
    snapshot = deployment.replicator.arm.get_snapshot(others[0])
    assert snapshot is not None and snapshot.family_id
    access = Access(deployment.replicator.deps)
    for other in others:  # another region's chains hold the family's budget
        assert access.acquire(other, snapshot.family_id, "chain|elsewhere")
    deployment.deliver([e for e in s0_events if "/snapshots/" in e["subject"]])
    first = stored_jobs(deployment)[0]
    assert first.source_id.name == "s0" and first.state is CopyState.COPYING
    waiting = deployment.store.load_increment(first.chain, first.key)
    assert waiting is not None and waiting.state is IncrementState.WAITING
    deployment.tick(60)
    assert increment_of(deployment, first).state is IncrementState.WAITING
    assert world.access_counters()["refused"] == 0  # it waited; ARM was never asked past the limit
    access.release(others[3], snapshot.family_id, "chain|elsewhere")
    run_until_settled(deployment)  # the timer asks again, and the chain goes on
    done = stored_jobs(deployment)
    assert [job.state for job in done] == [CopyState.SUCCEEDED] * 5
    for job in done:
        assert_equal_to_source(deployment, blobs, job)
    assert world.access_counters()["refused"] == 0 and world.access_counters()["most_at_once"] <= 5


def receive_all(deployment: Deployment) -> list[str]:
    """Take every visible chunk message off the queue (as if the host held them)."""
    diff = deployment.replicator.deps.diff
    assert diff is not None
    taken = []
    for message in diff.queue.client.receive_messages(max_messages=32, visibility_timeout=1):
        taken.append(message.content)
        diff.queue.client.delete_message(message)
    return taken


def test_a_renewal_while_a_chunk_reads_is_not_a_lost_grant(
    deployment: Deployment, blobs: ContainerClient, monkeypatch: pytest.MonkeyPatch
):
    """The timer renews the SAS while a chunk reads with the old one: the chunk's refusal is
    the renewal's, so it is tried again with the new SAS; the increment is not planned again."""
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, 64 * MIB, 1)])  # two chunks
    deliver_events(deployment)
    (job,) = stored_jobs(deployment)
    before = deployment.store.load_increment(job.chain, job.key)
    assert before is not None and before.state is IncrementState.COPYING
    deployment.advance(GRANT_SECONDS - 20 * 60)  # within the margin: the timer's step renews
    calls: list[int] = []

    def racing(source: Any, target: Any, chunk: Any) -> int:
        if not calls:
            deployment.tick(0)  # the timer renews while this chunk holds the SAS it read
        calls.append(chunk.index)
        return copy_chunk(source, target, chunk)

    monkeypatch.setattr(differ_module, "copy_chunk", racing)
    deployment.drain_chunks()
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.SUCCEEDED  # finished with the renewed SAS, plan unchanged
    assert_equal_to_source(deployment, blobs, job)
    assert deployment.world.open_grants() == []


def test_a_late_chunk_of_a_failed_attempt_never_counts_for_its_retry(deployment: Deployment, blobs: ContainerClient):
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, 4 * MIB, 1)])
    run_until_settled(deployment)
    take(deployment, disk, "s1", [(8 * MIB, 64 * MIB, 2)])  # a diff of two chunks
    deliver_events(deployment)
    old = {ChunkMessage.decode(text).chunk.index: text for text in receive_all(deployment)}
    assert sorted(old) == [0, 1]
    deployment.replicator.chunk_poisoned(old[0])  # the first attempt fails
    _, failed = stored_jobs(deployment)
    assert failed.state is CopyState.FAILED and failed.error is not None and failed.error.code == "ChunkFailed"
    deployment.replicator.operator.retry(failed.chain, failed.key)  # a re-base, cut otherwise
    new = {ChunkMessage.decode(text).chunk.index: text for text in receive_all(deployment)}
    assert len(new) == 3
    for text in (new[0], old[1], new[2]):  # the old attempt's chunk 1 arrives among the new ones
        deployment.replicator.copy_chunk(text)
    deployment.replicator.chunk_poisoned(old[1])  # and its poison copy too: no harm done
    _, waiting = stored_jobs(deployment)
    assert waiting.state is CopyState.COPYING  # the old chunk did not count
    deployment.replicator.copy_chunk(new[1])
    _, done = stored_jobs(deployment)
    assert done.state is CopyState.SUCCEEDED
    assert_equal_to_source(deployment, blobs, done)


def test_a_disk_a_page_blob_cannot_hold_fails_with_the_reason_and_lets_go_of_its_access(
    deployment: Deployment, blobs: ContainerClient
):
    disk = deployment.fleet.create_disk(RG, "vm0-big", "eastus2", size_gb=9 * 1024)  # a page blob holds 8 TiB
    take(deployment, disk, "s0", [(0, MIB, 1)])
    deliver_events(deployment)
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.FAILED and job.error is not None and job.error.code == "CannotCopy"
    assert "8 TiB" in job.error.message
    assert deployment.world.open_grants() == []


def test_a_target_that_refuses_for_good_fails_the_increment_and_holds_no_read_access(
    deployment: Deployment, blobs: ContainerClient, monkeypatch: pytest.MonkeyPatch
):
    """A missing Storage Blob Data Contributor role (or a firewall) on the target account:
    each plan fails, lets go of its read access, and after MAX_PLANS the job fails."""

    def refused(self: TargetBlob, size: int, fence: int) -> bool:
        raise HttpResponseError(message="AuthorizationPermissionMismatch")

    monkeypatch.setattr(TargetBlob, "prepare", refused)
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, MIB, 1)])
    deliver_events(deployment)
    assert deployment.world.open_grants() == []  # let go at once, not held until the next plan
    for _ in range(MAX_PLANS + 1):
        deployment.tick(PLAN_GRACE.total_seconds() + 60)
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.FAILED and job.error is not None and job.error.code == "IncrementStuck"
    assert f"after {MAX_PLANS} plans" in job.error.message
    assert deployment.world.open_grants() == []


def test_lost_chunks_are_planned_again_within_the_limit_even_while_the_queue_is_busy(
    deployment: Deployment, blobs: ContainerClient
):
    job, queue = lose_every_chunk(deployment)
    queue.send_message("another increment's chunk, not run yet", visibility_timeout=3600)
    deployment.tick(CHUNK_GRACE.total_seconds() + 60)
    assert increment_of(deployment, job).plans == 1  # the queue is busy
    deployment.tick(RECOVER_LIMIT.total_seconds())
    again = deployment.store.load_increment(job.chain, job.key)
    assert again is not None and again.plans == 2  # a busy queue does not hide a loss for ever
    deployment.drain_chunks()  # nothing of the new plan is lost
    deployment.tick(60)
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.SUCCEEDED
    assert_equal_to_source(deployment, blobs, job)
    queue.clear_messages()


def test_a_renewal_that_arm_refuses_once_does_not_stop_the_chunks(
    deployment: Deployment, blobs: ContainerClient, monkeypatch: pytest.MonkeyPatch
):
    """The renewal's claim stands (no SAS in the row) after ARM failed once: chunks read with
    the SAS their plan read with, which is good until a new one replaces it."""
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, 64 * MIB, 1)])
    deliver_events(deployment)
    arm, calls = deployment.replicator.arm, list[int]()
    real = arm.grant_read

    def once(*args: Any, **kwargs: Any) -> str:
        if not calls:
            calls.append(1)
            raise ArmError("ServiceUnavailable", "try later", 503)
        return real(*args, **kwargs)

    monkeypatch.setattr(arm, "grant_read", once)
    deployment.advance(GRANT_SECONDS - 20 * 60)
    with pytest.raises(Exception, match="try later"):
        deployment.tick(0)  # the renewal: the claim written, ARM fails (the run ends failed)
    run = deployment.drain_chunks()
    assert not run.poisoned
    deployment.tick(60)
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.SUCCEEDED
    assert_equal_to_source(deployment, blobs, job)


def test_a_diff_copy_answers_the_api_as_documented_with_its_blob_snapshot(
    deployment: Deployment, blobs: ContainerClient
):
    from tests.test_openapi import Contract

    contract = Contract(deployment.host)
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, MIB, 1)])
    deliver_events(deployment)
    (copy,) = contract.call("list_copies").body["value"]
    assert (
        copy["state"] == "copying"
        and copy["targetSnapshotId"] == f"{blobs.url}/{blob_name(stored_jobs(deployment)[0].chain)}"
    )
    run_until_settled(deployment)
    done = contract.call("get_copy", copy=copy["copyId"]).body
    (job,) = stored_jobs(deployment)
    assert done["state"] == "succeeded" and done["targetSnapshotId"] == job.blob_snapshot
    assert "?snapshot=" in done["targetSnapshotId"]


def test_a_source_whose_data_access_takes_entra_id_is_read_with_the_app_s_token(
    deployment: Deployment, blobs: ContainerClient
):
    """dataAccessAuthMode AzureActiveDirectory: the SAS alone is refused (401, with the
    challenge naming https://disk.azure.com/); snapcopy answers it with its identity's token."""
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    for index, (start, seed) in enumerate([(0, 1), (4 * MIB, 2)]):
        deployment.world.write_disk(disk, start, 3 * MIB, seed)
        deployment.fleet.take_snapshot(disk, f"s{index}", "eastus2", data_access_auth_mode="AzureActiveDirectory")
        deployment.advance(60)
    run_until_settled(deployment)
    done = stored_jobs(deployment)
    assert [job.state for job in done] == [CopyState.SUCCEEDED] * 2
    for job in done:
        assert_equal_to_source(deployment, blobs, job)
    assert deployment.world.open_grants() == []


# --- what a third review found --------------------------------------------------------------


def test_a_replan_whose_planner_dies_sending_is_planned_again_after_the_grace(
    deployment: Deployment, blobs: ContainerClient, monkeypatch: pytest.MonkeyPatch
):
    """`queued` is carried over from the previous plan (never reset by the claim)."""
    job, queue = lose_every_chunk(deployment)
    assert increment_of(deployment, job).queued  # plan 1 marked it
    diff = deployment.replicator.deps.diff
    assert diff is not None

    def dies(messages: Any) -> None:
        raise RuntimeError("the host died while sending")

    monkeypatch.setattr(diff.queue, "send", dies)
    with pytest.raises(Exception, match="died while sending"):
        deployment.tick(CHUNK_GRACE.total_seconds() + 60)  # RECOVER: plan 2 dies sending
    second = increment_of(deployment, job)
    assert second.plans == 2 and second.state is IncrementState.COPYING
    monkeypatch.undo()
    queue.send_message("another increment's chunk, not run yet", visibility_timeout=3600)
    assert not second.queued  # each plan starts unqueued
    deployment.tick(PLAN_GRACE.total_seconds() + 60)
    # a planner that died sending is planned again after the plan's grace, whatever the queue holds
    assert increment_of(deployment, job).plans == 3
    queue.clear_messages()


def test_an_entra_base_with_a_plain_source_still_diffs(deployment: Deployment, blobs: ContainerClient):
    """s0 taken while the disk's data access took Entra ID, s1 after it was switched off."""
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    deployment.world.write_disk(disk, 0, 3 * MIB, 1)
    deployment.fleet.take_snapshot(disk, "s0", "eastus2", data_access_auth_mode="AzureActiveDirectory")
    deployment.advance(60)
    run_until_settled(deployment)
    deployment.world.write_disk(disk, 4 * MIB, 3 * MIB, 2)
    deployment.fleet.take_snapshot(disk, "s1", "eastus2")
    deployment.advance(60)
    deliver_events(deployment)
    _, second = stored_jobs(deployment)
    planned = increment_of(deployment, second)
    assert planned.state is IncrementState.COPYING and planned.entra and planned.base_id  # a diff, with the token
    run_until_settled(deployment)
    for job in stored_jobs(deployment):
        assert job.state is CopyState.SUCCEEDED
        assert_equal_to_source(deployment, blobs, job)


def test_a_renewal_that_dies_after_arm_granted_does_not_fail_the_increment(
    deployment: Deployment, blobs: ContainerClient, monkeypatch: pytest.MonkeyPatch
):
    """The renewal's claim stands 10 min; the plan's SAS was replaced by ARM's new grant;
    five deliveries 30 s apart poison the chunk long before the claim runs out."""
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    take(deployment, disk, "s0", [(0, 64 * MIB, 1)])
    deliver_events(deployment)
    texts = receive_all(deployment)  # held by the host meanwhile
    arm = deployment.replicator.arm
    real = arm.grant_read

    def granted_then_died(*args: Any, **kwargs: Any) -> str:
        real(*args, **kwargs)  # ARM issued a new SAS (the old one stops working)
        raise ArmError("Timeout", "the run died before writing the grant row", 504)

    monkeypatch.setattr(arm, "grant_read", granted_then_died)
    deployment.advance(GRANT_SECONDS - 20 * 60)
    with pytest.raises(Exception, match="died before"):
        deployment.tick(0)
    monkeypatch.undo()
    text = texts[0]
    for _ in range(5):  # the host's five deliveries, 30 s apart
        with pytest.raises(NoReadAccess):
            deployment.replicator.copy_chunk(text)
        deployment.advance(30)
    deployment.replicator.chunk_poisoned(text)
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.COPYING  # not failed: its read access was in doubt, so it is planned again
    run_until_settled(deployment)
    (job,) = stored_jobs(deployment)
    assert job.state is CopyState.SUCCEEDED
    assert_equal_to_source(deployment, blobs, job)
    assert deployment.world.open_grants() == []


def test_a_deleted_base_leaves_no_grant_row_counting_against_the_family(deployment: Deployment, blobs: ContainerClient):
    disk = deployment.fleet.create_disk(RG, "vm0-data0", "eastus2", size_gb=1)
    s0 = take(deployment, disk, "s0", [(0, MIB, 1)])
    run_until_settled(deployment)
    take(deployment, disk, "s1", [(2 * MIB, MIB, 2)])
    deployment.fleet.delete_snapshot(s0)  # the user's retention deletes the chain's base
    run_until_settled(deployment)
    assert [job.state for job in stored_jobs(deployment)] == [CopyState.SUCCEEDED] * 2
    assert deployment.store.all_grants() == []  # the deleted base's claim row does not count against the family
