"""Assembles the emulator's FastAPI app: ARM routes, admin routes, the ARM gateway, error shapes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from . import admin_api, arm_api, blob_api
from .errors import ArmError
from .gateway import RAW_SEND_KEY, ArmGateway, arm_response
from .world import World

_ROUTE_ERROR_CODES = {404: "NotFound", 405: "MethodNotAllowed"}


class _EmulatorApp(FastAPI):
    """FastAPI that keeps the server's own `send` in the scope, so a fault can drop the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


def create_app(world: World) -> FastAPI:
    app = _EmulatorApp(title="snapcopy ARM Compute emulator", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.world = world
    app.add_middleware(ArmGateway, world=world)
    app.add_exception_handler(ArmError, _arm_error)
    app.add_exception_handler(StarletteHTTPException, _route_error)
    app.include_router(arm_api.router)
    app.include_router(admin_api.router)
    app.include_router(blob_api.router)  # after the admin routes: its paths are /<account>/<container>/<blob>
    return app


async def _arm_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ArmError)
    return arm_response(exc)


async def _route_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in ARM's error shape too."""
    assert isinstance(exc, StarletteHTTPException)
    code = _ROUTE_ERROR_CODES.get(exc.status_code, "BadRequest")
    message = f"The emulator has no route for {request.method} {request.url.path}: {exc.detail}."
    return arm_response(ArmError(exc.status_code, code, message, headers=exc.headers))
