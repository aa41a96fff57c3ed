"""ARM Compute access: read snapshots, list them, start CopyStart copies.

One `ComputeManagementClient` per subscription, created once per process and kept. The
SDK's own retry policy absorbs throttling (429 with Retry-After) and transient 5xx with a
bounded backoff; what is left is raised as `ArmError` carrying ARM's code, classified so
the scheduler can tell a passing refusal from a permanent one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol, TypeVar

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import CreationData, SnapshotProperties
from azure.mgmt.compute.models import Snapshot as SnapshotModel

from shared.ids import InvalidResourceId, ResourceGroupId, ResourceId
from shared.model import CopyError, Snapshot
from shared.scheduler import StartRefusal

log = logging.getLogger(__name__)

T = TypeVar("T")

# Bounded retries inside the SDK pipeline: ~0.8 s, 1.6 s, 3.2 s (capped at 30 s), and any
# Retry-After ARM sends. Beyond that the failure surfaces and the next tick tries again.
RETRY_SETTINGS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 30,
}
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


class ArmError(Exception):
    """An ARM call failed after retries; `code` is ARM's error code."""

    def __init__(self, code: str, message: str, status: int | None) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in _RETRYABLE_STATUS

    def as_refusal(self) -> StartRefusal:
        """How a refused CopyStart should be treated (see scheduler.after_refusal)."""
        error = CopyError(self.code, self.message)
        if self.status == 404:
            return StartRefusal(error, retryable=False, source_missing=True)
        # 409 OperationNotAllowed: another copy of the family is in flight (perhaps not ours),
        # or the region is at its cap: both pass with time.
        passing = self.retryable or (self.status == 409 and self.code == "OperationNotAllowed")
        return StartRefusal(error, retryable=passing)


class EmulatorCredential:
    """A fixed bearer token for the local ARM emulator (config allows it on loopback only)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("snapcopy-local-emulator", int(datetime.now(UTC).timestamp()) + 3600)


class ComputeApi(Protocol):
    """What the service needs from ARM; `ArmCompute` is the one implementation."""

    def get_snapshot(self, snapshot_id: ResourceId) -> Snapshot | None: ...

    def close(self) -> None: ...

    def list_snapshots(self, group: ResourceGroupId) -> list[Snapshot]: ...

    def list_subscription_snapshots(self, subscription: str) -> list[Snapshot]: ...

    def disk_exists(self, disk_id: ResourceId) -> bool: ...

    def delete_snapshot(self, snapshot_id: ResourceId) -> None: ...

    def start_copy(
        self, source_id: ResourceId, target_id: ResourceId, region: str, tags: dict[str, str]
    ) -> Snapshot: ...


class ArmCompute:
    """The Compute client wrapper: typed snapshots in, ArmError out."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        endpoint: str,
        ca_bundle: str | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        """`client_options`: keyword arguments for each ComputeManagementClient (its retry
        policy by default: RETRY_SETTINGS)."""
        self._credential = credential
        self._endpoint = endpoint
        self._ca_bundle = ca_bundle
        self._options = RETRY_SETTINGS if client_options is None else client_options
        self._clients: dict[str, ComputeManagementClient] = {}
        self._lock = threading.Lock()

    def _client(self, subscription: str) -> ComputeManagementClient:
        key = subscription.lower()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                options: dict[str, Any] = dict(self._options)
                if self._ca_bundle:
                    options["connection_verify"] = self._ca_bundle
                client = ComputeManagementClient(self._credential, subscription, base_url=self._endpoint, **options)
                self._clients[key] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def get_snapshot(self, snapshot_id: ResourceId) -> Snapshot | None:
        """The snapshot, or None if ARM says it does not exist."""
        client = self._client(snapshot_id.subscription)
        try:
            model = _call(lambda: client.snapshots.get(snapshot_id.resource_group, snapshot_id.name))
        except ArmError as error:
            if error.status == 404:
                return None
            raise
        return to_snapshot(model)

    def list_snapshots(self, group: ResourceGroupId) -> list[Snapshot]:
        """Every snapshot in a resource group (the SDK follows nextLink)."""
        client = self._client(group.subscription)
        models = _call(lambda: list(client.snapshots.list_by_resource_group(group.resource_group)))
        return _readable(models, str(group))

    def list_subscription_snapshots(self, subscription: str) -> list[Snapshot]:
        """Every snapshot in a subscription: backfill looks for a disk's snapshots in any group."""
        client = self._client(subscription)
        models = _call(lambda: list(client.snapshots.list()))
        return _readable(models, f"subscription {subscription}")

    def disk_exists(self, disk_id: ResourceId) -> bool:
        client = self._client(disk_id.subscription)
        try:
            _call(lambda: client.disks.get(disk_id.resource_group, disk_id.name))
        except ArmError as error:
            if error.status == 404:
                return False
            raise
        return True

    def delete_snapshot(self, snapshot_id: ResourceId) -> None:
        """Delete a snapshot and wait for ARM to finish (used for failed copies of ours)."""
        client = self._client(snapshot_id.subscription)
        poller = _call(lambda: client.snapshots.begin_delete(snapshot_id.resource_group, snapshot_id.name))
        _call(poller.result)

    def start_copy(self, source_id: ResourceId, target_id: ResourceId, region: str, tags: dict[str, str]) -> Snapshot:
        """PUT the CopyStart copy; ARM answers 202 and copies in the background.

        The LRO is not awaited (polling=False): the timer reads progress from the listing
        anyway, and a retried PUT of the same name is an idempotent update.
        """
        body = SnapshotModel(
            location=region,
            tags=tags,
            properties=SnapshotProperties(
                creation_data=CreationData(create_option="CopyStart", source_resource_id=str(source_id)),
                incremental=True,
            ),
        )
        client = self._client(target_id.subscription)
        poller = _call(
            lambda: client.snapshots.begin_create_or_update(
                target_id.resource_group, target_id.name, body, polling=False
            )
        )
        return to_snapshot(poller.result())


