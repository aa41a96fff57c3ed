"""Invoke snapcopy's functions the way the Azure Functions host does.

Core Tools cannot be installed here, so the demo and the tests load `function_app`, find
the functions through `app.get_functions()`, decode trigger payloads with the worker's
own converters (`azure.functions` EventGrid / Timer converters) and call the user
functions with the resulting objects: the same path the Python worker takes.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from azure.functions import HttpRequest, meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.timer import TimerRequestConverter

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
