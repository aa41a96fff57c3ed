"""Read access to snapshots and the blob endpoint behind their SAS URLs, through the
unmodified azure-mgmt-compute and azure-storage-blob clients: contents byte for byte,
page ranges, the managed-disk page-range diff, and Azure's rules (five snapshots of a
family with access at once, revoked or expired SAS refused)."""

from __future__ import annotations

import hashlib

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.core.rest import HttpResponse
from azure.mgmt.compute.models import GrantAccessData
from azure.storage.blob import BlobClient

from local.emulator import EmulatorServer, VirtualClock, World
from local.emulator.contents import PAGE
from local.emulator.credential import EmulatorCredential
from tests.emulator.conftest import RG, Arm

MIB = 1024 * 1024
pytestmark = pytest.mark.emulator


def grant(arm: Arm, name: str, seconds: int = 3600) -> str:
    access = GrantAccessData(access="Read", duration_in_seconds=seconds)
    sas = arm.client.snapshots.begin_grant_access(RG, name, access).result().access_sas
    assert isinstance(sas, str)
    return sas


def blob(emulator: EmulatorServer, sas: str) -> BlobClient:
    return BlobClient.from_blob_url(sas, connection_verify=str(emulator.ca_path))


def spans(ranges: list[dict[str, int]]) -> list[tuple[int, int]]:
    return [(r["start"], r["end"] + 1) for r in ranges]


def test_a_snapshot_reads_back_what_its_disk_held_when_it_was_taken(arm: Arm, world: World, emulator: EmulatorServer):
    disk = arm.disk("vm0-data0", size_gb=1)
    assert disk.id
    world.write_disk(disk.id, 0, 8 * MIB, seed=1)
    arm.snapshot(disk, "s0")
    world.write_disk(disk.id, 2 * MIB, PAGE, seed=2)  # after s0: s0 must not see it
    s0 = blob(emulator, grant(arm, "s0"))
    assert s0.get_blob_properties().size == 1024 * MIB
    assert [(r.start, r.end, r.cleared) for r in s0.list_page_ranges()] == [(0, 8 * MIB - 1, False)]
    data = s0.download_blob(offset=2 * MIB - PAGE, length=3 * PAGE).readall()
    image = world.snapshot_image(arm.get("s0").id or "")
    assert data == image.read(2 * MIB - PAGE, 3 * PAGE) and data[PAGE : 2 * PAGE] != bytes(PAGE)
    assert (
        hashlib.sha256(s0.download_blob(offset=0, length=8 * MIB).readall()).digest()
        == hashlib.sha256(image.read(0, 8 * MIB)).digest()
    )


def test_the_managed_disk_diff_gives_what_changed_and_what_was_cleared(
    arm: Arm, world: World, emulator: EmulatorServer
):
    disk = arm.disk("vm0-data0", size_gb=1)
    assert disk.id
    world.write_disk(disk.id, 0, 4 * MIB, seed=1)
    arm.snapshot(disk, "s0")
    world.write_disk(disk.id, MIB, PAGE * 4, seed=2)
    world.clear_disk(disk.id, 3 * MIB, MIB)
    world.write_disk(disk.id, 10 * MIB, 6 * MIB, seed=3)  # over 4 MiB in one range
    arm.snapshot(disk, "s1")
    arm.snapshot(disk, "s2")  # nothing changed since s1
    old, new, same = (grant(arm, name) for name in ("s0", "s1", "s2"))
    changed, cleared = blob(emulator, new).get_page_range_diff_for_managed_disk(old)
    assert spans(changed) == [(MIB, MIB + 4 * PAGE), (10 * MIB, 16 * MIB)]
    assert spans(cleared) == [(3 * MIB, 4 * MIB)]
    assert blob(emulator, same).get_page_range_diff_for_managed_disk(new) == ([], [])


def test_at_most_five_snapshots_of_a_family_have_access_at_once(arm: Arm, world: World):
    disk = arm.disk("vm0-data0", size_gb=1)
    for index in range(6):
        arm.snapshot(disk, f"s{index}")
    for index in range(5):
        grant(arm, f"s{index}")
    with pytest.raises(ResourceExistsError) as refused:  # the SDK maps every 409 of it so
        grant(arm, "s5")
    assert "At most 5 snapshots" in str(refused.value)
    assert world.access_counters()["refused"] == 1
    arm.client.snapshots.begin_revoke_access(RG, "s0").result()
    grant(arm, "s5")
    assert arm.get("s5").disk_state == "ActiveSAS" and arm.get("s0").disk_state == "Unattached"
    assert world.access_counters()["most_at_once"] == 5


