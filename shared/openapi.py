"""The HTTP API of `shared.api`, described as an OpenAPI 3.1 document.

Operators and their tools (clients, gateways, API Management) read the contract from
`GET /api/openapi.json` instead of from the code. It is written by hand, in the words an
operator needs, and kept honest by tests/test_openapi.py: every HTTP function appears
under its own operationId, and real answers are validated against the schemas (which
forbid unknown properties, so drift fails the tests). Limits and state names are read from
the implementation so that the two cannot disagree on them.

It must not carry behaviour: it describes what shared/api.py does.
"""

from __future__ import annotations

from typing import Any

from shared.api import COPY_FIELDS, MAX_REGIONS
from shared.ids import GUID, REGION
from shared.model import CopyState
from shared.openapi_policies import policy_paths, policy_schemas
from shared.openapi_schema import ref
from shared.openapi_status import status_paths, status_schemas
from shared.problems import MAX_BODY_BYTES
from shared.service import DEFAULT_PAGE, MAX_PAGE

API_VERSION = "0.1.0"  # the package version (pyproject.toml); the tests check they agree

_SNAPSHOT_ID = r"^/subscriptions/[0-9A-Fa-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Compute/snapshots/[^/]+$"
_REGION = f"^{REGION}$"
_BLOB_URL = r"^https?://[^/?#]+(/[^/?#]+)+\.vhd(\?snapshot=[^&#]+)?$"
_FAMILY = f"^{GUID.replace('A-Fa-f', 'a-f')}$"  # family ids are stored lower-case
_TOKEN = r"^[A-Za-z0-9_-]+$"

_STATES = [state.value for state in CopyState]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _problem(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _location(what: str) -> dict[str, Any]:
    return {
        "Location": {
            "description": what,
            "required": True,
            "schema": {"type": "string", "format": "uri-reference"},
        }
    }


def _copy_properties() -> dict[str, Any]:
    """The fields of `shared.api.job_view`, one for one."""
    when = {"type": ["string", "null"], "format": "date-time"}
    return {
        "copyId": {
            "type": "string",
            "pattern": _TOKEN,
            "maxLength": 256,
            "description": "Opaque id of the copy; use it as is in /api/copies/{copyId}.",
        },
        "sourceSnapshotId": {"type": "string", "pattern": _SNAPSHOT_ID, "description": "ARM id of the source."},
        "targetSnapshotId": {
            "anyOf": [
                {"type": "string", "pattern": _SNAPSHOT_ID},
                {"type": "string", "pattern": _BLOB_URL},
            ],
            "description": "What stands for the source in the target region. CopyStart: the copy's ARM id "
            "(named `<source>-<region>`; it exists once the copy has started). The diff method: the URL of "
            "the chain's page blob, then of its blob snapshot (`?snapshot=<time>`) once the copy succeeded, "
            "which a disk is restored from.",
        },
        "targetRegion": {"type": "string", "pattern": _REGION},
        "state": {
            "type": "string",
            "enum": _STATES,
            "description": "queued: waiting for its turn (an older snapshot of the family is copying to this "
            "region, the region is at its cap, or ARM refused a start and it waits to try again). copying: "
            "CopyStart was sent. succeeded. failed: `error` holds ARM's code and message; the chain went on "
            "with the next snapshot. cancelled: on request. skipped: it can never be copied (`reason` says "
            "why: the source was deleted, or a newer snapshot of the family had already started copying).",
        },
        "percent": {
            "type": "number",
            "minimum": 0,
            "maximum": 100,
            "description": "ARM's completionPercent; live while the copy is copying.",
        },
        "attempts": {
            "type": "integer",
            "minimum": 0,
            "description": "CopyStart requests ARM refused or left unconfirmed (0 when the first one started it).",
        },
        "queuedAt": when,
        "startedAt": when,
        "finishedAt": when,
        "error": {
            "type": ["object", "null"],
            "description": "ARM's error, for a failed copy (or the last refused start of a queued one).",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
            "additionalProperties": False,
        },
        "reason": {
            "type": ["string", "null"],
            "description": "Why the copy is in its state, when snapcopy has something to say (skipped, "
            "cancelled, retried).",
        },
        "policy": {"type": ["string", "null"], "description": "The replication policy that queued it."},
        "prunedAt": {
            **when,
            "description": "When retention deleted the completed copy (its state stays `succeeded`).",
        },
        "prunedBy": {"type": ["string", "null"], "description": "The policy whose `retain` pruned it."},
        "pruneError": {
            "type": ["string", "null"],
            "description": "Why retention left it (a lock, or a snapshot that is not snapcopy's); not retried.",
        },
        "sourceReady": {
            "type": "boolean",
            "description": "False while the source cannot be copied yet: a Premium SSD v2 or Ultra Disk "
            "snapshot runs a background copy of its own first (its snapshotAccessState is Pending or "
            "InstantAccess). The copy keeps its place in the chain and spends no attempt meanwhile.",
        },
        "sourcePercent": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 100,
            "description": "The source's own completionPercent while it is not ready (null otherwise).",
        },
        "stuck": {
            "type": "boolean",
            "description": "True while a copy in flight has shown no new completionPercent for "
            "STUCK_AFTER_MINUTES (ARM still reports it copying; the log has a warning).",
        },
        "lastProgressAt": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "When a copy in flight last showed new progress (null before the first).",
        },
    }


