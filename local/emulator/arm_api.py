"""ARM Compute REST routes for disks and snapshots, and their async-operation status.

Routes translate HTTP to `World` calls: JSON bodies in, ARM bodies, LRO headers and
`nextLink` paging out. Paths arrive in canonical casing (see `gateway`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from .errors import ArmError
from .events import RequestInfo
from .ids import ResourceId, ResourceKind
from .world import World, WriteResult

_RG_SCOPE = "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Compute"
_SUB_SCOPE = "/subscriptions/{subscription}/providers/Microsoft.Compute"
_KINDS: dict[str, ResourceKind] = {"snapshots": "snapshots", "disks": "disks"}


# dependencies are `async`: FastAPI runs a plain `def` one in a worker thread, a thread
# hop per dependency per request (most of the emulator's own time per request)
async def _world(request: Request) -> World:
    return cast(World, request.app.state.world)


async def _resource_id(subscription: str, resource_group: str, kind: str, name: str) -> ResourceId:
    """The disk or snapshot a resource URL addresses (FastAPI fills it from the path)."""
    return ResourceId(subscription, resource_group, _kind(kind), name)


WorldDep = Annotated[World, Depends(_world)]
ResourceDep = Annotated[ResourceId, Depends(_resource_id)]
router = APIRouter()


@router.get(_RG_SCOPE + "/{kind}/{name}")
async def get_resource(rid: ResourceDep, world: WorldDep) -> Response:
    return JSONResponse(world.get(rid))


@router.put(_RG_SCOPE + "/{kind}/{name}")
async def put_resource(rid: ResourceDep, request: Request, world: WorldDep) -> Response:
    body = await _json_body(request)
    put = world.put_disk if rid.kind == "disks" else world.put_snapshot
    return _write_response(put(rid, body, _request_info(request)), request)


@router.patch(_RG_SCOPE + "/{kind}/{name}")
async def patch_resource(rid: ResourceDep, request: Request, world: WorldDep) -> Response:
    body = await _json_body(request)
    return JSONResponse(world.patch(rid, body, _request_info(request)))


@router.delete(_RG_SCOPE + "/{kind}/{name}")
async def delete_resource(rid: ResourceDep, request: Request, world: WorldDep) -> Response:
    deleted = world.delete(rid, _request_info(request))
    return Response(status_code=200 if deleted else 204)


@router.get(_RG_SCOPE + "/{kind}")
async def list_in_resource_group(
    subscription: str, resource_group: str, kind: str, request: Request, world: WorldDep
) -> Response:
    return _page(world, request, _kind(kind), subscription, resource_group)


@router.get(_SUB_SCOPE + "/{kind}")
async def list_in_subscription(subscription: str, kind: str, request: Request, world: WorldDep) -> Response:
    return _page(world, request, _kind(kind), subscription)


@router.get(_SUB_SCOPE + "/locations/{location}/operations/{operation}")
async def get_operation(subscription: str, location: str, operation: str, world: WorldDep) -> Response:
    return JSONResponse(world.get_operation(subscription, location, operation))


def _kind(kind: str) -> ResourceKind:
    if kind not in _KINDS:
        raise ArmError(
            404,
            "InvalidResourceType",
            f"The resource type '{kind}' could not be found in the namespace 'Microsoft.Compute' "
            "(the emulator serves 'disks' and 'snapshots').",
        )
    return _KINDS[kind]


async def _json_body(request: Request) -> Mapping[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ArmError(
            400,
            "InvalidRequestContent",
            f"The request content was invalid and could not be deserialized: {exc}.",
        ) from exc
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return body


def _request_info(request: Request) -> RequestInfo:
    """What the write event will say about this request."""
    return RequestInfo(
        method=request.method,
        api_version=request.query_params.get("api-version", ""),
        client_request_id=request.headers.get("x-ms-client-request-id") or str(uuid.uuid4()),
        correlation_id=getattr(request.state, "correlation_id", None) or str(uuid.uuid4()),
        client_ip=request.client.host if request.client else "127.0.0.1",
    )


def _write_response(result: WriteResult, request: Request) -> Response:
    """200 for an update; 202 with the headers ARMPolling follows for a create."""
    operation = result.operation
    if operation is None:
        return JSONResponse(result.body)
    status_url = (
        f"{request.url.scheme}://{request.url.netloc}/subscriptions/{operation.subscription}"
        f"/providers/Microsoft.Compute/locations/{operation.location}/operations/{operation.name}"
        f"?api-version={request.query_params['api-version']}"
    )
    headers = {"Azure-AsyncOperation": status_url, "Location": status_url, "Retry-After": "0"}
    return JSONResponse(result.body, status_code=202, headers=headers)


def _page(
    world: World, request: Request, kind: ResourceKind, subscription: str, resource_group: str | None = None
) -> Response:
    """One page of a LIST; `nextLink` repeats the query (api-version) with a `$skiptoken`."""
    token = request.query_params.get("$skiptoken", "0")
    if not token.isdigit():
        raise ArmError(400, "InvalidParameter", f"The $skiptoken '{token}' is invalid.")
    start, size = int(token), world.config.page_size
    items, total = world.list_resources(kind, subscription, resource_group, start=start, count=size)
    body: dict[str, Any] = {"value": items}
    if start + size < total:
        body["nextLink"] = str(request.url.include_query_params(**{"$skiptoken": start + size}))
    return JSONResponse(body)