def test_a_revoked_or_expired_sas_reads_nothing(arm: Arm, world: World, emulator: EmulatorServer, clock: VirtualClock):
    disk = arm.disk("vm0-data0", size_gb=1)
    arm.snapshot(disk, "s0")
    arm.snapshot(disk, "s1")
    revoked = blob(emulator, grant(arm, "s0"))
    arm.client.snapshots.begin_revoke_access(RG, "s0").result()
    with pytest.raises(ClientAuthenticationError):
        revoked.get_blob_properties()
    expiring = blob(emulator, grant(arm, "s1", seconds=600))
    expiring.get_blob_properties()
    clock.advance(601)
    with pytest.raises(HttpResponseError) as expired:
        expiring.download_blob(offset=0, length=PAGE).readall()
    assert expired.value.status_code == 403
    assert world.open_grants() == []


def test_a_snapshot_whose_data_access_takes_entra_id_reads_only_with_a_disk_token(
    arm: Arm, world: World, emulator: EmulatorServer
):
    disk = arm.disk("vm0-data0", size_gb=1)
    assert disk.id
    world.write_disk(disk.id, 0, MIB, seed=1)
    s0 = arm.snapshot(disk, "s0", data_access_auth_mode="AzureActiveDirectory")
    assert s0.data_access_auth_mode == "AzureActiveDirectory"
    sas = grant(arm, "s0")
    with pytest.raises(ClientAuthenticationError) as refused:  # the SAS alone: 401 with the challenge
        blob(emulator, sas).get_blob_properties()
    response = refused.value.response
    assert isinstance(response, HttpResponse)
    challenge = response.headers["WWW-Authenticate"]
    assert "resource_id=https://disk.azure.com/" in challenge and "authorization_uri=" in challenge
    # the SDK answers the challenge: a token for https://disk.azure.com//.default, then the read
    with_token = BlobClient.from_blob_url(sas, credential=EmulatorCredential(), connection_verify=str(emulator.ca_path))
    data = with_token.download_blob(offset=0, length=MIB).readall()
    assert data == world.snapshot_image(s0.id or "").read(0, MIB)
    with pytest.raises(HttpResponseError):
        arm.snapshot(disk, "s1", data_access_auth_mode="Certificates")


def test_a_deleted_source_is_gone_from_behind_its_sas_too(arm: Arm, world: World, emulator: EmulatorServer):
    disk = arm.disk("vm0-data0", size_gb=1)
    arm.snapshot(disk, "s0")
    sas = blob(emulator, grant(arm, "s0"))
    arm.client.snapshots.begin_delete(RG, "s0").result()
    with pytest.raises(HttpResponseError) as gone:
        list(sas.list_page_ranges())
    assert gone.value.status_code in (403, 404)


def test_a_long_diff_comes_in_pages_and_snapcopy_reads_every_page(arm: Arm, world: World, emulator: EmulatorServer):
    from shared.pageblobs import SourceSnapshot

    world.configure(page_ranges_per_answer=3)
    disk = arm.disk("vm0-data0", size_gb=1)
    assert disk.id
    arm.snapshot(disk, "s0")
    for index in range(8):
        world.write_disk(disk.id, index * 2 * MIB, PAGE, seed=index + 1)
    world.clear_disk(disk.id, 100 * MIB, MIB)
    arm.snapshot(disk, "s1")
    old, new = grant(arm, "s0"), grant(arm, "s1")
    first_page, _ = blob(emulator, new).get_page_range_diff_for_managed_disk(old)
    assert len(first_page) == 3  # the SDK's call answers one page only
    changed, cleared = SourceSnapshot(new, connection_verify=str(emulator.ca_path)).ranges(old)
    assert changed == [(index * 2 * MIB, index * 2 * MIB + PAGE) for index in range(8)]
    assert cleared == [(100 * MIB, 101 * MIB)]


def test_a_read_only_sas_refuses_writes_and_unaligned_page_lists(arm: Arm, emulator: EmulatorServer):
    disk = arm.disk("vm0-data0", size_gb=1)
    arm.snapshot(disk, "s0")
    sas = grant(arm, "s0")
    with pytest.raises(HttpResponseError) as refused:
        blob(emulator, sas).upload_page(b"x" * PAGE, offset=0, length=PAGE)
    assert refused.value.status_code == 403
    # the SDK refuses unaligned page lists itself; the endpoint does too, as Azure does
    unaligned = requests.get(
        sas + "&comp=pagelist", headers={"x-ms-range": "bytes=0-999"}, verify=str(emulator.ca_path), timeout=10
    )
    assert unaligned.status_code == 416 and unaligned.headers["x-ms-error-code"] == "InvalidPageRange"
