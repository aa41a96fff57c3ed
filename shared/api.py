"""The HTTP API: on-demand copies, backfill, retry, cancel and status.

Routes use function-level keys. Bodies and answers are JSON; errors are
`application/problem+json` (RFC 9457) with a precise `detail`, and nothing internal (stack
traces, connection strings) is ever returned. Copy ids are opaque to callers: base64url of
`<family>|<region>|<job key>`, decoded and validated strictly before any Table read.
Handlers only parse and shape; `shared/engine/operator.py` decides.

It must not read the store or ARM, nor decide: `shared/engine/operator.py` reads and decides.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import azure.functions as func

from shared import runtime, tokens
from shared.cursors import Cursor, names_a_job
from shared.errors import Refusal, Refused, invalid
from shared.model import ChainKey, CopyState, Job
from shared.notices import copy_id, iso
from shared.problems import (
    answers_problems,
    json_answer,
    parse_id,
    parse_region,
    read_object,
    shown,
)
from shared.service import DEFAULT_PAGE, MAX_PAGE, Accepted, ChainStatus, LiveCopy, Operator, RegionStatus

log = logging.getLogger("snapcopy")

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]

MAX_REGIONS = 64
COPY_FIELDS = ("sourceSnapshotId", "sourceDiskId", "targetRegions")
# `code` carries the function key when it is not sent as the x-functions-key header.
LIST_PARAMS = ("sourceDiskId", "targetRegion", "state", "top", "continuationToken", "code")

_MAX_COPY_ID = 256


class InvalidCopyId(ValueError):
    """The text is not a copy id snapcopy issued."""


def parse_copy_id(text: str) -> tuple[ChainKey, str]:
    if not text or len(text) > _MAX_COPY_ID or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise InvalidCopyId("a copy id is the base64url token returned by the API")
    try:
        raw = tokens.decode(text, max_length=_MAX_COPY_ID)
    except tokens.InvalidToken:
        raise InvalidCopyId("the copy id does not decode") from None
    family, _, rest = raw.partition("|")
    region, _, key = rest.partition("|")
    if not names_a_job(family, region, key):
        raise InvalidCopyId("the copy id does not name a copy")
    return ChainKey(family, region), key


# --- views ------------------------------------------------------------------------------


def job_view(job: Job) -> dict[str, Any]:
    """A copy as the API shows it."""
    return {
        "copyId": copy_id(job.chain, job.key),
        "sourceSnapshotId": str(job.source_id),
        "targetSnapshotId": job.target,
        "targetRegion": job.chain.region,
        "state": job.state.value,
        "percent": job.percent,
        "attempts": job.attempts,
        "queuedAt": iso(job.queued_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
        "error": {"code": job.error.code, "message": job.error.message} if job.error else None,
        "reason": job.reason or None,
        "sourceReady": job.source_ready,
        "sourcePercent": job.source_percent,
        "stuck": False,
        "lastProgressAt": None,
        "policy": job.policy or None,
        "prunedAt": iso(job.pruned_at),
        "prunedBy": job.pruned_by or None,
        "pruneError": job.prune_error or None,
    }


def live_view(copy: LiveCopy) -> dict[str, Any]:
    """A copy with its live percent (kept on the region's flight row while it copies)."""
    view = job_view(copy.job)
    if copy.flight is not None:
        view["percent"] = copy.flight.percent
        view["stuck"] = copy.flight.stuck_since is not None
        view["lastProgressAt"] = iso(copy.flight.progressed_at)
    return view


def chain_view(status: ChainStatus, now: datetime) -> dict[str, Any]:
    """One chain: what copies, how many wait, the last completed copy and its age (RPO)."""
    head = status.head
    age = (now - head.last_completed_at).total_seconds() if head.last_completed_at else None
    return {
        "familyId": head.key.family_id,
        "sourceDiskId": head.disk_id or None,
        "targetRegion": head.key.region,
        "copying": live_view(status.copying) if status.copying else None,
        "queued": status.queued,
        "lastCompletedSnapshotId": head.last_completed_source or None,
        "lastCompletedAt": iso(head.last_completed_at),
        "lastCompletedAgeSeconds": age,
        "rpoSeconds": status.rpo.total_seconds() if status.rpo is not None else None,
        "rpoBreached": status.rpo_breached,
    }


# --- plumbing ---------------------------------------------------------------------------


def parse_state(text: str) -> CopyState:
    try:
        return CopyState(text.strip().lower())
    except ValueError:
        allowed = ", ".join(state.value for state in CopyState)
        raise invalid(f"state: {text!r} is not one of {allowed}") from None


def _route_copy(req: func.HttpRequest) -> tuple[ChainKey, str]:
    try:
        return parse_copy_id(req.route_params.get("copyId", ""))
    except InvalidCopyId as error:
        raise Refused(Refusal.INVALID, "Invalid copy id", str(error)) from None


def _regions(data: Mapping[str, Any]) -> list[str] | None:
    if "targetRegions" not in data or data["targetRegions"] is None:
        return None
    value = data["targetRegions"]
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise invalid(f"targetRegions must be a non-empty array of region names, not {shown(value)}")
    if len(value) > MAX_REGIONS:
        raise invalid(f"targetRegions lists {len(value)} regions; at most {MAX_REGIONS}")
    return [parse_region(item, "targetRegions") for item in value]


def _accepted(ondemand: Operator, result: Accepted, location: str) -> func.HttpResponse:
    copies = [{**live_view(ondemand.live(job)), "created": created} for job, created in result.copies]
    body = {
        "copies": copies,
        "ignored": [{"sourceSnapshotId": snap, "reason": reason} for snap, reason in result.ignored],
    }
    busy = any(not job.state.is_final for job, _ in result.copies)
    return json_answer(body, 202 if busy else 200, {"Location": location})


# --- routes -----------------------------------------------------------------------------


@blueprint.function_name("request_copies")
@blueprint.route(route="copies", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def request_copies(req: func.HttpRequest) -> func.HttpResponse:
    """Copy one snapshot now, or backfill every existing snapshot of a disk."""
    data = read_object(req)
    unknown = sorted(set(data) - set(COPY_FIELDS))
    if unknown:
        raise invalid(
            f"unknown field(s): {', '.join(shown(name) for name in unknown)}; allowed: {', '.join(COPY_FIELDS)}"
        )
    sources = [name for name in ("sourceSnapshotId", "sourceDiskId") if data.get(name) is not None]
    if len(sources) != 1:
        raise invalid("send exactly one of sourceSnapshotId (one snapshot) or sourceDiskId (backfill a disk)")
    (field,) = sources
    if not isinstance(data[field], str):
        raise invalid(f"{field} must be a string ARM id, not {shown(data[field])}")
    regions = _regions(data)
    ondemand = runtime.replicator().operator
    if field == "sourceSnapshotId":
        result = ondemand.copy_snapshot(parse_id(data[field], "snapshots", field), regions)
        first = result.copies[0][0]
        location = f"/api/copies/{copy_id(first.chain, first.key)}"
    else:
        disk = parse_id(data[field], "disks", field)
        result = ondemand.backfill(disk, regions)
        location = "/api/copies?" + urlencode({"sourceDiskId": str(disk)})
    return _accepted(ondemand, result, location)


@blueprint.function_name("list_copies")
@blueprint.route(route="copies", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def list_copies(req: func.HttpRequest) -> func.HttpResponse:
    """Copies, filtered by source disk, target region and state, a page at a time."""
    params = dict(req.params)
    unknown = sorted(set(params) - set(LIST_PARAMS))
    if unknown:
        raise invalid(f"unknown query parameter(s): {', '.join(unknown)}; allowed: {', '.join(LIST_PARAMS[:-1])}")
    disk = parse_id(params["sourceDiskId"], "disks", "sourceDiskId") if params.get("sourceDiskId") else None
    region = parse_region(params["targetRegion"], "targetRegion") if params.get("targetRegion") else None
    state = parse_state(params["state"]) if params.get("state") else None
    top = DEFAULT_PAGE
    if params.get("top"):
        text = params["top"].strip()
        if not re.fullmatch(r"[0-9]{1,4}", text) or not 1 <= int(text) <= MAX_PAGE:
            raise invalid(f"top must be a whole number from 1 to {MAX_PAGE}, not {shown(params['top'])}")
        top = int(text)
    cursor = Cursor.decode(params["continuationToken"]) if params.get("continuationToken") else None
    ondemand = runtime.replicator().operator
    page = ondemand.list_copies(disk_id=disk, region=region, state=state, top=top, cursor=cursor)
    body: dict[str, Any] = {"value": [live_view(ondemand.live(job)) for job in page.jobs]}
    if page.continuation:
        query = {name: value for name, value in params.items() if name not in ("code", "continuationToken")}
        body["continuationToken"] = page.continuation
        body["nextLink"] = "/api/copies?" + urlencode({**query, "continuationToken": page.continuation})
    return json_answer(body)


@blueprint.function_name("get_copy")
@blueprint.route(route="copies/{copyId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def get_copy(req: func.HttpRequest) -> func.HttpResponse:
    """State, percent, timestamps, target and error of one copy."""
    chain, key = _route_copy(req)
    ondemand = runtime.replicator().operator
    return json_answer(live_view(ondemand.live(ondemand.job(chain, key))))


@blueprint.function_name("retry_copy")
@blueprint.route(route="copies/{copyId}/retry", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def retry_copy(req: func.HttpRequest) -> func.HttpResponse:
    """Queue a failed or cancelled copy again (if Azure's copy order still allows it)."""
    chain, key = _route_copy(req)
    ondemand = runtime.replicator().operator
    job = ondemand.retry(chain, key)
    return json_answer(live_view(ondemand.live(job)), 202, {"Location": f"/api/copies/{copy_id(chain, key)}"})


@blueprint.function_name("cancel_copy")
@blueprint.route(route="copies/{copyId}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def cancel_copy(req: func.HttpRequest) -> func.HttpResponse:
    """Cancel a queued copy; a copy in flight cannot be stopped (the answer says so)."""
    chain, key = _route_copy(req)
    ondemand = runtime.replicator().operator
    return json_answer(live_view(ondemand.live(ondemand.cancel(chain, key))))


@blueprint.function_name("list_chains")
@blueprint.route(route="chains", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def list_chains(req: func.HttpRequest) -> func.HttpResponse:
    """Every chain (source disk × target region) with its queue and RPO."""
    ondemand = runtime.replicator().operator
    now = ondemand.clock()
    chains = [chain_view(status, now) for status in ondemand.chains()]
    return json_answer({"value": chains})


def region_view(status: RegionStatus) -> dict[str, Any]:
    """One target region as `GET /api/status` shows it."""
    return {
        "targetRegion": status.region,
        "inFlight": status.in_flight,
        "queued": status.queued,
        "waitingForCap": status.waiting_for_cap,
        "waitingForSource": status.waiting_for_source,
        "completedLast24h": status.completed,
        "failedLast24h": status.failed,
        "worstRpoSeconds": status.worst_rpo.total_seconds() if status.worst_rpo is not None else None,
        "chainsOverRpo": [
            {
                "familyId": head.key.family_id,
                "sourceDiskId": head.disk_id or None,
                "rpoSeconds": rpo.total_seconds(),
            }
            for head, rpo in status.over_rpo
        ],
    }


@blueprint.function_name("get_status")
@blueprint.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def get_status(req: func.HttpRequest) -> func.HttpResponse:
    """Per target region: in flight, queued, waiting, the last 24 hours, worst RPO, breaches."""
    replicator = runtime.replicator()
    alert = int(replicator.settings.rpo_alert.total_seconds() // 60)
    return json_answer(
        {"rpoAlertMinutes": alert, "regions": [region_view(status) for status in replicator.status.regions()]}
    )


@blueprint.function_name("openapi")
@blueprint.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """This API described as OpenAPI 3.1."""
    from shared.openapi import document

    return json_answer(document())
