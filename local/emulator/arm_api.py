"""ARM Compute REST routes for disks and snapshots, and their async-operation status.

Routes translate HTTP to `World` calls: JSON bodies in, ARM bodies, LRO headers and
`nextLink` paging out. Paths arrive in canonical casing (see `gateway`), and a PUT may
carry an injected answer shape (`Fault.answer`, put in the request state by the gateway).
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
from .faults import Answer
from .ids import ResourceId, ResourceKind
from .operations import Operation, WriteResult
from .world import World

_RG_SCOPE = "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Compute"
_SUB_SCOPE = "/subscriptions/{subscription}/providers/Microsoft.Compute"
_KINDS: dict[str, ResourceKind] = {"snapshots": "snapshots", "disks": "disks"}
# Set by the gateway when a fault reshapes this PUT's answer.
ANSWER_STATE_KEY = "answer"


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
    answer: Answer | None = getattr(request.state, ANSWER_STATE_KEY, None)
    return _write_response(world, put(rid, body, _request_info(request)), request, answer)


@router.patch(_RG_SCOPE + "/{kind}/{name}")
async def patch_resource(rid: ResourceDep, request: Request, world: WorldDep) -> Response:
    body = await _json_body(request)
    return JSONResponse(world.patch(rid, body, _request_info(request)))


@router.delete(_RG_SCOPE + "/{kind}/{name}")
async def delete_resource(rid: ResourceDep, request: Request, world: WorldDep) -> Response:
    deleted = world.delete(rid, _request_info(request))
    return Response(status_code=200 if deleted else 204)


@router.post(_RG_SCOPE + "/snapshots/{name}/beginGetAccess")
async def grant_access(
    subscription: str, resource_group: str, name: str, request: Request, world: WorldDep
) -> Response:
    """Read access to a snapshot: 202 and an operation whose result is `{"accessSAS": ...}`."""
    rid = ResourceId(subscription, resource_group, "snapshots", name)
    body = dict(await _json_body(request))
    operation = world.grant_access(rid, body, f"{request.url.scheme}://{request.url.netloc}")
    return Response(status_code=202, headers=_lro_headers(operation, request))


@router.post(_RG_SCOPE + "/snapshots/{name}/endGetAccess")
async def revoke_access(
    subscription: str, resource_group: str, name: str, request: Request, world: WorldDep
) -> Response:
    """End the snapshot's read access: 202 and an operation."""
    operation = world.revoke_access(ResourceId(subscription, resource_group, "snapshots", name))
    return Response(status_code=202, headers=_lro_headers(operation, request))


@router.get(_RG_SCOPE + "/{kind}")
async def list_in_resource_group(
    subscription: str, resource_group: str, kind: str, request: Request, world: WorldDep
) -> Response:
    return _page(world, request, _kind(kind), subscription, resource_group)


@router.get(_SUB_SCOPE + "/{kind}")
async def list_in_subscription(subscription: str, kind: str, request: Request, world: WorldDep) -> Response:
    return _page(world, request, _kind(kind), subscription)


@router.get(_SUB_SCOPE + "/locations/{location}/operations/{operation}")
async def get_operation(
    subscription: str, location: str, operation: str, world: WorldDep, monitor: bool = False
) -> Response:
    """The operation's status (`Azure-AsyncOperation`), or with `monitor=true` (`Location`) its
    result: 200 with the resource's body, 204 if it is gone."""
    if not monitor:
        return JSONResponse(world.get_operation(subscription, location, operation))
    result = world.operation_result(subscription, location, operation)
    return Response(status_code=204) if result is None else JSONResponse(result)


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


def _write_response(world: World, result: WriteResult, request: Request, answer: Answer | None) -> Response:
    """200 for an update; 202 with the body and the headers ARMPolling follows for a create;
    or the shape an injected `answer` asks for (the write itself happened all the same)."""
    operation = result.operation
    if answer is None:
        if operation is None:
            return JSONResponse(result.body)
        return JSONResponse(result.body, status_code=202, headers=_lro_headers(operation, request))
    if answer in ("200", "201"):
        return JSONResponse(result.body, status_code=int(answer))
    headers = _lro_headers(operation or world.new_operation(result.rid), request)
    if answer == "202-location-only":
        del headers["Azure-AsyncOperation"]
    return Response(status_code=202, headers=headers)


def _lro_headers(operation: Operation, request: Request) -> dict[str, str]:
    """Compute's shape: `Azure-AsyncOperation` is the operation's status, `Location` the same URL
    with `monitor=true` (its result); both keep the request's api-version."""
    status_url = (
        f"{request.url.scheme}://{request.url.netloc}/subscriptions/{operation.subscription}"
        f"/providers/Microsoft.Compute/locations/{operation.location}/operations/{operation.name}"
    )
    api_version = f"api-version={request.query_params['api-version']}"
    return {
        "Azure-AsyncOperation": f"{status_url}?{api_version}",
        "Location": f"{status_url}?monitor=true&{api_version}",
        "Retry-After": "0",
    }


def _page(
    world: World, request: Request, kind: ResourceKind, subscription: str, resource_group: str | None = None
) -> Response:
    """One page of a LIST; `nextLink` repeats the query (api-version) with a `$skiptoken`."""
    token = request.query_params.get("$skiptoken")
    size = world.config.page_size
    items, following = world.list_resources(kind, subscription, resource_group, token=token, count=size)
    body: dict[str, Any] = {"value": items}
    if following is not None:
        body["nextLink"] = str(request.url.include_query_params(**{"$skiptoken": following}))
    return JSONResponse(body)
