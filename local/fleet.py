"""The user's side of the local world: disks and incremental snapshots made through the
real azure-mgmt-compute SDK against the ARM emulator (as a backup job would in Azure)."""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    CreationData,
    Disk,
    DiskProperties,
    DiskSku,
    Encryption,
    Snapshot,
    SnapshotProperties,
)

from local.emulator.credential import EmulatorCredential


class Fleet:
    """Creates disks and snapshots in one subscription of the emulated ARM."""

    def __init__(self, url: str, ca_path: str, subscription: str) -> None:
        self.subscription = subscription
        self.ca_path = ca_path
        self.client = ComputeManagementClient(
            EmulatorCredential("fleet-local"),  # type: ignore[arg-type]
            subscription,
            base_url=url,
            connection_verify=ca_path,
            polling_interval=0,
        )

    def create_disk(
        self,
        resource_group: str,
        name: str,
        location: str,
        size_gb: int = 128,
        *,
        sku: str | None = None,
        disk_encryption_set_id: str | None = None,
    ) -> str:
        """A disk; `sku` e.g. PremiumV2_LRS, whose snapshots run a background copy first;
        `disk_encryption_set_id`: encrypted with a customer-managed key (its snapshots too)."""
        encryption = (
            Encryption(type="EncryptionAtRestWithCustomerKey", disk_encryption_set_id=disk_encryption_set_id)
            if disk_encryption_set_id
            else None
        )
        body = Disk(
            location=location,
            sku=DiskSku(name=sku) if sku else None,
            properties=DiskProperties(
                creation_data=CreationData(create_option="Empty"), disk_size_gb=size_gb, encryption=encryption
            ),
        )
        disk = self.client.disks.begin_create_or_update(resource_group, name, body).result()
        assert disk.id is not None
        return disk.id

    def take_snapshot(
        self,
        disk_id: str,
        name: str,
        location: str,
        *,
        incremental: bool = True,
        resource_group: str | None = None,
        tags: dict[str, str] | None = None,
        data_access_auth_mode: str | None = None,
    ) -> str:
        """Snapshot a disk (into the disk's resource group unless told otherwise);
        `data_access_auth_mode` AzureActiveDirectory: its SAS reads also take an Entra token."""
        resource_group = resource_group or disk_id.split("/")[4]
        body = Snapshot(
            location=location,
            tags=tags,
            properties=SnapshotProperties(
                creation_data=CreationData(create_option="Copy", source_resource_id=disk_id),
                incremental=incremental,
                data_access_auth_mode=data_access_auth_mode,
            ),
        )
        snapshot = self.client.snapshots.begin_create_or_update(resource_group, name, body).result()
        assert snapshot.id is not None
        return snapshot.id

    def snapshot_tags(self, snapshot_id: str) -> dict[str, str]:
        """The tags ARM shows on a snapshot of this fleet's subscription."""
        parts = snapshot_id.split("/")
        return dict(self.client.snapshots.get(parts[4], parts[8]).tags or {})

    def snapshot_exists(self, snapshot_id: str) -> bool:
        parts = snapshot_id.split("/")
        try:
            self.client.snapshots.get(parts[4], parts[8])
        except ResourceNotFoundError:
            return False
        return True

    def delete_snapshot(self, snapshot_id: str) -> None:
        parts = snapshot_id.split("/")
        self.client.snapshots.begin_delete(parts[4], parts[8]).result()

    def close(self) -> None:
        self.client.close()
