"""Encryption rules the emulator enforces, as Azure does: a disk and all of its incremental
snapshots share one disk encryption set, and a customer-key source's copy needs one."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.models import (
    CreationData,
    Disk,
    DiskProperties,
    Encryption,
    Snapshot,
    SnapshotProperties,
)

from local.emulator import VirtualClock, World

from .conftest import RG, SOURCE_REGION, SUB, TARGET_REGION, Arm

pytestmark = pytest.mark.emulator

DES = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/diskEncryptionSets/des-source"
DES_TARGET = DES.replace("des-source", "des-target")
CMK = "EncryptionAtRestWithCustomerKey"


def cmk_disk(arm: Arm, name: str = "cmk0") -> Disk:
    body = Disk(
        location=SOURCE_REGION,
        properties=DiskProperties(
            creation_data=CreationData(create_option="Empty"),
            disk_size_gb=64,
            encryption=Encryption(type=CMK, disk_encryption_set_id=DES),
        ),
    )
    return arm.client.disks.begin_create_or_update(RG, name, body).result()


def encrypted_copy(arm: Arm, source: Snapshot, des: str | None, name: str | None = None) -> Any:
    assert source.id is not None
    body = Snapshot(
        location=TARGET_REGION,
        properties=SnapshotProperties(
            creation_data=CreationData(create_option="CopyStart", source_resource_id=source.id),
            incremental=True,
            encryption=Encryption(type=CMK, disk_encryption_set_id=des) if des else None,
        ),
    )
    target = name or f"{source.name}-{TARGET_REGION}"
    return arm.client.snapshots.begin_create_or_update(RG, target, body, polling=False).result()


def test_snapshots_of_a_customer_key_disk_carry_its_encryption_set(arm: Arm):
    disk = cmk_disk(arm)
    snap = arm.snapshot(disk, "cmk0-s0")
    assert snap.encryption is not None
    assert snap.encryption.type == CMK and snap.encryption.disk_encryption_set_id == DES
    plain = arm.snapshot(arm.disk("plain0"), "plain0-s0")
    assert plain.encryption is not None and plain.encryption.type == "EncryptionAtRestWithPlatformKey"


def test_a_customer_key_source_is_copied_only_with_a_set(arm: Arm, world: World):
    snap = arm.snapshot(cmk_disk(arm), "cmk0-s0")
    with pytest.raises(HttpResponseError) as caught:
        encrypted_copy(arm, snap, None)
    assert caught.value.status_code == 400 and "customer-managed key" in str(caught.value.message)
    copy = encrypted_copy(arm, snap, DES_TARGET)
    assert copy.encryption.disk_encryption_set_id == DES_TARGET
    assert world.counters()["refusals"]["encryption"] == 1


def test_every_copy_of_a_family_in_a_region_uses_one_set(arm: Arm, world: World):
    disk = cmk_disk(arm)
    first = arm.snapshot(disk, "cmk0-s0")
    encrypted_copy(arm, first, DES_TARGET)
    clock = world.clock
    assert isinstance(clock, VirtualClock)
    clock.advance(3600)  # the first copy is done
    second = arm.snapshot(disk, "cmk0-s1")
    with pytest.raises(HttpResponseError) as caught:
        encrypted_copy(arm, second, DES_TARGET.replace("des-target", "des-other"))
    assert caught.value.status_code == 400 and "same disk encryption set" in str(caught.value.message)
    assert encrypted_copy(arm, second, DES_TARGET).encryption.disk_encryption_set_id == DES_TARGET


def test_a_bad_encryption_body_is_refused(arm: Arm):
    disk = cmk_disk(arm)
    snap = arm.snapshot(disk, "cmk0-s0")
    for des in ("/subscriptions/x/resourceGroups/r/providers/Microsoft.Compute/disks/d", "not-an-id"):
        with pytest.raises(HttpResponseError) as caught:
            encrypted_copy(arm, snap, des)
        assert caught.value.status_code == 400
    body = Snapshot(
        location=SOURCE_REGION,
        properties=SnapshotProperties(
            creation_data=CreationData(create_option="Copy", source_resource_id=disk.id),
            incremental=True,
            encryption=Encryption(type="EncryptionAtRestWithPlatformKey"),
        ),
    )
    with pytest.raises(HttpResponseError) as caught:
        arm.client.snapshots.begin_create_or_update(RG, "cmk0-s9", body).result()
    assert "same disk encryption set" in str(caught.value.message)
