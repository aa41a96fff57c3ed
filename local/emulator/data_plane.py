"""The disks' data, for the diff copy method: what VMs write to disks, read access to
snapshots (grant / revoke, at most five snapshots of a family at once), and what a SAS
reads (the blob endpoint in `blob_api.py`).

A mixin of `World`: it takes the world's lock and state like every other world method.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .access import Grant, SasRefused
from .clock import Clock, arm_time
from .contents import DiskContents, Image
from .errors import ArmError, bad_request, not_found
from .ids import ResourceId, parse_resource_id
from .operations import Operation

if TYPE_CHECKING:
    from .world import _State

SAS_CONTAINER = "snapshot"  # the SAS URL's container (Azure's is random; its blob is `abcd`)
SAS_VERSION = "2018-03-28"


class DataPlane:
    """Disk writes, snapshot access, and SAS reads."""

    clock: Clock
    _lock: threading.RLock
    _state: _State

    # -- what VMs do to disks ------------------------------------------------------------

    def write_disk(self, disk_id: str, start: int, length: int, seed: int) -> None:
        """Write `length` bytes of `seed`'s pattern at `start` (whole 512-byte pages)."""
        with self._lock:
            self._contents(disk_id).write(start, length, seed)

    def clear_disk(self, disk_id: str, start: int, length: int) -> None:
        """Trim pages: they read as zeros and leave the allocated ranges."""
        with self._lock:
            self._contents(disk_id).clear(start, length)

    def _contents(self, disk_id: str) -> DiskContents:
        rid = parse_resource_id(disk_id, "disk id")
        disk = self._state.disks.get(rid.key)
        if disk is None or disk.contents is None:
            raise not_found(rid.type, rid.name, rid.resource_group)
        return disk.contents

    def snapshot_image(self, snapshot_id: str) -> Image:
        """What a snapshot holds (tests compare copies with it, byte for byte)."""
        rid = parse_resource_id(snapshot_id, "snapshot id")
        with self._lock:
            snapshot = self._state.snapshots.get(rid.key)
            if snapshot is None or snapshot.image is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            return snapshot.image

    # -- read access ---------------------------------------------------------------------

    def grant_access(self, rid: ResourceId, body: dict[str, Any], base_url: str) -> Operation:
        """`beginGetAccess`: a read-only SAS URL for `durationInSeconds` (an operation whose
        result is `{"accessSAS": ...}`)."""
        if body.get("access") != "Read":
            raise bad_request(f"access must be 'Read' for a snapshot, got {body.get('access')!r}.", "InvalidParameter")
        seconds = body.get("durationInSeconds")
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise bad_request("durationInSeconds must be an integer.", "InvalidParameter")
        with self._lock:
            now = self.clock.now()
            snapshot = self._state.snapshots.get(rid.key)
            if snapshot is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            if snapshot.copy is not None and snapshot.copy.state(now) != "succeeded":
                raise ArmError(409, "OperationNotAllowed", f"Snapshot '{rid.name}' is still being copied.")
            grant = self._state.grants.grant(rid.key, snapshot.family_id, seconds, now)
            snapshot.sas_until = grant.expires
            url = sas_url(base_url, grant)
            return self._state.operations.start(rid, snapshot.location, now, {"accessSAS": url})

    def revoke_access(self, rid: ResourceId) -> Operation:
        """`endGetAccess`: every SAS of the snapshot stops working (revoking none is fine)."""
        with self._lock:
            now = self.clock.now()
            snapshot = self._state.snapshots.get(rid.key)
            if snapshot is None:
                raise not_found(rid.type, rid.name, rid.resource_group)
            self._state.grants.revoke(rid.key)
            snapshot.sas_until = None
            return self._state.operations.start(rid, snapshot.location, now, {})

    def expire_access(self, snapshot_id: str | None = None) -> int:
        """Every live SAS (or one snapshot's) runs out now, as if its duration had passed
        (the chaos matrix's SAS expiry); how many."""
        with self._lock:
            now = self.clock.now()
            key = parse_resource_id(snapshot_id, "snapshot id").key if snapshot_id else None
            live = [g for k, g in self._state.grants.current.items() if g.active(now) and key in (None, k)]
            for grant in live:
                grant.expires = now
            return len(live)

    def access_counters(self) -> dict[str, int]:
        """Grants issued, refused for the family limit, and the most snapshots of one family
        that had access at once."""
        with self._lock:
            grants = self._state.grants
            return {
                "issued": grants.issued,
                "refused": grants.refused,
                "most_at_once": grants.most_at_once,
                "bytes_read": grants.bytes_read,
            }

    def count_bytes_read(self, count: int) -> None:
        with self._lock:
            self._state.grants.bytes_read += count

    def open_grants(self) -> list[str]:
        """The snapshots (lower-case ids) whose access is live now."""
        with self._lock:
            now = self.clock.now()
            return sorted(key for key, grant in self._state.grants.current.items() if grant.active(now))

    # -- what a SAS reads ----------------------------------------------------------------

    def blob(self, account: str, signature: str | None, bearer: str | None = None) -> tuple[Image, Grant]:
        """The image a SAS reads, or SasRefused (403) / a vanished snapshot (404) / an Entra
        token missing for a snapshot whose data access takes one (401, `EntraTokenRequired`)."""
        with self._lock:
            grant = self._state.grants.check(account, signature, self.clock.now())
            snapshot = self._state.snapshots.get(grant.snapshot_key)
            if snapshot is None or snapshot.image is None:
                raise SasRefused("BlobNotFound", "The specified blob does not exist.")
            if snapshot.data_access_auth_mode == "AzureActiveDirectory" and not disk_token(bearer):
                raise SasRefused(
                    ENTRA_REQUIRED, "This snapshot's data access needs an Entra token for https://disk.azure.com/."
                )
            return snapshot.image, grant

    def blob_modified(self, grant: Grant) -> str:
        with self._lock:
            snapshot = self._state.snapshots.get(grant.snapshot_key)
            return arm_time(snapshot.time_created if snapshot is not None else self.clock.now())


ENTRA_REQUIRED = "EntraTokenRequired"
DISK_RESOURCE = "https://disk.azure.com/"  # the audience Azure wants for disk data (the trailing slash too)


def disk_token(bearer: str | None) -> bool:
    """Whether a bearer token was asked for the disks' data audience. The emulator's
    tokens (local/emulator/credential.py) carry the scope they were asked for."""
    return bearer is not None and bearer.endswith("|" + DISK_RESOURCE + "/.default")


def sas_url(base_url: str, grant: Grant) -> str:
    """The SAS URL of a grant, in the shape of Azure's (`.../<account>/<container>/abcd?sv=…&sig=…`),
    path-style like every local storage endpoint."""
    expiry = grant.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    query = f"sv={SAS_VERSION}&sr=b&se={quote(expiry)}&sp=r&sig={grant.signature}"
    return f"{base_url}/{grant.account}/{SAS_CONTAINER}/abcd?{query}"
