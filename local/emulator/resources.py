"""Disks and snapshots as the emulator stores them, and their ARM REST bodies.

Body shapes follow Azure's REST examples (DiskRP 2024-03-02) and `shared/samples/arm-*.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .background import BackgroundCopy
from .bodies import Encryption
from .clock import arm_time
from .config import GIB
from .contents import DiskContents, Image
from .copies import Copy
from .ids import ResourceId


def _common_properties() -> dict[str, Any]:
    """Defaults every disk and snapshot body shows; fresh each time, since callers may mutate bodies."""
    return {
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll",
        "publicNetworkAccess": "Enabled",
        "dataAccessAuthMode": "None",
    }


_SKU_TIERS = {
    "Standard_LRS": "Standard",
    "Standard_ZRS": "Standard",
    "Premium_LRS": "Premium",
    "Premium_ZRS": "Premium",
    "StandardSSD_LRS": "Standard",
    "StandardSSD_ZRS": "Standard",
    "PremiumV2_LRS": "Premium",  # `az disk show` of a Premium SSD v2 disk
    "UltraSSD_LRS": "Ultra",  # resource SKUs list
}
SNAPSHOT_SKUS = frozenset({"Standard_LRS", "Standard_ZRS", "Premium_LRS"})
DISK_SKUS = frozenset(_SKU_TIERS)


def _envelope(rid: ResourceId, location: str, tags: dict[str, str], sku: str) -> dict[str, Any]:
    return {
        "id": rid.arm_id,
        "name": rid.name,
        "type": rid.type,
        "location": location,
        "tags": dict(tags),
        "sku": {"name": sku, "tier": _SKU_TIERS[sku]},
    }


@dataclass
class Disk:
    """A managed disk; `family_id` is what all of its incremental snapshots share."""

    rid: ResourceId
    location: str
    tags: dict[str, str]
    sku: str
    size_gb: int
    os_type: str | None
    unique_id: str
    family_id: str
    time_created: datetime
    encryption: Encryption = field(default_factory=Encryption)
    contents: DiskContents | None = None  # what its snapshots capture (set when it is created)

    def to_arm(self, now: datetime, provisioning_state: str = "Succeeded") -> dict[str, Any]:
        """`now` is unused (disks do not progress); it keeps one signature for all resources."""
        properties: dict[str, Any] = {
            "creationData": {"createOption": "Empty"},
            "diskSizeGB": self.size_gb,
            "diskSizeBytes": self.size_gb * GIB,
            "uniqueId": self.unique_id,
            "timeCreated": arm_time(self.time_created),
            "provisioningState": provisioning_state,
            "diskState": "Unattached",
            **_common_properties(),
            "encryption": self.encryption.to_arm(),
        }
        if self.os_type is not None:
            properties["osType"] = self.os_type
        return {**_envelope(self.rid, self.location, self.tags, self.sku), "properties": properties}


@dataclass
class Snapshot:
    """A snapshot of a disk (`Copy`) or a cross-region copy of a snapshot (`CopyStart`, with `copy`).

    A snapshot of a Premium SSD v2 or Ultra disk also has its own `background` copy.
    """

    rid: ResourceId
    location: str
    tags: dict[str, str]
    sku: str
    create_option: str
    source_id: str
    source_unique_id: str
    size_gb: int
    incremental: bool
    family_id: str | None
    os_type: str | None
    unique_id: str
    time_created: datetime
    copy: Copy | None = None
    background: BackgroundCopy | None = None
    extra_creation_data: dict[str, Any] = field(default_factory=dict)
    encryption: Encryption = field(default_factory=Encryption)
    image: Image | None = None  # the disk's contents when it was taken (a CopyStart copy: its source's)
    sas_until: datetime | None = None  # read access granted until then (revoking clears it)
    data_access_auth_mode: str = "None"  # AzureActiveDirectory: a SAS read also needs an Entra token

    @property
    def size_bytes(self) -> int:
        return self.size_gb * GIB

    def usable_as_copy_source(self, now: datetime) -> bool:
        """Provisioned, and if it is itself a copy, a finished one."""
        return self.copy is None or self.copy.state(now) == "succeeded"

    def access_state(self, now: datetime) -> str:
        """`snapshotAccessState`: a CopyStart target is `Pending` until its copy reaches 100 %
        (for ever, if it failed); a Premium SSD v2 / Ultra snapshot follows its background copy."""
        if self.copy is not None:
            return "Available" if self.copy.percent(now) >= 100.0 else "Pending"
        if self.background is not None:
            return self.background.access_state(now)
        return "Available"

    def to_arm(self, now: datetime, provisioning_state: str = "Succeeded") -> dict[str, Any]:
        properties: dict[str, Any] = {
            "creationData": {
                "createOption": self.create_option,
                "sourceResourceId": self.source_id,
                "sourceUniqueId": self.source_unique_id,
                **self.extra_creation_data,
            },
            "diskSizeGB": self.size_gb,
            "diskSizeBytes": self.size_bytes,
            "incremental": self.incremental,
            "timeCreated": arm_time(self.time_created),
            "provisioningState": provisioning_state,
            "uniqueId": self.unique_id,
            "diskState": "ActiveSAS" if self.sas_until is not None and now < self.sas_until else "Unattached",
            **_common_properties(),
            "dataAccessAuthMode": self.data_access_auth_mode,
            "encryption": self.encryption.to_arm(),
            "snapshotAccessState": self.access_state(now),
        }
        if self.os_type is not None:
            properties["osType"] = self.os_type
        if self.family_id is not None:
            properties["incrementalSnapshotFamilyId"] = self.family_id
        if self.copy is not None:
            properties["completionPercent"] = self.copy.percent(now)
            if self.copy.error is not None:
                properties["copyCompletionError"] = self.copy.error.to_arm()
        elif self.background is not None:
            properties["completionPercent"] = self.background.percent(now)
        return {**_envelope(self.rid, self.location, self.tags, self.sku), "properties": properties}