def _schemas() -> dict[str, Any]:
    copy_properties = _copy_properties()
    return {
        "Copy": {
            "type": "object",
            "description": "One source snapshot's copy into one target region.",
            "properties": copy_properties,
            "required": list(copy_properties),
            "additionalProperties": False,
        },
        "CreatedCopy": {
            "type": "object",
            "description": "A Copy, and whether this request created it (false: it existed already).",
            "properties": {**copy_properties, "created": {"type": "boolean"}},
            "required": [*copy_properties, "created"],
            "additionalProperties": False,
        },
        "CopyRequest": {
            "type": "object",
            "description": "Exactly one of sourceSnapshotId (copy one snapshot) or sourceDiskId (backfill a disk).",
            "properties": {
                "sourceSnapshotId": {
                    "type": "string",
                    "description": "ARM id of an incremental snapshot to copy.",
                    "examples": [
                        "/subscriptions/6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d/resourceGroups/prod-rg"
                        "/providers/Microsoft.Compute/snapshots/vm0-data0-20261120t0300"
                    ],
                },
                "sourceDiskId": {
                    "type": "string",
                    "description": "ARM id of a managed disk: every existing incremental snapshot of it is copied.",
                    "examples": [
                        "/subscriptions/6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d/resourceGroups/prod-rg"
                        "/providers/Microsoft.Compute/disks/vm0-data0"
                    ],
                },
                "targetRegions": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "maxItems": MAX_REGIONS,
                    "description": "Regions to copy to, each one of COPY_TARGET_REGIONS (default: all of them).",
                },
            },
            "oneOf": [{"required": ["sourceSnapshotId"]}, {"required": ["sourceDiskId"]}],
            "additionalProperties": False,
        },
        "CopyAccepted": {
            "type": "object",
            "description": "What a copy or backfill request led to.",
            "properties": {
                "copies": {
                    "type": "array",
                    "items": ref("CreatedCopy"),
                    "description": "Every copy the request names (one per snapshot and region), oldest first, "
                    "as it stands now.",
                },
                "ignored": {
                    "type": "array",
                    "description": "Snapshots of a backfilled disk that are not copied, and why (not "
                    "incremental, outside COPY_SOURCE_SCOPES, already in every target region). Always empty "
                    "for one snapshot.",
                    "items": {
                        "type": "object",
                        "properties": {"sourceSnapshotId": {"type": "string"}, "reason": {"type": "string"}},
                        "required": ["sourceSnapshotId", "reason"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["copies", "ignored"],
            "additionalProperties": False,
        },
        "CopyPage": {
            "type": "object",
            "properties": {
                "value": {"type": "array", "items": ref("Copy")},
                "continuationToken": {
                    "type": "string",
                    "pattern": _TOKEN,
                    "maxLength": 512,
                    "description": "Present when the page is full, so more copies may remain (the last page may be "
                    "empty): send it back with the same filters.",
                },
                "nextLink": {
                    "type": "string",
                    "format": "uri-reference",
                    "description": "The next page's URL (same filters; add your function key).",
                },
            },
            "required": ["value"],
            "dependentRequired": {"continuationToken": ["nextLink"], "nextLink": ["continuationToken"]},
            "additionalProperties": False,
        },
        "Chain": {
            "type": "object",
            "description": "One source disk's snapshot family copied into one target region.",
            "properties": {
                "familyId": {"type": "string", "pattern": _FAMILY, "description": "incrementalSnapshotFamilyId."},
                "sourceDiskId": {"type": ["string", "null"]},
                "targetRegion": {"type": "string", "pattern": _REGION},
                "copying": {
                    "anyOf": [ref("Copy"), {"type": "null"}],
                    "description": "The copy in flight (at most one per chain), with its live percent.",
                },
                "queued": {"type": "integer", "minimum": 0, "description": "Copies waiting their turn."},
                "lastCompletedSnapshotId": {"type": ["string", "null"]},
                "lastCompletedAt": {"type": ["string", "null"], "format": "date-time"},
                "lastCompletedAgeSeconds": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "description": "Seconds since the last copy completed.",
                },
                "rpoSeconds": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "description": "The chain's recovery point in the region: now minus timeCreated of the newest "
                    "source copied there, or of the oldest still waiting when none is; null with nothing to protect.",
                },
                "rpoBreached": {"type": "boolean", "description": "rpoSeconds is over RPO_ALERT_MINUTES."},
            },
            "required": [
                "familyId",
                "sourceDiskId",
                "targetRegion",
                "copying",
                "queued",
                "lastCompletedSnapshotId",
                "lastCompletedAt",
                "lastCompletedAgeSeconds",
                "rpoSeconds",
                "rpoBreached",
            ],
            "additionalProperties": False,
        },
        "ChainList": {
            "type": "object",
            "properties": {"value": {"type": "array", "items": ref("Chain")}},
            "required": ["value"],
            "additionalProperties": False,
        },
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem document; `detail` names the field or value at fault.",
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
            },
            "required": ["type", "title", "status", "detail"],
            "additionalProperties": False,
        },
    }


