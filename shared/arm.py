"""ARM Compute access: read snapshots, list them, start CopyStart copies.

One `ComputeManagementClient` per subscription, created once per process and kept. The
SDK's own retry policy absorbs throttling (429 with Retry-After) and transient 5xx with a
bounded backoff; what is left is raised as `ArmError` carrying ARM's code, classified so
the scheduler can tell a passing refusal from a permanent one.

Reads (GET, LIST) go through the same client and pipeline (`send_request`: credential,
retries, user agent) but are parsed straight from ARM's JSON into `Snapshot`: the SDK's
typed models cost about 0.27 ms of CPU per listed snapshot, four fifths of a LIST page's
client time, for the dozen fields snapcopy reads. The CopyStart PUT keeps the typed model.

It must not decide anything about copies: it reads, starts and reports ARM's answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    DecodeError,
    DeserializationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import CreationData, Encryption, GrantAccessData, SnapshotProperties
from azure.mgmt.compute.models import Snapshot as SnapshotModel
from azure.mgmt.core.exceptions import ARMErrorFormat

from shared.arm_bodies import snapshot_from_arm
from shared.ids import InvalidResourceId, ResourceGroupId, ResourceId, Scope
from shared.model import STANDARD_SPEED, CopyOrder, Snapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

# Bounded retries inside the SDK pipeline: ~0.8 s, 1.6 s, 3.2 s (capped at 30 s), and any
# Retry-After ARM sends. Beyond that the failure surfaces and the next tick tries again.
RETRY_SETTINGS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 30,
}
# ARM's Retry-After is honoured inside one call up to this many seconds: a trigger has a
# time budget, so a longer wait is not sat out in the SDK. The error then carries ARM's
# Retry-After, and GuardedArm leaves the subscription alone for all of it.
RETRY_AFTER_CAP = 30.0
# No ARM call may hang a trigger: connect within 10 s, and an answer within 60 s.
TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60}
_RETRY_KEYS = (
    "retry_total",
    "retry_backoff_factor",
    "retry_backoff_max",
    "retry_connect",
    "retry_read",
    "retry_status",
)
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# The Compute API version of our reads: the one azure-mgmt-compute sends for snapshots
# (a test keeps them equal). ARM refuses incremental CopyStart before 2020-12-01.
API_VERSION = "2026-03-02"
CUSTOMER_KEY = "EncryptionAtRestWithCustomerKey"  # a copy encrypted through a disk encryption set
_SNAPSHOTS = "/providers/Microsoft.Compute/snapshots"


class ArmError(Exception):
    """An ARM call failed after retries; `code` is ARM's error code."""

    def __init__(self, code: str, message: str, status: int | None, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after  # seconds, from ARM's Retry-After header, when it sent one

    @property
    def throttled(self) -> bool:
        """ARM is shedding load for this subscription: back off instead of asking again."""
        return self.status == 429

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in _RETRYABLE_STATUS


class ArmRetryPolicy(RetryPolicy[Any, Any]):
    """The SDK's retry policy, waiting out ARM's Retry-After only up to RETRY_AFTER_CAP."""

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, RETRY_AFTER_CAP)


class ComputeApi(Protocol):
    """What the service needs from ARM; `ArmCompute` is the one implementation."""

    def get_snapshot(self, snapshot_id: ResourceId) -> Snapshot | None: ...

    def close(self) -> None: ...

    def list_snapshots(self, group: ResourceGroupId) -> list[Snapshot]: ...

    def list_subscription_snapshots(self, subscription: str) -> list[Snapshot]: ...

    def disk_exists(self, disk_id: ResourceId) -> bool: ...

    def delete_snapshot(self, snapshot_id: ResourceId) -> None: ...

    def start_copy(self, order: CopyOrder) -> Snapshot | None: ...

    def grant_read(self, snapshot_id: ResourceId, seconds: int) -> str: ...

    def revoke_read(self, snapshot_id: ResourceId) -> None: ...


ResponseSeen = Callable[[str, int], None]  # (method, status) of every HTTP answer, retries included


class _Answers(SansIOHTTPPolicy[Any, Any]):
    """Tells a listener about every answer ARM gives (each retry is a request of its own)."""

    def __init__(self, seen: ResponseSeen) -> None:
        self._seen = seen

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        self._seen(request.http_request.method, response.http_response.status_code)


