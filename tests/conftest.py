"""Shared fixtures: a real Azurite for the session, a fresh table per test."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from local.azurite import Azurite
from local.emulator.clock import VirtualClock
from local.emulator.config import EmulatorConfig
from local.emulator.credential import EmulatorCredential
from local.emulator.server import EmulatorServer
from local.emulator.world import World
from local.fleet import Fleet
from local.host import FunctionHost, QueueRun
from local.tables import TableOperations, TableRows
from local.topic import TopicServer
from shared import runtime
from shared.config import load_settings
from shared.engine.reports import TickReport
from shared.service import Replicator
from shared.store import StateStore
from shared.telemetry import Metrics
from tests.builders import SUB


@pytest.fixture(scope="session")
def storage_connection_string() -> Iterator[str]:
    """Azurite started on free ports (or an outside one via SNAPCOPY_TEST_STORAGE)."""
    outside = os.environ.get("SNAPCOPY_TEST_STORAGE")
    if outside:
        yield outside
        return
    with Azurite.start() as azurite:
        yield azurite.connection_string


@pytest.fixture
def table_name() -> str:
    return "t" + uuid.uuid4().hex[:20]


@pytest.fixture
def table_operations() -> TableOperations:
    """Counts the Table requests of the client it is handed to (from outside snapcopy)."""
    return TableOperations()


@pytest.fixture
def table_rows(storage_connection_string: str, table_name: str) -> TableRows:
    """The test's own look at the raw rows (a second client, not counted)."""
    return TableRows.from_connection_string(storage_connection_string, table_name)


@pytest.fixture
def store(storage_connection_string: str, table_name: str, table_operations: TableOperations) -> StateStore:
    return StateStore.from_connection_string(storage_connection_string, table_name, **table_operations.options())


# --- the ARM emulator and a deployed snapcopy ------------------------------------------------

GIB = 1024**3
EMULATOR_START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
FAST_ARM_RETRY = {"retry_total": 2, "retry_backoff_factor": 0.01, "retry_backoff_max": 0.05}


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """The ARM emulator (real HTTPS, virtual clock) for the whole session."""
    world = World(VirtualClock(EMULATOR_START), EmulatorConfig(min_copy_seconds=60, copy_bytes_per_second=GIB))
    with EmulatorServer(world) as server:
        yield server


@pytest.fixture
def world(emulator: EmulatorServer) -> World:
    """The emulator's state, emptied for each test (its clock keeps running forward)."""
    emulator.world.reset()
    emulator.world.configure(cap=100, min_copy_seconds=60, copy_bytes_per_second=GIB)
    return emulator.world


@dataclass
class Deployment:
    """snapcopy configured from app settings and invoked as the Functions host would."""

    host: FunctionHost
    replicator: Replicator
    fleet: Fleet
    world: World
    operations: TableOperations
    table: TableRows
    reports: list[TickReport]

    @property
    def store(self) -> StateStore:
        return self.replicator.store

    def advance(self, seconds: float) -> None:
        clock = self.world.clock
        assert isinstance(clock, VirtualClock)
        clock.advance(seconds)

    def deliver(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.host.deliver_event(event)

    def rows(self, partition_prefix: str) -> list[dict[str, Any]]:
        return self.table.rows(partition_prefix)

    def drain_events(self) -> list[dict[str, Any]]:
        return self.world.events(drain=True)

    def tick(self, advance: float = 0.0) -> TickReport:
        self.advance(advance)
        self.host.run_timer()
        return self.last_report

    @property
    def last_report(self) -> TickReport:
        """What the last timer run reported (recorded as the triggers' call returns it)."""
        return self.reports[-1] if self.reports else TickReport()

    def requests(self, key: str) -> int:
        return int(self.world.counters()["requests"].get(key, 0))

    def drain_chunks(self, rounds: int = 50) -> QueueRun:
        """Run the diff method's queue triggers (`copy_chunk`, then `chunk_poisoned`) on what
        their queues hold, as the host would, until both are empty; what they did."""
        total = QueueRun()
        diff = self.replicator.deps.diff
        if diff is None:
            return total
        chunks = diff.queue.client
        poison = QueueClient.from_queue_url(f"{chunks.url}-poison", credential=chunks.credential)
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        for _ in range(rounds):
            runs = [
                self.host.drain_queue(chunks, function="copy_chunk"),
                self.host.drain_queue(poison, function="chunk_poisoned"),
            ]
            for run in runs:
                total.done += run.done
                total.failed += run.failed
                total.poisoned += run.poisoned
                total.errors += run.errors
            if not any(run.done or run.failed for run in runs):
                break
        return total

    def refusals(self) -> dict[str, int]:
        return {name: count for name, count in self.world.counters()["refusals"].items() if count}


@pytest.fixture
def app_settings(emulator: EmulatorServer, storage_connection_string: str, table_name: str) -> dict[str, str]:
    return {
        "COPY_TARGET_REGIONS": "westus3",
        "STATE_CONNECTION_STRING": storage_connection_string,
        "STATE_TABLE_NAME": table_name,
        "ARM_ENDPOINT": emulator.url,
        "ARM_CA_BUNDLE": str(emulator.ca_path),
    }


@pytest.fixture(scope="session")
def topic_server() -> Iterator[TopicServer]:
    """The local Event Grid topic (real HTTPS) for the whole session."""
    server = TopicServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def with_topic(app_settings: dict[str, str], topic_server: TopicServer) -> dict[str, str]:
    """The app settings that publish notifications to the local topic (emptied for the test)."""
    topic_server.topic.reset()
    return {
        **app_settings,
        "NOTIFY_TOPIC_ENDPOINT": topic_server.endpoint,
        "NOTIFY_CA_BUNDLE": str(topic_server.ca_path),
    }


@pytest.fixture
def metrics() -> Metrics | None:
    """The deployment's metrics (None: the API's no-op meter); tests/test_metrics.py reads its own."""
    return None


@pytest.fixture
def deployment(
    emulator: EmulatorServer,
    world: World,
    app_settings: dict[str, str],
    *,
    table_operations: TableOperations,
    table_rows: TableRows,
    metrics: Metrics | None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    for name, value in app_settings.items():
        monkeypatch.setenv(name, value)
    replicator = runtime.build(
        load_settings(os.environ),
        clock=world.clock.now,
        arm_retry=FAST_ARM_RETRY,
        table_options=table_operations.options(),
        credential=EmulatorCredential(),
        metrics=metrics,
    )
    reports: list[TickReport] = []
    tick = replicator.tick

    def recorded_tick() -> TickReport:
        report = tick()
        reports.append(report)
        return report

    if replicator.deps.diff is not None:  # another test's chunks name rows this one lacks
        for name in ("", "-poison"):
            queue = replicator.deps.diff.queue.client
            with contextlib.suppress(ResourceNotFoundError):
                QueueClient.from_queue_url(queue.url + name, credential=queue.credential).clear_messages()
    fleet = Fleet(emulator.url, str(emulator.ca_path), SUB)
    # a patch of its own, so that a test undoing its monkeypatch keeps the recording
    with pytest.MonkeyPatch.context() as recording:
        recording.setattr(replicator, "tick", recorded_tick)
        runtime.install(replicator)
        try:
            yield Deployment(FunctionHost(), replicator, fleet, world, table_operations, table_rows, reports)
        finally:
            runtime.install(None)
            fleet.close()
            replicator.arm.close()