def _problem_response(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def _responses() -> dict[str, Any]:
    return {
        "BadRequest": _problem_response("The request is malformed; `detail` says which field or parameter and why."),
        "Unauthorized": {
            "description": "No valid function key. Answered by the Functions host before snapcopy runs: no body."
        },
        "NotFound": _problem_response("No copy has that id."),
        "Conflict": _problem_response("Not possible in the copy's current state; `detail` says why."),
        "TooLarge": _problem_response(f"The body is larger than {MAX_BODY_BYTES} bytes."),
        "Unprocessable": _problem_response(
            "Well-formed, but snapcopy cannot copy that: a region not in COPY_TARGET_REGIONS, a source outside "
            "COPY_SOURCE_SCOPES, a snapshot ARM does not have, one that is not incremental or already in a target "
            "region, a disk with no snapshots that can be copied."
        ),
        "BadGateway": _problem_response("ARM refused snapcopy's identity (check its RBAC). Nothing was recorded."),
        "Unavailable": _problem_response("ARM did not answer. Nothing was recorded: try again.", retry_after=True),
        "InternalError": _problem_response("snapcopy failed unexpectedly; the function's log has the details."),
    }


def _errors(*names: str) -> dict[str, Any]:
    status = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "NotFound": "404",
        "Conflict": "409",
        "TooLarge": "413",
        "Unprocessable": "422",
        "InternalError": "500",
        "BadGateway": "502",
        "Unavailable": "503",
    }
    return {status[name]: _problem(name) for name in ("Unauthorized", *names, "InternalError")}


