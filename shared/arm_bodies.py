"""ARM's JSON of a snapshot, read as snapcopy's Snapshot: only the fields snapcopy uses,
and a body it cannot read refused (ValueError), never guessed at.

Pure: shared/arm.py fetches the bodies.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.ids import ResourceId
from shared.model import CopyError, Snapshot


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} is {type(value).__name__}, not an object")
    return value


def _time(value: Any) -> datetime | None:
    """ARM's ISO 8601 time (7 fractional digits, offset or Z); naive times are UTC; None
    when ARM left it out (unknown, never a default: ordering depends on it)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def snapshot_from_arm(body: dict[str, Any]) -> Snapshot:
    """A snapshot resource as ARM's JSON has it → snapcopy's Snapshot (only what we use).

    Raises ValueError (or InvalidResourceId) for a body snapcopy cannot read."""
    if not isinstance(body, dict):
        raise ValueError(f"a snapshot is a JSON object, not {type(body).__name__}")
    if not body.get("id"):
        raise ValueError("snapshot without an id")
    props = _object(body.get("properties"), "properties")
    creation = _object(props.get("creationData"), "properties.creationData")
    error = _object(props.get("copyCompletionError"), "properties.copyCompletionError")
    encryption = _object(props.get("encryption"), "properties.encryption")
    size = props.get("diskSizeBytes")
    percent = props.get("completionPercent")
    return Snapshot(
        id=ResourceId.parse(str(body["id"]), kind="snapshots"),
        location=str(body.get("location") or "").replace(" ", "").lower(),
        incremental=bool(props.get("incremental")),
        family_id=str(props.get("incrementalSnapshotFamilyId") or "") or None,
        time_created=_time(props.get("timeCreated")),
        provisioning_state=str(props.get("provisioningState") or ""),
        create_option=str(creation.get("createOption") or ""),
        source_resource_id=creation.get("sourceResourceId") or None,
        tags={str(key): str(value) for key, value in _object(body.get("tags"), "tags").items()},
        size_bytes=int(size) if size is not None else None,
        completion_percent=float(percent) if percent is not None else None,
        unique_id=str(props.get("uniqueId") or ""),
        source_unique_id=str(creation.get("sourceUniqueId") or ""),
        access_state=str(props["snapshotAccessState"]) if props.get("snapshotAccessState") else None,
        sas_active=props.get("diskState") == "ActiveSAS",
        entra_data_access=props.get("dataAccessAuthMode") == "AzureActiveDirectory",
        encryption_type=str(encryption.get("type") or ""),
        disk_encryption_set_id=str(encryption.get("diskEncryptionSetId") or ""),
        copy_error=CopyError(str(error["errorCode"]), str(error.get("errorMessage") or ""))
        if error.get("errorCode")
        else None,
    )
