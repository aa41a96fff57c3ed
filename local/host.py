"""Invoke snapcopy's functions the way the Azure Functions host does.

Core Tools cannot be installed here, so the demo and the tests load `function_app`, find
the functions through `app.get_functions()`, decode trigger payloads with the worker's
own converters (`azure.functions` EventGrid / Timer / Queue converters) and call the user
functions with the resulting objects: the same path the Python worker takes.

A queue trigger is driven from the real queue (Azurite) as the host drives it: a message
is received (invisible meanwhile), decoded from Base64, handed over with its trigger
metadata (id, dequeue count, times, pop receipt), deleted when the function returns,
made visible again when it raises, and moved to `<queue>-poison` once it has failed
`max_dequeue_count` times (host.json `extensions.queues.maxDequeueCount`, 5 by default).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions import HttpRequest, meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessageInConverter
from azure.functions.timer import TimerRequestConverter
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

Invocable = Callable[..., Any]


@functools.cache
def _index(module: str) -> dict[str, Any]:
    """Index the app once per process, as the worker does (indexing twice is an error)."""
    app = importlib.import_module(module).app
    return {fn.get_function_name(): fn for fn in app.get_functions()}


class FunctionHost:
    """The app's functions by name, invoked with host-shaped inputs."""

    def __init__(self, module: str = "function_app") -> None:
        self.functions = _index(module)

    def binding(self, name: str) -> Mapping[str, Any]:
        """The trigger binding as function.json would declare it."""
        bindings = self.functions[name].get_bindings_dict()["bindings"]
        return dict(bindings[0])

    def _user_function(self, name: str) -> Invocable:
        return self.functions[name].get_user_function()  # type: ignore[no-any-return]

    def deliver_event(self, event: Mapping[str, Any], *, function: str = "on_snapshot_written") -> Any:
        """One element of an Event Grid delivery (either schema), decoded as the worker does."""
        assert self.binding(function)["type"] == "eventGridTrigger"
        datum = meta.Datum(json.dumps(event), "json")
        decoded = EventGridEventInConverter.decode(datum, trigger_metadata={})
        return self._user_function(function)(decoded)

    def call_http(
        self,
        function: str,
        method: str,
        url: str,
        *,
        route_params: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One HTTP request, as the worker hands it to the function."""
        assert self.binding(function)["type"] == "httpTrigger"
        request = HttpRequest(
            method, url, headers=headers or {}, params=params or {}, route_params=route_params or {}, body=body
        )
        return self._user_function(function)(request)

    def run_timer(self, *, function: str = "poll_copies", past_due: bool = False) -> Any:
        """One timer firing, with the payload shape the host sends."""
        assert self.binding(function)["type"] == "timerTrigger"
        payload = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due}
        timer = TimerRequestConverter.decode(meta.Datum(json.dumps(payload), "json"), trigger_metadata={})
        return self._user_function(function)(timer)

    def drain_queue(
        self, queue: QueueClient, *, function: str, max_dequeue_count: int = 5, batch: int = 16
    ) -> QueueRun:
        """Run the queue-triggered function on every message visible now, once each."""
        assert self.binding(function)["type"] == "queueTrigger"
        run = QueueRun()
        # the host reads queue messages as Base64 text whatever the sender's client did
        queue = QueueClient.from_queue_url(
            queue.url,
            credential=queue.credential,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        # one batch, received together (as the host's queue listener does): a message made
        # visible again below waits for the next drain
        received = list(queue.receive_messages(messages_per_page=batch, max_messages=batch, visibility_timeout=30))
        for message in received:
            metadata = {
                "Id": meta.Datum(message.id, "string"),
                "DequeueCount": meta.Datum(str(message.dequeue_count), "string"),
                "InsertionTime": meta.Datum(_host_time(message.inserted_on), "string"),
                "ExpirationTime": meta.Datum(_host_time(message.expires_on), "string"),
                "NextVisibleTime": meta.Datum(_host_time(message.next_visible_on), "string"),
                "PopReceipt": meta.Datum(message.pop_receipt, "string"),
            }
            decoded = QueueMessageInConverter.decode(meta.Datum(message.content, "string"), trigger_metadata=metadata)
            try:
                self._user_function(function)(decoded)
            except Exception as error:
                run.failed += 1
                run.errors.append(f"{type(error).__name__}: {error}")
                if (message.dequeue_count or 0) >= max_dequeue_count:
                    poison = QueueClient.from_queue_url(
                        f"{queue.url}-poison",
                        credential=queue.credential,
                        message_encode_policy=TextBase64EncodePolicy(),
                    )
                    with contextlib.suppress(ResourceExistsError):
                        poison.create_queue()
                    poison.send_message(message.content)
                    queue.delete_message(message)
                    run.poisoned += 1
                else:
                    queue.update_message(message, visibility_timeout=0)
                continue
            queue.delete_message(message)
            run.done += 1
        return run


@dataclass
class QueueRun:
    """What one drain of a queue did."""

    done: int = 0
    failed: int = 0
    poisoned: int = 0
    errors: list[str] = field(default_factory=list)


def _host_time(value: datetime | None) -> str:
    return (value or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