class ArmCompute:
    """The Compute client wrapper: typed snapshots in, ArmError out."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        endpoint: str,
        ca_bundle: str | None = None,
        client_options: dict[str, Any] | None = None,
        on_response: ResponseSeen | None = None,
    ) -> None:
        """`client_options`: keyword arguments for each ComputeManagementClient (its retry
        settings by default: RETRY_SETTINGS, applied by an ArmRetryPolicy unless the
        options bring a `retry_policy` of their own; TIMEOUTS unless they set theirs)."""
        self._credential = credential
        self._endpoint = endpoint
        self._ca_bundle = ca_bundle
        self._options = RETRY_SETTINGS if client_options is None else client_options
        self._on_response = on_response  # the metrics' ARM request and throttling counts
        self._clients: dict[str, ComputeManagementClient] = {}
        self._lock = threading.Lock()

    def _client(self, subscription: str) -> ComputeManagementClient:
        key = subscription.lower()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                options: dict[str, Any] = {**TIMEOUTS, **self._options}
                if "retry_policy" not in options:
                    retry = {key: options.pop(key) for key in _RETRY_KEYS if key in options}
                    options["retry_policy"] = ArmRetryPolicy(**retry)
                if self._ca_bundle:
                    options["connection_verify"] = self._ca_bundle
                if self._on_response is not None:
                    options["per_retry_policies"] = [
                        *options.get("per_retry_policies", []),
                        _Answers(self._on_response),
                    ]
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
        group = snapshot_id.group
        try:
            body = self._read(snapshot_id.subscription, _url(f"{group}{_SNAPSHOTS}/{snapshot_id.name}"))
        except ArmError as error:
            if error.status == 404:
                return None
            raise
        try:
            return snapshot_from_arm(body)
        except (InvalidResourceId, ValueError, TypeError) as error:  # passing, we hope: read it again later
            raise ArmError("InvalidResponse", f"ARM's body for {snapshot_id} cannot be read: {error}", None) from error

    def list_snapshots(self, group: ResourceGroupId) -> list[Snapshot]:
        """Every snapshot in a resource group (following nextLink)."""
        return self._list(group.subscription, _url(f"{group}{_SNAPSHOTS}"), str(group))

    def list_subscription_snapshots(self, subscription: str) -> list[Snapshot]:
        """Every snapshot in a subscription: backfill looks for a disk's snapshots in any group."""
        return self._list(subscription, _url(f"{Scope(subscription)}{_SNAPSHOTS}"), f"subscription {subscription}")

    def _read(self, subscription: str, url: str) -> dict[str, Any]:
        """GET one ARM URL (relative to the endpoint, or a nextLink) through the client's
        pipeline; ARM's error body becomes an ArmError, as from the SDK's own operations."""
        client = self._client(subscription)
        response = _call(lambda: _checked(client.send_request(HttpRequest("GET", url))))
        try:
            body = response.json()
        except ValueError as error:  # a torn or non-JSON body: ask again later
            raise ArmError("InvalidResponse", f"ARM answered GET {url} with unreadable JSON: {error}", None) from error
        if not isinstance(body, dict):
            raise ArmError(
                "InvalidResponse", f"ARM answered GET {url} with {type(body).__name__}", response.status_code
            )
        return body

    def _list(self, subscription: str, first: str, where: str) -> list[Snapshot]:
        snapshots: list[Snapshot] = []
        url: str | None = first
        while url:
            page = self._read(subscription, url)
            for item in page.get("value") or []:
                try:
                    snapshots.append(snapshot_from_arm(item))
                except (InvalidResourceId, ValueError, TypeError) as error:
                    log.warning("skipping a snapshot ARM listed in %s that snapcopy cannot read: %s", where, error)
            url = page.get("nextLink") or None
        return snapshots

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

    def grant_read(self, snapshot_id: ResourceId, seconds: int) -> str:
        """Read access to a snapshot for `seconds` (the diff method): its SAS URL. Azure
        lets at most five snapshots of a family hold one at once; revoke when done."""
        client = self._client(snapshot_id.subscription)
        access = GrantAccessData(access="Read", duration_in_seconds=seconds)
        group, name = snapshot_id.resource_group, snapshot_id.name
        poller = _call(lambda: client.snapshots.begin_grant_access(group, name, access))
        granted = _call(poller.result)
        if granted is None or not granted.access_sas:
            raise ArmError("NoAccessSas", f"granting read access to {snapshot_id} gave no SAS URL", None)
        return str(granted.access_sas)

    def revoke_read(self, snapshot_id: ResourceId) -> None:
        """End a snapshot's read access (every SAS of it stops working); none is fine."""
        client = self._client(snapshot_id.subscription)
        group, name = snapshot_id.resource_group, snapshot_id.name
        try:
            poller = _call(lambda: client.snapshots.begin_revoke_access(group, name))
            _call(poller.result)
        except ArmError as error:
            if error.status != 404:
                raise  # a snapshot that is gone holds no access: nothing to revoke

    def start_copy(self, order: CopyOrder) -> Snapshot | None:
        """PUT the CopyStart copy; ARM copies in the background (a copy speed of "Enhanced"
        asks for provisioned bandwidth: `creationData.provisionedBandwidthCopySpeed`, API
        2023-10-02 on).

        The LRO is not awaited (polling=False): the timer reads progress anyway, and a
        retried PUT of the same name is an idempotent update. ARM may answer 200, 201 or
        202, with or without a body: the copy as ARM showed it, or None when the answer
        had no body snapcopy can read (accepted, outcome unknown: the caller reads it back).
        """
        speed, des, target_id = order.copy_speed, order.disk_encryption_set_id, order.target_id
        body = SnapshotModel(
            location=order.region,
            tags=order.tags,
            properties=SnapshotProperties(
                creation_data=CreationData(
                    create_option="CopyStart",
                    source_resource_id=str(order.source_id),
                    provisioned_bandwidth_copy_speed=None if speed == STANDARD_SPEED else speed,
                ),
                incremental=True,
                encryption=Encryption(type=CUSTOMER_KEY, disk_encryption_set_id=des) if des else None,
            ),
        )
        client = self._client(target_id.subscription)
        try:
            poller = _call(
                lambda: client.snapshots.begin_create_or_update(
                    target_id.resource_group, target_id.name, body, polling=False
                )
            )
        except ArmError as error:
            if error.status is not None and 200 <= error.status < 300:  # the SDK takes only 200 and 202
                log.warning("CopyStart %s answered %d: accepted; reading it back", target_id, error.status)
                return None
            raise
        try:
            made = poller.result()
            return None if made is None else snapshot_from_arm(made.as_dict())
        except (ValueError, TypeError, AttributeError, InvalidResourceId, DecodeError, DeserializationError) as error:
            log.warning("CopyStart %s accepted; its answer could not be read (%s): reading it back", target_id, error)
            return None