def _call(action: Callable[[], T]) -> T:
    try:
        return action()
    except ResourceNotFoundError as error:
        raise ArmError(_code(error) or "ResourceNotFound", _message(error), 404) from error
    except HttpResponseError as error:
        raise ArmError(_code(error) or "HttpError", _message(error), error.status_code) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise ArmError("ConnectionError", str(error), None) from error


def _readable(models: list[SnapshotModel], where: str) -> list[Snapshot]:
    snapshots = []
    for model in models:
        try:
            snapshots.append(to_snapshot(model))
        except (InvalidResourceId, ValueError) as error:
            log.warning("skipping a snapshot ARM listed in %s that snapcopy cannot read: %s", where, error)
    return snapshots


def _code(error: HttpResponseError) -> str | None:
    if error.error is not None and error.error.code:
        return str(error.error.code)
    return None


def _message(error: HttpResponseError) -> str:
    if error.error is not None and error.error.message:
        return str(error.error.message)
    return str(error.message or error)


def _text(value: object) -> str:
    """Known values arrive as enum members, unknown ones as plain strings: ARM's spelling."""
    return str(value.value) if isinstance(value, Enum) else str(value)


def to_snapshot(model: SnapshotModel) -> Snapshot:
    """The SDK's typed model → snapcopy's Snapshot (only what we use)."""
    if not model.id:
        raise ValueError("snapshot without an id")
    props = model.properties or SnapshotProperties(creation_data=CreationData(create_option="Empty"))
    creation = props.creation_data
    error = props.copy_completion_error
    created = props.time_created or datetime.min.replace(tzinfo=UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return Snapshot(
        id=ResourceId.parse(model.id, kind="snapshots"),
        location=(model.location or "").replace(" ", "").lower(),
        incremental=bool(props.incremental),
        family_id=(props.incremental_snapshot_family_id or None),
        time_created=created,
        provisioning_state=props.provisioning_state or "",
        create_option=_text(creation.create_option) if creation and creation.create_option else "",
        source_resource_id=creation.source_resource_id if creation else None,
        tags=dict(model.tags or {}),
        size_bytes=props.disk_size_bytes,
        completion_percent=props.completion_percent,
        unique_id=props.unique_id or "",
        source_unique_id=(creation.source_unique_id or "") if creation else "",
        copy_error=CopyError(_text(error.error_code), error.error_message or "")
        if error and error.error_code
        else None,
    )
