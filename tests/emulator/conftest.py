"""One emulator on a virtual clock for the whole session; a fresh world for every test.

Tests drive it with the real azure-mgmt-compute SDK (`Arm`) and raw HTTPS (`Http`).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import CreationData, Disk, DiskProperties, DiskSku, Snapshot, SnapshotProperties

from local.emulator import EmulatorServer, VirtualClock, World

SUB = "6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d"
OTHER_SUB = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RG = "prod-rg"
SOURCE_REGION = "eastus2"
TARGET_REGION = "westus3"
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
API_VERSION = "2024-03-02"


class StaticTokenCredential:
    """A fixed bearer token: the emulator checks that one is sent, not what it says."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("emulator-test-token", int(time.time()) + 3600)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(World(VirtualClock(T0))) as server:
        yield server


@pytest.fixture
def world(emulator: EmulatorServer) -> Iterator[World]:
    emulator.world.reset()
    yield emulator.world
    emulator.world.reset()


@pytest.fixture
def clock(world: World) -> VirtualClock:
    assert isinstance(world.clock, VirtualClock)
    return world.clock


def make_client(emulator: EmulatorServer, subscription: str = SUB, **options: Any) -> ComputeManagementClient:
    return ComputeManagementClient(
        StaticTokenCredential(),
        subscription,
        base_url=emulator.url,
        connection_verify=str(emulator.ca_path),
        **options,
    )


class Arm:
    """The real SDK against the emulator, with one-line arrangements for tests."""

    def __init__(self, client: ComputeManagementClient, rg: str = RG) -> None:
        self.client = client
        self.rg = rg

    def disk(
        self, name: str = "disk0", *, location: str = SOURCE_REGION, size_gb: int = 128, sku: str | None = None
    ) -> Disk:
        body = Disk(
            location=location,
            sku=DiskSku(name=sku) if sku is not None else None,
            properties=DiskProperties(creation_data=CreationData(create_option="Empty"), disk_size_gb=size_gb),
        )
        return self.client.disks.begin_create_or_update(self.rg, name, body).result()

    def snapshot(
        self,
        disk: Disk,
        name: str,
        *,
        incremental: bool = True,
        instant_access_minutes: int | None = None,
        data_access_auth_mode: str | None = None,
    ) -> Snapshot:
        body = Snapshot(
            location=disk.location,
            properties=SnapshotProperties(
                creation_data=CreationData(
                    create_option="Copy",
                    source_resource_id=disk.id,
                    instant_access_duration_minutes=instant_access_minutes,
                ),
                incremental=incremental,
                data_access_auth_mode=data_access_auth_mode,
            ),
        )
        return self.client.snapshots.begin_create_or_update(self.rg, name, body).result()

    def copy(
        self,
        source: Snapshot | str,
        name: str | None = None,
        *,
        region: str = TARGET_REGION,
        incremental: bool = True,
        tags: dict[str, str] | None = None,
    ) -> Snapshot:
        """Start a CopyStart copy (polling=False, like the app) and return ARM's first answer."""
        source_id = source if isinstance(source, str) else source.id
        assert source_id is not None
        target = name or f"{source_id.rsplit('/', 1)[-1]}-{region}"
        body = Snapshot(
            location=region,
            tags=tags,
            properties=SnapshotProperties(
                creation_data=CreationData(create_option="CopyStart", source_resource_id=source_id),
                incremental=incremental,
            ),
        )
        return self.client.snapshots.begin_create_or_update(self.rg, target, body, polling=False).result()

    def get(self, name: str) -> Snapshot:
        return self.client.snapshots.get(self.rg, name)


@pytest.fixture
def arm(emulator: EmulatorServer, world: World) -> Iterator[Arm]:
    with make_client(emulator) as client:
        yield Arm(client)


@dataclass(frozen=True)
class HttpResponse:
    """`headers` keys are lower-case."""

    status: int
    headers: dict[str, str]
    body: Any


class Http:
    """Raw HTTPS for what the SDK hides: status codes, headers, admin endpoints."""

    def __init__(self, base_url: str, ca_path: Path) -> None:
        self.base = base_url
        self.context = ssl.create_default_context(cafile=str(ca_path))

    @classmethod
    def to(cls, emulator: EmulatorServer) -> Http:
        return cls(emulator.url, emulator.ca_path)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "test-token",
        raw_body: bytes | None = None,
    ) -> HttpResponse:
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                return _read(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return _read(error.code, dict(error.headers), error.read())

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.request(method, f"/_admin/{path}", body, token=None)
        assert 200 <= response.status < 300, response
        return response.body


def _read(status: int, headers: dict[str, str], raw: bytes) -> HttpResponse:
    lowered = {name.lower(): value for name, value in headers.items()}
    return HttpResponse(status, lowered, json.loads(raw) if raw else None)


@pytest.fixture
def http(emulator: EmulatorServer, world: World) -> Http:
    return Http.to(emulator)


def snapshot_path(name: str, rg: str = RG, sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{name}"


def copy_body(source_id: str, region: str = TARGET_REGION) -> dict[str, Any]:
    """A raw CopyStart PUT body, as the app sends it."""
    return {
        "location": region,
        "properties": {
            "creationData": {"createOption": "CopyStart", "sourceResourceId": source_id},
            "incremental": True,
        },
    }
