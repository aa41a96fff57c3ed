"""Shared fixtures: a real Azurite for the session, a fresh table per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from local.azurite import Azurite
from shared.store import StateStore


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
def store(storage_connection_string: str, table_name: str) -> StateStore:
    return StateStore.from_connection_string(storage_connection_string, table_name)