def _call(action: Callable[[], T]) -> T:
    try:
        return action()
    except ResourceNotFoundError as error:
        raise ArmError(_code(error) or "ResourceNotFound", _message(error), 404) from error
    except HttpResponseError as error:
        raise ArmError(
            _code(error) or "HttpError", _message(error), error.status_code, retry_after=_retry_after(error)
        ) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise ArmError("ConnectionError", str(error), None) from error


def _retry_after(error: HttpResponseError) -> float | None:
    """ARM's Retry-After (seconds; an HTTP date is read as no hint)."""
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def _checked(response: HttpResponse) -> HttpResponse:
    """The SDK operations' error handling for a raw request: 404 as ResourceNotFoundError,
    anything but 200 as HttpResponseError, both with ARM's error code parsed."""
    if response.status_code == 404:
        raise ResourceNotFoundError(response=response, error_format=ARMErrorFormat)
    if response.status_code != 200:
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    return response


def _url(path: str) -> str:
    """A read's URL, relative to the endpoint: the ARM path (quoted) at API_VERSION."""
    return f"{quote(path)}?api-version={API_VERSION}"


def _code(error: HttpResponseError) -> str | None:
    if error.error is not None and error.error.code:
        return str(error.error.code)
    return None


def _message(error: HttpResponseError) -> str:
    if error.error is not None and error.error.message:
        return str(error.error.message)
    return str(error.message or error)
