"""The notification topic: snapcopy's notices as CloudEvents 1.0 to an Event Grid custom
topic, with the app's managed identity (role `EventGrid Data Sender`; no keys).

A publish is short and never retried here: the outbox keeps what was not delivered and
the next timer run sends it again (shared/engine/notifier.py).

It must not decide what to announce or touch the table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient

from shared.notices import DEFAULT_SOURCE, Notice

PUBLISH_BATCH = 100  # notices per request: well within Event Grid's 1 MB (each is a few KiB)
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 10  # seconds: a slow topic must not hold a run


class PublishFailed(Exception):
    """The topic did not take a batch (its notices stay in the outbox)."""


class Topic(Protocol):
    def send(self, notices: Sequence[Notice]) -> None: ...


def cloud_event(notice: Notice, source: str) -> CloudEvent[dict[str, Any]]:
    return CloudEvent(
        source=source or DEFAULT_SOURCE,
        type=notice.type.value,
        subject=notice.subject,
        id=notice.id,
        time=notice.time,
        data=notice.data,
        datacontenttype="application/json",
    )


# The client hands each send's transport options (timeouts, retries, the CA) to its
# CloudEvent serializer too, which logs a warning per option per event: not ours to fix.
_SERIALIZER_LOG = "azure.eventgrid._legacy._generated._serialization"


class EventGridTopic:
    """One long-lived publisher client per process (the SDK's guidance). The client's
    constructor keeps none of the transport options, so each send carries them."""

    def __init__(self, endpoint: str, credential: Any, *, source: str = "", ca_bundle: str | None = None) -> None:
        logging.getLogger(_SERIALIZER_LOG).setLevel(logging.ERROR)
        self._client = EventGridPublisherClient(endpoint, credential)
        self._source = source
        self._verify: str | bool = ca_bundle or True  # the client takes the CA per send

    def send(self, notices: Sequence[Notice]) -> None:
        for start in range(0, len(notices), PUBLISH_BATCH):
            batch = [cloud_event(notice, self._source) for notice in notices[start : start + PUBLISH_BATCH]]
            try:
                self._client.send(
                    batch,
                    retry_total=0,
                    connection_verify=self._verify,
                    connection_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                )
            except AzureError as error:
                raise PublishFailed(f"{type(error).__name__}: {str(error).splitlines()[0][:300]}") from error
