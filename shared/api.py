"""The HTTP API (first slice): read-only status of copies and chains.

Routes use function-level keys. Errors are `application/problem+json` (RFC 9457) with a
precise `detail`; nothing internal (stack traces, connection strings) is ever returned.
Copy ids are opaque to callers: base64url of `<family>|<region>|<job key>`, decoded and
validated strictly before any Table read.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from datetime import datetime
from typing import Any

import azure.functions as func

from shared import runtime
from shared.model import ChainHead, ChainKey, CopyState, Job
from shared.store import StateStore

log = logging.getLogger("snapcopy")

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]

_FAMILY_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_REGION_RE = re.compile(r"^[a-z][a-z0-9]{2,39}$")
_KEY_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z\|[a-z0-9_][-a-z0-9_.]{0,79}$")
_MAX_COPY_ID = 256


class InvalidCopyId(ValueError):
    """The text is not a copy id snapcopy issued."""


def copy_id(chain: ChainKey, job_key: str) -> str:
    raw = f"{chain.family_id}|{chain.region}|{job_key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_copy_id(text: str) -> tuple[ChainKey, str]:
    if not text or len(text) > _MAX_COPY_ID or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise InvalidCopyId("a copy id is the base64url token returned by the API")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidCopyId("the copy id does not decode") from None
    family, _, rest = raw.partition("|")
    region, _, key = rest.partition("|")
    if not (_FAMILY_RE.match(family) and _REGION_RE.match(region) and _KEY_RE.match(key)):
        raise InvalidCopyId("the copy id does not name a copy")
    return ChainKey(family, region), key


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_view(job: Job) -> dict[str, Any]:
    """A copy as the API shows it."""
    return {
        "copyId": copy_id(job.chain, job.key),
        "sourceSnapshotId": str(job.source_id),
        "targetSnapshotId": str(job.target_id),
        "targetRegion": job.chain.region,
        "state": job.state.value,
        "percent": job.percent,
        "attempts": job.attempts,
        "queuedAt": _iso(job.queued_at),
        "startedAt": _iso(job.started_at),
        "finishedAt": _iso(job.finished_at),
        "error": {"code": job.error.code, "message": job.error.message} if job.error else None,
        "reason": job.reason or None,
    }


def live_view(store: StateStore, head: ChainHead | None, job: Job) -> dict[str, Any]:
    """A copy with its live percent (kept on the flight row while it copies)."""
    view = job_view(job)
    if job.state == CopyState.COPYING and head is not None:
        flight = store.load_flight(head.region, job.chain)
        if flight is not None and flight.job_key == job.key:
            view["percent"] = flight.percent
    return view


def chain_view(store: StateStore, head: ChainHead, now: datetime) -> dict[str, Any]:
    """One chain: what copies, how many wait, the last completed copy and its age (RPO)."""
    pending = store.load_pending(head)
    copying = next((job for job in pending if job.state == CopyState.COPYING), None)
    age = (now - head.last_completed_at).total_seconds() if head.last_completed_at else None
    return {
        "familyId": head.key.family_id,
        "sourceDiskId": head.disk_id or None,
        "targetRegion": head.key.region,
        "copying": live_view(store, head, copying) if copying else None,
        "queued": sum(1 for job in pending if job.state == CopyState.QUEUED),
        "lastCompletedSnapshotId": head.last_completed_source or None,
        "lastCompletedAt": _iso(head.last_completed_at),
        "lastCompletedAgeSeconds": age,
    }


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def problem(status: int, title: str, detail: str) -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/problem+json")


@blueprint.function_name("get_copy")
@blueprint.route(route="copies/{copyId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_copy(req: func.HttpRequest) -> func.HttpResponse:
    """State, percent, timestamps, target and error of one copy."""
    try:
        chain, key = parse_copy_id(req.route_params.get("copyId", ""))
    except InvalidCopyId as error:
        return problem(400, "Invalid copy id", str(error))
    replicator = runtime.replicator()
    job = replicator.store.load_job(chain, key)
    if job is None:
        return problem(404, "Copy not found", "no copy has that id")
    head = replicator.store.load_head(chain) if job.state == CopyState.COPYING else None
    return _json(live_view(replicator.store, head, job))


@blueprint.function_name("list_chains")
@blueprint.route(route="chains", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_chains(req: func.HttpRequest) -> func.HttpResponse:
    """Every chain (source disk × target region) with its queue and RPO."""
    replicator = runtime.replicator()
    now = replicator.clock()
    chains = [chain_view(replicator.store, head, now) for head in replicator.store.list_heads()]
    return _json({"value": chains})
