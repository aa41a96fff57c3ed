"""The Functions host's HTTP front door, for the offline world.

Core Tools (`func start`) cannot be installed here, so nothing would serve the app's HTTP
functions on a port. This small ASGI app does what the host does with a request before and
after the Python worker sees it, and nothing else:

- it strips the route prefix (`api`, or `extensions.http.routePrefix` in host.json);
- it matches the rest against each httpTrigger's `route` template (literal segments and
  `{name}` parameters, literals first) and `methods`: 404 when no route matches, 405 when
  the route matches but not the method;
- for any auth level but anonymous it wants a key, in the `x-functions-key` header or the
  `code` query parameter, and answers a bare 401 otherwise;
- it calls the function through `FunctionHost` with an `HttpRequest` (method, full url,
  headers, query, route params, body) and answers what the worker's own
  `HttpResponseConverter` makes of the result (status, headers, content-type, body).

`serve(app)` runs it with uvicorn on a free loopback port in a background thread (the
tests, the CLI's tests). `python -m local.gateway` runs the whole offline world behind it:
Azurite, the ARM emulator with a few disks and snapshots, a timer that fires every few
seconds, and prints the `SNAPCOPY_URL` and `SNAPCOPY_KEY` to use with `snapcopy` (the
CLI, `pip install ./cli`) or curl.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote

import uvicorn
from azure.functions import HttpResponse
from azure.functions.http import HttpResponseConverter
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from local.emulator.credential import EmulatorCredential
from local.host import FunctionHost
from shared import runtime
from shared.config import load_settings

log = logging.getLogger("snapcopy.gateway")

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 10.0


def route_prefix(host_json: Path = HOST_JSON) -> str:
    """`extensions.http.routePrefix` from host.json; `api` when it is not set (as the host)."""
    try:
        config = json.loads(host_json.read_text())
    except FileNotFoundError:
        return "api"
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


def _text(value: Any) -> str:
    """An enum of azure.functions (AuthLevel, HttpMethod) or a plain string, as its value."""
    return str(getattr(value, "value", value))


@dataclass(frozen=True)
class HttpFunction:
    """One httpTrigger function as the host routes to it."""

    name: str
    segments: tuple[str, ...]  # lowercase literals, or "{name}" parameters
    methods: frozenset[str]  # empty: every method
    anonymous: bool

    @classmethod
    def from_binding(cls, name: str, binding: Mapping[str, Any]) -> HttpFunction:
        template = str(binding.get("route") or name).strip("/")
        segments = tuple(template.split("/")) if template else ()
        for segment in segments:
            literal = "{" not in segment and "}" not in segment
            parameter = segment.startswith("{") and segment.endswith("}") and segment[1:-1].isidentifier()
            if not (literal or parameter):
                raise ValueError(
                    f"{name}: route {template!r} has segment {segment!r}; the local gateway knows literal "
                    "segments and plain {name} parameters only (no constraints, optional or catch-all)"
                )
        methods = frozenset(_text(method).upper() for method in binding.get("methods") or ())
        anonymous = _text(binding.get("authLevel", "function")).lower() == "anonymous"
        return cls(name, tuple(s if s.startswith("{") else s.lower() for s in segments), methods, anonymous)

    @property
    def precedence(self) -> tuple[int, ...]:
        """Literal segments win over parameters, left to right (ASP.NET Core's order)."""
        return tuple(1 if segment.startswith("{") else 0 for segment in self.segments)

    def match(self, path: Sequence[str]) -> dict[str, str] | None:
        """The route parameters when `path` (decoded segments) fits the template."""
        if len(path) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for segment, part in zip(self.segments, path, strict=True):
            if segment.startswith("{"):
                if not part:
                    return None
                params[segment[1:-1]] = part
            elif segment != part.lower():
                return None
        return params


def http_functions(host: FunctionHost) -> list[HttpFunction]:
    """The app's HTTP functions in the order the host tries them."""
    found = [
        HttpFunction.from_binding(name, host.binding(name))
        for name in host.functions
        if host.binding(name)["type"] == "httpTrigger"
    ]
    return sorted(found, key=lambda function: function.precedence)


def _has_key(request: Request, keys: Collection[str]) -> bool:
    given = request.headers.get("x-functions-key") or request.query_params.get("code") or ""
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


def _answer(result: Any) -> Response:
    """What the worker's converter makes of a function's return value."""
    if isinstance(result, str):
        result = HttpResponse(result)
    if not isinstance(result, HttpResponse):
        raise TypeError(f"an HTTP function returned {type(result).__name__}, not an HttpResponse")
    datum = HttpResponseConverter.encode(result, expected_type=None).value
    headers = {name: value.value for name, value in datum["headers"].items()}
    return Response(datum["body"].value, status_code=int(datum["status_code"].value), headers=headers)


def gateway(host: FunctionHost, keys: set[str], *, prefix: str | None = None) -> Starlette:
    """An ASGI app serving `host`'s HTTP functions at `/{prefix}/{route}`, keyed by `keys`."""
    if not keys or not all(keys):
        raise ValueError("the gateway needs at least one non-empty function key")
    prefix = route_prefix() if prefix is None else prefix.strip("/")
    lead = tuple(prefix.lower().split("/")) if prefix else ()
    functions = http_functions(host)

    async def handle(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = [unquote(part) for part in raw.decode("latin-1").strip("/").split("/")]
        if tuple(part.lower() for part in path[: len(lead)]) != lead:
            return Response(status_code=404)
        rest = path[len(lead) :] if path != [""] else []
        matched = [(function, params) for function in functions if (params := function.match(rest)) is not None]
        if not matched:
            return Response(status_code=404)
        method = request.method.upper()
        chosen = next(((f, p) for f, p in matched if not f.methods or method in f.methods), None)
        if chosen is None:
            allowed = sorted({m for f, _ in matched for m in f.methods})
            return Response(status_code=405, headers={"Allow": ", ".join(allowed)})
        function, params = chosen
        if not function.anonymous and not _has_key(request, keys):
            return Response(status_code=401)
        body = await request.body()
        try:
            result = await run_in_threadpool(
                host.call_http,
                function.name,
                method,
                str(request.url),
                route_params=params,
                params=dict(request.query_params),
                body=body,
                headers=dict(request.headers),
            )
            return _answer(result)
        except Exception:  # the host answers a bare 500; the details go to the log
            log.exception("%s %s: function %s failed", method, request.url.path, function.name)
            return Response(status_code=500)

    return Starlette(routes=[Route("/{path:path}", handle, methods=list(METHODS))])


@contextlib.contextmanager
def serve(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yields its base URL (`http://host:port`)."""
    # IPPROTO_TCP: asyncio turns Nagle off only on sockets that say they are TCP (see the emulator).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    bound = listener.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="functions-gateway", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the functions gateway did not start")
            time.sleep(0.01)
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            server.force_exit = True
            thread.join(_STOP_TIMEOUT_SECONDS)
        listener.close()


# --- python -m local.gateway: the offline world behind the gateway ------------------------

SUBSCRIPTION = "6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d"
RESOURCE_GROUP = "local-rg"
SOURCE_REGION = "eastus2"
GIB = 1024**3


def _pump(host: FunctionHost, events: Any, every: float, stopping: threading.Event) -> None:
    """What Azure does on its own: deliver Event Grid events, fire the timer."""
    while not stopping.wait(every):
        try:
            for event in events(drain=True):
                host.deliver_event(event)
            host.run_timer()
        except Exception:
            log.exception("timer or event delivery failed; trying again in %.0f s", every)


def main(argv: Sequence[str] | None = None) -> int:
    from local.azurite import Azurite
    from local.emulator.clock import RealClock
    from local.emulator.config import EmulatorConfig
    from local.emulator.server import EmulatorServer
    from local.emulator.world import World
    from local.fleet import Fleet

    parser = argparse.ArgumentParser(prog="python -m local.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7071, help="0 picks a free port (default: 7071, as func start)")
    parser.add_argument("--regions", default="westus3", help="COPY_TARGET_REGIONS (default: westus3)")
    parser.add_argument("--disks", type=int, default=2, help="source disks to create (default: 2)")
    parser.add_argument("--snapshots", type=int, default=3, help="snapshots per disk (default: 3)")
    parser.add_argument("--copy-seconds", type=float, default=20.0, help="how long one copy takes (default: 20)")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between timer firings (default: 5)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    key = os.environ.get("SNAPCOPY_KEY") or secrets.token_urlsafe(24)
    world = World(
        RealClock(),
        EmulatorConfig(copy_bytes_per_second=128 * GIB / args.copy_seconds, min_copy_seconds=args.copy_seconds / 2),
    )
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with Azurite.start() as azurite, EmulatorServer(world) as emulator:
        os.environ.update(
            {
                "COPY_TARGET_REGIONS": args.regions,
                "STATE_CONNECTION_STRING": azurite.connection_string,
                "STATE_TABLE_NAME": "snapcopylocal",
                "ARM_ENDPOINT": emulator.url,
                "ARM_CA_BUNDLE": str(emulator.ca_path),
            }
        )
        fleet = Fleet(emulator.url, str(emulator.ca_path), SUBSCRIPTION)
        disks = [fleet.create_disk(RESOURCE_GROUP, f"vm{i}-data0", SOURCE_REGION) for i in range(args.disks)]
        snapshots = [
            fleet.take_snapshot(disk, f"vm{i}-data0-s{n}", SOURCE_REGION)
            for n in range(args.snapshots)
            for i, disk in enumerate(disks)
        ]
        fleet.close()
        world.events(drain=True)  # taken before snapcopy was deployed: copy them with the CLI
        # the app as deployed, but for its identity: the emulator's token, handed in
        runtime.install(runtime.build(load_settings(os.environ), credential=EmulatorCredential()))
        host = FunctionHost()
        pump = threading.Thread(target=_pump, args=(host, world.events, args.tick, stopping), daemon=True)
        with serve(gateway(host, {key}), port=args.port) as url:
            pump.start()
            print(f"export SNAPCOPY_URL={url}\nexport SNAPCOPY_KEY={key}", flush=True)
            notes = ["disks:", *disks, "snapshots (not copied yet):", *snapshots]
            notes += ["try: snapcopy backfill <disk> --wait   (pip install ./cli; Ctrl-C stops the world)"]
            print(*(f"# {note}" for note in notes), sep="\n", file=sys.stderr, flush=True)
            while not stopping.wait(0.5):
                pass
            pump.join(_STOP_TIMEOUT_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
