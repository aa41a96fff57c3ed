"""The ARM front door: what every ARM request goes through before a route sees it.

In order: canonical path casing, request counting, bearer auth, injected faults, api-version.
Admin requests (`/_admin/...`) and the blob endpoint behind SAS URLs (`/md-...`) bypass it.
A fault that reshapes the answer (`Fault.answer`) is handed to the route through the
request state, since only the route builds the answer.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import date
from urllib.parse import quote

from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .arm_api import ANSWER_STATE_KEY
from .errors import ArmError
from .faults import Fault
from .ids import canonical_path, counter_key, request_kind
from .world import World

ADMIN_PREFIX = "/_admin"
BLOB_PREFIX = "/md-"  # a snapshot's SAS URL (blob_api.py): Storage, not ARM
MIN_API_VERSION = date(2020, 12, 1)
# Set by the app around the middleware stack: the server's own `send`, whose owner holds the
# connection's transport (uvicorn's request cycle); needed to drop a connection on purpose.
RAW_SEND_KEY = "emulator.raw_send"

_API_VERSION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")
_DISCONNECT_WAIT_SECONDS = 5.0


def arm_response(error: ArmError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class ArmGateway:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it must be able to send nothing at all)."""

    def __init__(self, app: ASGIApp, world: World) -> None:
        self.app = app
        self.world = world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith((ADMIN_PREFIX, BLOB_PREFIX)):
            await self.app(scope, receive, send)
            return
        path = canonical_path(scope["path"])
        scope["path"], scope["raw_path"] = path, quote(path).encode()
        method, kind = scope["method"], request_kind(path)
        self.world.count_request(counter_key(method, kind))

        headers = Headers(scope=scope)
        correlation_id = headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        state = scope.setdefault("state", {})
        state["correlation_id"] = correlation_id
        send = _with_headers(
            send, {"x-ms-request-id": str(uuid.uuid4()), "x-ms-correlation-request-id": correlation_id}
        )

        error = _authentication_error(headers)
        body: bytes | None = None
        if error is None and self.world.faults_read_bodies():
            body, receive = await _read_body(receive)
        if error is None and (fault := self.world.take_fault(method, kind, path, body)) is not None:
            if fault.answer is not None:
                state[ANSWER_STATE_KEY] = fault.answer
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.drop_connection:
                if await _drop_connection(scope, receive):
                    return
                error = ArmError(
                    500,
                    "EmulatorCannotDropConnection",
                    "This server does not expose its transport; serve the app with EmulatorServer.",
                )
            elif fault.status is not None:
                error = _fault_error(fault)
        if error is None:
            error = self._api_version_error(QueryParams(scope["query_string"]).get("api-version"))
        if error is not None:
            await arm_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _api_version_error(self, version: str | None) -> ArmError | None:
        if not version:
            self.world.count_refusal("api_version")
            return ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        match = _API_VERSION_RE.match(version)
        try:
            valid = match is not None and date.fromisoformat(match[1]) >= MIN_API_VERSION
        except ValueError:
            valid = False
        if valid:
            return None
        self.world.count_refusal("api_version")
        return ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are "
            f"'{MIN_API_VERSION.isoformat()}' and later.",
        )


def _authentication_error(headers: Headers) -> ArmError | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return None
    return ArmError(
        401,
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing or is not a Bearer token.",
        headers={
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", '
            'error="invalid_token", error_description="The authentication '
            "failed because of missing 'Authorization' header.\""
        },
    )


def _fault_error(fault: Fault) -> ArmError:
    assert fault.status is not None
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    message = f"Injected fault: {fault.status} {fault.code}."
    return ArmError(fault.status, fault.code, message, headers=headers)


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in extra.items():
                headers.append(name, value)
        await send(message)

    return send_with_headers


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that hands it to the app again (then goes on
    with the server's own, for the disconnect)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


async def _drop_connection(scope: Scope, receive: Receive) -> bool:
    """Abort the TCP connection without any response, as a network failure would.

    ASGI has no "abort" message, so this reaches the transport through the server's `send`
    (uvicorn's request cycle keeps it as `.transport`), then waits for the server to notice
    the disconnect so that it does not answer a 500 on our behalf.
    """
    owner = getattr(scope.get(RAW_SEND_KEY), "__self__", None)
    transport = getattr(owner, "transport", None)
    if not isinstance(transport, asyncio.WriteTransport):
        return False
    transport.abort()

    async def wait_for_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    await asyncio.wait_for(wait_for_disconnect(), _DISCONNECT_WAIT_SECONDS)
    return True
