"""The diff copy method's queue: one message per chunk, Base64 text as the Functions
queue trigger reads it by default, sent with the unmodified azure-storage-queue client.

It must not decide what a chunk holds (shared/increments.py) nor how a message reads
(shared/chunk_messages.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Self

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.chunk_messages import QUEUE_NAME, ChunkMessage


class ChunkQueue:
    """Sends chunk messages; the queue is created on first use (once per process)."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue
        self._ready = False

    @classmethod
    def from_connection_string(cls, connection_string: str, name: str = QUEUE_NAME, **options: Any) -> Self:
        return cls(
            QueueClient.from_connection_string(
                connection_string,
                name,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
                **options,
            )
        )

    @classmethod
    def from_endpoint(cls, account_url: str, credential: Any, name: str = QUEUE_NAME, **options: Any) -> Self:
        return cls(
            QueueClient(
                account_url,
                name,
                credential=credential,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
                **options,
            )
        )

    @property
    def client(self) -> QueueClient:
        return self._queue

    def pending(self) -> int:
        """About how many messages the queue holds (those being run included)."""
        try:
            return int(self._queue.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0

    def send(self, messages: Sequence[ChunkMessage]) -> None:
        if not self._ready:
            with contextlib.suppress(ResourceExistsError):
                self._queue.create_queue()
            self._ready = True
        for message in messages:
            self._queue.send_message(message.encode(), time_to_live=-1)  # a backlog of days loses nothing
