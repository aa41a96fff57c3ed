"""The process-wide services: built once from validated settings, shared by every trigger.

The Functions host reuses a worker process across invocations, so the ARM clients, the
Table client and their connection pools are created on first use and kept (the Azure SDK
guidance: one long-lived client per service).

It is the only module that reads the environment and builds clients.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared import config
from shared.arm import RETRY_SETTINGS, ArmCompute
from shared.chunk_queue import ChunkQueue
from shared.config import Settings, load_settings
from shared.engine.parts import DiffIo
from shared.errors import ConfigError
from shared.service import Clock, Replicator, utc_now
from shared.store import StateStore
from shared.telemetry import EVENTS_LOGGER, Metrics
from shared.topic import EventGridTopic

log = logging.getLogger("snapcopy")

_lock = threading.Lock()
_process: dict[str, Replicator] = {}  # the one Replicator of this worker process, once built


def credential_for(settings: Settings) -> Any:
    """The identity snapcopy uses for ARM (and for Tables when no connection string is set)."""
    if settings.arm_credential == "managed-identity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=os.environ.get("AZURE_CLIENT_ID") or None)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def build(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    arm_retry: dict[str, Any] | None = None,
    client_options: dict[str, Any] | None = None,
    table_options: dict[str, Any] | None = None,
    credential: Any = None,
    metrics: Metrics | None = None,
) -> Replicator:
    """Wire a Replicator from settings (tests pass their own clock and shorter ARM backoff;
    `client_options` go to both SDK clients: the benchmark turns off proxy lookups;
    `table_options` to the Table client only: the harness's operation counter;
    `credential`: the offline world hands in the emulator's, which the settings cannot name;
    `metrics`: tests read theirs from the SDK's in-memory reader)."""
    if settings.arm_ca_bundle is not None and not os.path.isfile(settings.arm_ca_bundle):
        raise ConfigError("ARM_CA_BUNDLE", settings.arm_ca_bundle, "the path of a PEM file that exists")
    credential = credential or credential_for(settings)
    options = client_options or {}
    table = {**options, **(table_options or {})}
    if settings.connection_string:
        store = StateStore.from_connection_string(settings.connection_string, settings.table_name, **table)
    elif settings.table_endpoint is not None:
        store = StateStore.from_endpoint(settings.table_endpoint, settings.table_name, credential, **table)
    else:
        raise ConfigError("STATE_CONNECTION_STRING", "", "a connection string, or STATE_TABLE_ENDPOINT")
    arm_options = {**(RETRY_SETTINGS if arm_retry is None else arm_retry), **options}
    metrics = metrics or Metrics()
    arm = ArmCompute(
        credential,
        endpoint=settings.arm_endpoint,
        ca_bundle=settings.arm_ca_bundle,
        client_options=arm_options,
        on_response=metrics.arm_response,
    )
    topic = None
    if settings.notify_endpoint is not None:
        topic = EventGridTopic(
            settings.notify_endpoint, credential, source=settings.app_id, ca_bundle=settings.notify_ca_bundle
        )
    diff = diff_io(settings, credential, options) if settings.copies_by_diff else None
    return Replicator(settings, store, arm, clock, topic=topic, metrics=metrics, diff=diff)


def diff_io(settings: Settings, credential: Any, options: dict[str, Any] | None = None) -> DiffIo:
    """The diff method's chunk queue and target storage: by the managed identity in Azure;
    with STATE_CONNECTION_STRING (the local storage emulator), by its account key."""
    options = options or {}
    if settings.diff_queue_endpoint is not None:
        queue = ChunkQueue.from_endpoint(settings.diff_queue_endpoint, credential, **options)
    elif settings.connection_string:
        queue = ChunkQueue.from_connection_string(settings.connection_string, **options)
    else:
        raise ConfigError("DIFF_QUEUE_ENDPOINT", "", "the chunk queue's service URL (a policy copies by diff)")
    storage_credential = credential
    if settings.diff_queue_endpoint is None and settings.connection_string:
        storage_credential = account_key(settings.connection_string)
    services: dict[str, BlobServiceClient] = {}
    lock = threading.Lock()

    def containers(endpoint: str, container: str) -> ContainerClient:
        with lock:
            if endpoint not in services:
                services[endpoint] = BlobServiceClient(endpoint, credential=storage_credential, **options)
            return services[endpoint].get_container_client(container)

    return DiffIo(
        queue,
        containers,
        source_options={**options, **({"connection_verify": settings.arm_ca_bundle} if settings.arm_ca_bundle else {})},
        ranges=threading.BoundedSemaphore(settings.diff_parallel_ranges),
        credential=credential,
    )


def connection_parts(connection_string: str) -> dict[str, str]:
    """A storage connection string's `Name=value` parts (AccountName, BlobEndpoint, …)."""
    return dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)


def account_key(connection_string: str) -> AzureNamedKeyCredential:
    """The account name and key of a storage connection string (the local emulator's)."""
    parts = connection_parts(connection_string)
    if "AccountName" not in parts or "AccountKey" not in parts:
        raise ConfigError("STATE_CONNECTION_STRING", "(hidden)", "a connection string with AccountName and AccountKey")
    return AzureNamedKeyCredential(parts["AccountName"], parts["AccountKey"])


def poll_schedule() -> str:
    """POLL_SCHEDULE from the app settings: the timer's schedule, read when the app is indexed."""
    return config.poll_schedule(os.environ)


def prune_schedule() -> str:
    """PRUNE_SCHEDULE from the app settings, read when the app is indexed."""
    return config.prune_schedule(os.environ)


def sweep_schedule() -> str:
    """SWEEP_SCHEDULE from the app settings, read when the app is indexed."""
    return config.sweep_schedule(os.environ)


def export_metrics() -> bool:
    """Send the metrics, and the transitions as custom events, to Application Insights when
    the app has a connection string (the Azure Monitor distro; Entra ID auth from
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING, as infra sets it). No traces, and no other
    logs: the Functions host already collects the logs and the runs."""
    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(
            logger_name=EVENTS_LOGGER,
            disable_tracing=True,
            enable_live_metrics=False,
            enable_performance_counters=False,  # the platform measures the instances itself
        )
    except Exception as error:  # metrics must never stop replication
        log.error("metrics: cannot export to Application Insights (%s); replicating without them", error)
        return False
    return True


def replicator() -> Replicator:
    """The process's Replicator, built (and its settings validated) on first use."""
    with _lock:
        if "replicator" not in _process:
            try:
                settings = load_settings(os.environ)
            except ConfigError as error:
                log.critical("snapcopy cannot start: %s", error)
                raise
            if export_metrics():
                log.info("metrics: exported to Application Insights")
            _process["replicator"] = build(settings)
        return _process["replicator"]


def publish_notices() -> None:
    """After an HTTP request: publish the notices it committed (the triggers' entry points
    do their own). Nothing when no Replicator was built (its settings failed)."""
    with _lock:
        instance = _process.get("replicator")
    if instance is None:
        return
    try:
        instance.flush()
    except Exception:  # an answer already made must not turn into an error
        log.exception("notifications: publishing after a request failed; the timer resends")


def install(instance: Replicator | None) -> None:
    """Replace (or with None, forget) the process's Replicator: tests and the demo."""
    with _lock:
        _process.pop("replicator", None)
        if instance is not None:
            _process["replicator"] = instance
