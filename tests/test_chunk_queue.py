"""Chunk messages through a real queue (Azurite): sent Base64-encoded by snapcopy's
queue edge, received by the local host the way the Functions host drives a queue
trigger; a message that keeps failing lands in the poison queue after five tries."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from local.host import FunctionHost
from shared.chunk_messages import ChunkMessage
from shared.chunk_queue import ChunkQueue
from shared.increments import PAGE, Chunk
from shared.model import ChainKey
from tests.apps import queue_app

pytestmark = pytest.mark.azurite

CHAIN = ChainKey("0b6c9a54-2c1e-4a8e-9a53-6f1f1f1f1f1f", "westus3")
KEY = "20261201T080000.000000Z|vm0-data0-s1"


@pytest.fixture
def queue(storage_connection_string: str, table_name: str) -> Iterator[ChunkQueue]:
    name = f"chunks-{table_name.lower()}"[:63]
    chunks = ChunkQueue.from_connection_string(storage_connection_string, name)
    yield chunks
    for client in (chunks.client, QueueClient.from_queue_url(f"{chunks.client.url}-poison", chunks.client.credential)):
        with contextlib.suppress(ResourceNotFoundError):  # never created
            client.delete_queue()


def message(index: int) -> ChunkMessage:
    return ChunkMessage(CHAIN, KEY, 1, Chunk(index, ((index * PAGE, (index + 1) * PAGE),)))


def test_chunk_messages_reach_the_queue_trigger_as_sent_and_a_failing_one_is_poisoned(queue: ChunkQueue):
    queue_app.RECEIVED.clear()
    host = FunctionHost("tests.apps.queue_app")
    queue.send([message(0), message(1), message(13)])
    first = host.drain_queue(queue.client, function="copy_chunk")
    assert (first.done, first.failed, first.poisoned) == (2, 1, 0)
    assert {received.chunk.index for received, _ in queue_app.RECEIVED} == {0, 1, 13}
    assert [received for received, _ in queue_app.RECEIVED if received.chunk.index == 1] == [message(1)]
    for _ in range(4):  # redelivered until it has failed five times
        host.drain_queue(queue.client, function="copy_chunk")
    counts = [count for received, count in queue_app.RECEIVED if received.chunk.index == 13]
    assert counts == [1, 2, 3, 4, 5]
    assert host.drain_queue(queue.client, function="copy_chunk").done == 0  # nothing left
    poison = QueueClient.from_queue_url(f"{queue.client.url}-poison", queue.client.credential)
    (moved,) = list(poison.receive_messages())
    assert ChunkMessage.decode(base64.b64decode(moved.content).decode()) == message(13)
