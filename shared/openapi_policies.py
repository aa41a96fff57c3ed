"""The policies part of the OpenAPI document (shared/openapi.py merges it in): the
schemas of `GET /api/policies` and `POST /api/policies/evaluate`, field for field as
shared/policy_api.py answers them.

It must not carry behaviour: it describes what shared/policy_api.py does.
"""

from __future__ import annotations

from typing import Any

from shared.ids import REGION
from shared.openapi_schema import closed, ref
from shared.policies import TOKENS, CopySpeed, Method, Mode
from shared.policy_api import EVALUATE_FIELDS

_REGION = f"^{REGION}$"
_TAGS = {"type": "object", "additionalProperties": {"type": "string"}}


def policy_schemas() -> dict[str, Any]:
    target = closed(
        {
            "region": {"type": "string", "pattern": _REGION},
            "resourceGroup": {"type": "string", "description": "A resource group name or a full id."},
            "diskEncryptionSetId": {"type": "string"},
            "copySpeed": {"enum": [speed.value for speed in CopySpeed], "description": "CopyStart targets only."},
            "retain": closed(
                {"count": {"type": "integer", "minimum": 1}, "days": {"type": "integer", "minimum": 1}}, []
            ),
            "method": {"enum": [method.value for method in Method]},
            "storage": closed(
                {"blobEndpoint": {"type": "string", "format": "uri"}, "container": {"type": "string"}},
                ["blobEndpoint", "container"],
                "Where a diff target's page blobs live (the diff method only).",
            ),
        },
        ["region", "method"],
        "One target region of a policy; fields left out take their defaults.",
    )
    tokens = ", ".join(f"{{{token}}}" for token in TOKENS)
    policy = closed(
        {
            "name": {"type": "string", "pattern": "^[a-z0-9-]{1,40}$"},
            "sources": closed(
                {"scopes": {"type": "array", "items": {"type": "string"}}, "tags": _TAGS},
                [],
                "Which snapshots the policy selects (no scopes: COPY_SOURCE_SCOPES, else everything).",
            ),
            "targets": {"type": "array", "items": target, "minItems": 1},
            "copyTags": {"type": "boolean"},
            "tags": _TAGS,
            "nameTemplate": {"type": "string", "description": f"Tokens: {tokens}."},
            "mode": {"enum": [mode.value for mode in Mode]},
            "implicit": {
                "type": "boolean",
                "description": "True for the policy COPY_TARGET_REGIONS and COPY_TARGET_RESOURCE_GROUP make.",
            },
        },
        ["name", "sources", "targets", "copyTags", "tags", "nameTemplate", "mode", "implicit"],
        "A replication policy in the COPY_POLICIES form (README, 'Replication policies').",
    )
    placed = closed(
        {
            "policy": {"type": "string"},
            "targetRegion": {"type": "string", "pattern": _REGION},
            "targetSnapshotId": {"type": "string"},
            "tags": _TAGS,
            "droppedTags": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Source tags that do not fit in ARM's 50 and are not carried.",
            },
        },
        ["policy", "targetRegion", "targetSnapshotId", "tags", "droppedTags"],
        "A copy an event for this snapshot would queue now: its name and tags.",
    )
    passed = closed(
        {
            "policy": {"type": "string"},
            "targetRegion": {"type": ["string", "null"], "description": "Null: the whole policy passes."},
            "reason": {"type": "string"},
        },
        ["policy", "targetRegion", "reason"],
    )
    evaluation = closed(
        {
            "sourceSnapshotId": {"type": "string"},
            "location": {"type": "string"},
            "tags": _TAGS,
            "copied": {"type": "boolean", "description": "Whether any target would copy it."},
            "reason": {"type": ["string", "null"], "description": "Why it is not copied at all."},
            "copies": {"type": "array", "items": ref("PolicyCopy")},
            "passed": {"type": "array", "items": ref("PolicyPassed")},
        },
        ["sourceSnapshotId", "location", "tags", "copied", "reason", "copies", "passed"],
        "What the policies make of one snapshot, as ARM shows it now.",
    )
    return {
        "Policy": policy,
        "PolicyList": closed({"value": {"type": "array", "items": ref("Policy")}}, ["value"]),
        "PolicyCopy": placed,
        "PolicyPassed": passed,
        "PolicyEvaluation": evaluation,
        "EvaluateRequest": closed(
            {"sourceSnapshotId": {"type": "string", "description": "The snapshot to evaluate."}},
            list(EVALUATE_FIELDS),
        ),
    }


def policy_paths(errors: Any) -> dict[str, Any]:
    """`errors(*names)`: the problem answers, as shared/openapi.py lists them."""
    return {
        "/api/policies": {
            "get": {
                "operationId": "list_policies",
                "tags": ["policies"],
                "summary": "The replication policies in effect",
                "description": (
                    "Every policy of COPY_POLICIES in its JSON form, with defaults filled in; without "
                    "COPY_POLICIES, the one implicit policy that COPY_TARGET_REGIONS and "
                    "COPY_TARGET_RESOURCE_GROUP make (`implicit: true`)."
                ),
                "responses": {
                    "200": {
                        "description": "The policies.",
                        "content": {"application/json": {"schema": ref("PolicyList")}},
                    },
                    **errors(),
                },
            }
        },
        "/api/policies/evaluate": {
            "post": {
                "operationId": "evaluate_policies",
                "tags": ["policies"],
                "summary": "Which policies would copy a snapshot, and why not the others",
                "description": (
                    "Reads the snapshot from ARM and answers, without writing anything, which targets of which "
                    "policies would copy it (with the copy's name and tags) and why the other policies and "
                    "targets would not: its scope, its tags, a region another policy took first, the source's own "
                    "region, or what the snapshot is (not incremental, itself a copy)."
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("EvaluateRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "The evaluation.",
                        "content": {"application/json": {"schema": ref("PolicyEvaluation")}},
                    },
                    **errors("BadRequest", "TooLarge", "Unprocessable", "BadGateway", "Unavailable"),
                },
            }
        },
    }
