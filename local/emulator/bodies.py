"""Request bodies: the fields the emulator reads from disk and snapshot PUT/PATCH bodies,
refused as ARM refuses them (400, `InvalidParameter` unless ARM says otherwise)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .background import MAX_INSTANT_ACCESS_MINUTES, MIN_INSTANT_ACCESS_MINUTES
from .errors import ArmError, bad_request
from .ids import ResourceId

_COPY_SPEEDS = frozenset({"None", "Enhanced"})
PLATFORM_KEY = "EncryptionAtRestWithPlatformKey"
CUSTOMER_KEY = "EncryptionAtRestWithCustomerKey"
# EncryptionType in the Compute REST spec: the two that need a disk encryption set
CUSTOMER_KEY_TYPES = frozenset({"EncryptionAtRestWithCustomerKey", "EncryptionAtRestWithPlatformAndCustomerKeys"})
_DES_RE = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[-\w._()]{1,90}"
    r"/providers/Microsoft\.Compute/diskEncryptionSets/[A-Za-z0-9_][-A-Za-z0-9_]{0,79}$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Encryption:
    """`properties.encryption`: platform-managed keys, or a customer's through a disk encryption set."""

    type: str = PLATFORM_KEY
    disk_encryption_set_id: str | None = None

    @property
    def customer_key(self) -> bool:
        return self.type in CUSTOMER_KEY_TYPES

    def same_set(self, other: Encryption) -> bool:
        return (self.disk_encryption_set_id or "").lower() == (other.disk_encryption_set_id or "").lower()

    def to_arm(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type}
        if self.disk_encryption_set_id is not None:
            body["diskEncryptionSetId"] = self.disk_encryption_set_id
        return body


def encryption_of(properties: Mapping[str, Any]) -> Encryption | None:
    """`properties.encryption` as sent (None: not sent), refused as ARM refuses a bad one."""
    value = properties.get("encryption")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise bad_request("properties.encryption must be an object.", "InvalidParameter")
    des = value.get("diskEncryptionSetId")
    kind = value.get("type") or (CUSTOMER_KEY if des else PLATFORM_KEY)
    if kind != PLATFORM_KEY and kind not in CUSTOMER_KEY_TYPES:
        allowed = sorted({PLATFORM_KEY, *CUSTOMER_KEY_TYPES})
        raise bad_request(f"properties.encryption.type must be one of {allowed}, got {kind!r}.", "InvalidParameter")
    if des is not None and (not isinstance(des, str) or not _DES_RE.match(des)):
        raise bad_request(
            f"properties.encryption.diskEncryptionSetId '{des}' is not a Microsoft.Compute/diskEncryptionSets id.",
            "LinkedInvalidPropertyId",
        )
    if kind in CUSTOMER_KEY_TYPES and des is None:
        raise bad_request(
            f"Encryption type '{kind}' needs properties.encryption.diskEncryptionSetId.", "InvalidParameter"
        )
    if kind == PLATFORM_KEY and des is not None:
        raise bad_request(f"Encryption type '{kind}' takes no diskEncryptionSetId.", "InvalidParameter")
    return Encryption(kind, des)


def required_object(parent: Mapping[str, Any], name: str, prefix: str = "") -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, Mapping):
        raise bad_request(
            f"Required parameter '{prefix}{name}' is missing (null) or not an object.", "InvalidParameter"
        )
    return value


MAX_TAGS = 50


def tags_of(body: Mapping[str, Any]) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
        raise bad_request("'tags' must be an object of string values.", "InvalidParameter")
    # ARM's tag limits (Azure docs, "Use tags to organize your Azure resources"): at most
    # 50 pairs per resource, names up to 512 characters, values up to 256, and no < > % & \ ? /
    if len(tags) > MAX_TAGS:
        raise bad_request(f"A resource may have at most {MAX_TAGS} tags; the request has {len(tags)}.", "InvalidTag")
    for name, value in tags.items():
        if not name or len(name) > 512 or any(c in name for c in "<>%&\\?/"):
            raise bad_request(
                f"The tag name '{name[:64]}' is invalid (1 to 512 characters, none of <>%&\\?/).", "InvalidTag"
            )
        if len(value) > 256:
            raise bad_request(f"The value of tag '{name[:64]}' is longer than 256 characters.", "InvalidTag")
    return {str(k): v for k, v in tags.items()}


def sku_of(body: Mapping[str, Any], allowed: frozenset[str], default: str) -> str:
    sku = body.get("sku")
    if sku is None:
        return default
    name = sku.get("name") if isinstance(sku, Mapping) else None
    if name not in allowed:
        raise bad_request(f"sku.name must be one of {sorted(allowed)}, got {name!r}.", "InvalidParameter")
    return str(name)


def os_type_of(properties: Mapping[str, Any]) -> str | None:
    os_type = properties.get("osType")
    if os_type not in (None, "Windows", "Linux"):
        raise bad_request("properties.osType must be 'Windows' or 'Linux'.", "InvalidParameter")
    return os_type if isinstance(os_type, str) else None


def extra_creation_data(creation: Mapping[str, Any]) -> dict[str, Any]:
    """The optional `creationData` fields a snapshot keeps and echoes: `provisionedBandwidthCopySpeed`
    and `instantAccessDurationMinutes` (60-300, as the instant access docs say; the REST spec
    only says >= 1)."""
    extra: dict[str, Any] = {}
    speed = creation.get("provisionedBandwidthCopySpeed")
    if speed is not None:
        if speed not in _COPY_SPEEDS:
            raise bad_request(
                f"provisionedBandwidthCopySpeed must be one of {sorted(_COPY_SPEEDS)}.", "InvalidParameter"
            )
        extra["provisionedBandwidthCopySpeed"] = speed
    minutes = creation.get("instantAccessDurationMinutes")
    if minutes is not None:
        if (
            not isinstance(minutes, int)
            or isinstance(minutes, bool)
            or not MIN_INSTANT_ACCESS_MINUTES <= minutes <= MAX_INSTANT_ACCESS_MINUTES
        ):
            raise bad_request(
                "properties.creationData.instantAccessDurationMinutes must be an integer from "
                f"{MIN_INSTANT_ACCESS_MINUTES} to {MAX_INSTANT_ACCESS_MINUTES}, got {minutes!r}.",
                "InvalidParameter",
            )
        extra["instantAccessDurationMinutes"] = minutes
    return extra


def same_location(rid: ResourceId, existing: str, requested: str) -> None:
    if existing != requested:
        raise ArmError(
            409,
            "InvalidResourceLocation",
            f"The resource '{rid.name}' already exists in location '{existing}' in resource group "
            f"'{rid.resource_group}'. A resource with the same name cannot be created in location "
            f"'{requested}'.",
        )