_COPY_ID = {
    "name": "copyId",
    "in": "path",
    "required": True,
    "description": "The copyId the API returned.",
    "schema": {"type": "string", "pattern": _TOKEN, "maxLength": 256},
}


def _paths() -> dict[str, Any]:
    accepted = {
        "content": _json(ref("CopyAccepted")),
        "headers": _location("The copy (one snapshot), or the list of the disk's copies (backfill)."),
    }
    return {
        "/api/copies": {
            "post": {
                "operationId": "request_copies",
                "tags": ["copies"],
                "summary": "Copy one snapshot now, or backfill every snapshot of a disk",
                "description": (
                    "With `sourceSnapshotId`, copies that incremental snapshot to each target region. With "
                    "`sourceDiskId`, backfills the disk: every existing incremental snapshot of it that ARM lists "
                    "in the disk's subscription (in any resource group, even if the disk has been deleted) is "
                    "queued, oldest first; snapshots that cannot be copied are listed under `ignored` with the "
                    "reason.\n\n"
                    "The copies go through the same engine as Event Grid events: one copy at a time per chain, in "
                    "creation order, within the region's cap. A snapshot older than one of its family that has "
                    "already started copying to a region can never be copied there; its copy is `skipped`.\n\n"
                    "Idempotent: a copy that already exists for a snapshot and region is returned as it is, with "
                    "`created: false`, whatever its state (use `/retry` for a failed one). Repeating a request "
                    "creates nothing new.\n\n"
                    "Answers 202 while any copy named is queued or copying, and 200 once all of them are final. "
                    "`targetRegions` defaults to every region of COPY_TARGET_REGIONS. Everything is checked "
                    "(ids, regions, scopes, what ARM says about the source) before anything is recorded."
                ),
                "requestBody": {
                    "required": True,
                    "description": f"A JSON object with only the fields {', '.join(COPY_FIELDS)}; at most "
                    f"{MAX_BODY_BYTES} bytes.",
                    "content": _json(ref("CopyRequest")),
                },
                "responses": {
                    "200": {"description": "Every copy named is already final.", **accepted},
                    "202": {"description": "Queued or copying: follow Location to see progress.", **accepted},
                    **_errors("BadRequest", "TooLarge", "Unprocessable", "BadGateway", "Unavailable"),
                },
            },
            "get": {
                "operationId": "list_copies",
                "tags": ["copies"],
                "summary": "List copies, filtered, a page at a time",
                "description": (
                    "Copies chain by chain (a chain is a disk's snapshot family in one target region), and within "
                    "a chain oldest snapshot first. Filters combine. When more copies remain, the answer carries "
                    "`continuationToken` and `nextLink`; send the token back with the same filters. A query "
                    "parameter this operation does not know is refused (400), so that a misspelt filter never "
                    "widens a listing silently."
                ),
                "parameters": [
                    {
                        "name": "sourceDiskId",
                        "in": "query",
                        "description": "Only copies of this disk's snapshots (ARM disk id).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "targetRegion",
                        "in": "query",
                        "description": "Only copies into this region.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "description": "Only copies in this state.",
                        "schema": {"type": "string", "enum": _STATES},
                    },
                    {
                        "name": "top",
                        "in": "query",
                        "description": "Page size.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                    },
                    {
                        "name": "continuationToken",
                        "in": "query",
                        "description": "The continuationToken of the previous page.",
                        "schema": {"type": "string", "pattern": _TOKEN, "maxLength": 512},
                    },
                ],
                "responses": {
                    "200": {"description": "One page of copies.", "content": _json(ref("CopyPage"))},
                    **_errors("BadRequest"),
                },
            },
        },
        "/api/copies/{copyId}": {
            "parameters": [_COPY_ID],
            "get": {
                "operationId": "get_copy",
                "tags": ["copies"],
                "summary": "One copy: state, live percent, timestamps, target and ARM error",
                "description": "The copy as it stands now; while it copies, `percent` is ARM's latest.",
                "responses": {
                    "200": {"description": "The copy.", "content": _json(ref("Copy"))},
                    **_errors("BadRequest", "NotFound"),
                },
            },
            "delete": {
                "operationId": "cancel_copy",
                "tags": ["copies"],
                "summary": "Cancel a queued copy",
                "description": (
                    "A queued copy becomes `cancelled` and is never started. A copy already sent to ARM cannot be "
                    "stopped (CopyStart has no cancel): cancelling one that is copying, or whose CopyStart is "
                    "being sent, is refused with 409 and it will finish; delete the target snapshot afterwards if "
                    "it is not wanted. A copy that already ended is refused with 409 too. Cancelling a cancelled "
                    "copy answers 200 and changes nothing."
                ),
                "responses": {
                    "200": {"description": "The copy, now cancelled.", "content": _json(ref("Copy"))},
                    **_errors("BadRequest", "NotFound", "Conflict"),
                },
            },
        },
        "/api/copies/{copyId}/retry": {
            "parameters": [_COPY_ID],
            "post": {
                "operationId": "retry_copy",
                "tags": ["copies"],
                "summary": "Queue a failed or cancelled copy again",
                "description": (
                    "Only a `failed` or `cancelled` copy can be retried, and only while no newer snapshot of the "
                    "same family has started copying to that region: Azure copies a family in creation order "
                    "only, so otherwise it can never be copied there (409). A copy whose source snapshot is gone "
                    "cannot be retried (409). The failed target snapshot ARM left behind is deleted first (a "
                    "snapshot of that name that is not snapcopy's copy of this source is refused with 409); "
                    "of two concurrent retries of one copy only one goes on (the other gets 409). The copy is "
                    "queued with its attempts reset and started at once if the chain and the region allow it."
                ),
                "responses": {
                    "202": {
                        "description": "Queued again (or already copying): follow Location to see progress.",
                        "content": _json(ref("Copy")),
                        "headers": _location("The copy."),
                    },
                    **_errors("BadRequest", "NotFound", "Conflict", "BadGateway", "Unavailable"),
                },
            },
        },
        "/api/chains": {
            "get": {
                "operationId": "list_chains",
                "tags": ["chains"],
                "summary": "Every chain with its queue and recovery point",
                "description": (
                    "One entry per source disk's snapshot family and target region: the copy in flight with its "
                    "live percent, how many copies wait, and the last completed snapshot with its age in seconds "
                    "(the chain's RPO in that region; null until a copy completes)."
                ),
                "responses": {
                    "200": {"description": "Every chain.", "content": _json(ref("ChainList"))},
                    **_errors(),
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["meta"],
                "summary": "This document",
                "description": (
                    "This API described as OpenAPI 3.1, for clients, gateways and API Management to import. Like "
                    "every other route, it needs a function key."
                ),
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": _json({"type": "object", "required": ["openapi", "info", "paths"]}),
                    },
                    **_errors(),
                },
            },
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of snapcopy's HTTP API (a fresh dict: callers may change it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "snapcopy",
            "version": API_VERSION,
            "summary": "Copies Azure managed-disk incremental snapshots to other regions.",
            "description": (
                "On-demand copies, disk backfill, retry, cancel and status of snapcopy, which copies incremental "
                "snapshots with CopyStart in creation order, one at a time per disk and target region, within "
                "Azure's per-region cap. Send the function key in the `x-functions-key` header or the `code` "
                "query parameter. Errors are `application/problem+json` (RFC 9457)."
            ),
        },
        "tags": [
            {"name": "copies", "description": "Copies of snapshots: request, list, inspect, cancel, retry."},
            {"name": "chains", "description": "Disk families per target region, with their RPO."},
            {"name": "policies", "description": "The replication policies, and what they make of a snapshot."},
            {"name": "meta", "description": "About the API itself."},
        ],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "paths": {**_paths(), **policy_paths(_errors), **status_paths(_errors)},
        "components": {
            "schemas": {**_schemas(), **policy_schemas(), **status_schemas()},
            "responses": _responses(),
            "securitySchemes": {
                "functionKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "A function or host key of the function app.",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "The same key as a query parameter.",
                },
            },
        },
    }
