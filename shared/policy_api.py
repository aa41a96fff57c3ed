"""The HTTP API about replication policies: the policies in effect, and what they make of
one snapshot (`POST /api/policies/evaluate`), so operators can ask why without reading
the settings or the code.

Handlers only parse and shape; `shared/engine/explain.py` reads and decides. It must not
read the store or ARM.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared import runtime
from shared.errors import invalid
from shared.placement import Placement
from shared.policies import Policy, policy_document
from shared.problems import answers_problems, json_answer, parse_id, read_object, shown
from shared.service import Evaluation

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]

EVALUATE_FIELDS = ("sourceSnapshotId",)


def policy_view(policy: Policy) -> dict[str, Any]:
    return {**policy_document(policy), "implicit": policy.implicit}


def placement_view(placement: Placement) -> dict[str, Any]:
    return {
        "policy": placement.policy,
        "targetRegion": placement.region,
        "targetSnapshotId": str(placement.target_id),
        "tags": dict(placement.tags),
        "droppedTags": list(placement.dropped_tags),
    }


def evaluation_view(evaluation: Evaluation) -> dict[str, Any]:
    snapshot = evaluation.snapshot
    return {
        "sourceSnapshotId": str(snapshot.id),
        "location": snapshot.location,
        "tags": snapshot.tags,
        "copied": bool(evaluation.copies),
        "reason": evaluation.reason,
        "copies": [placement_view(placement) for placement in evaluation.copies],
        "passed": [
            {"policy": item.policy, "targetRegion": item.region, "reason": item.reason} for item in evaluation.passed
        ],
    }


@blueprint.function_name("list_policies")
@blueprint.route(route="policies", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def list_policies(req: func.HttpRequest) -> func.HttpResponse:
    """The replication policies in effect (the implicit one when COPY_POLICIES is unset)."""
    explainer = runtime.replicator().explainer
    return json_answer({"value": [policy_view(policy) for policy in explainer.policies()]})


@blueprint.function_name("evaluate_policies")
@blueprint.route(route="policies/evaluate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers_problems
def evaluate_policies(req: func.HttpRequest) -> func.HttpResponse:
    """Which policies and targets would copy a snapshot, and why not the others; writes nothing."""
    data = read_object(req)
    unknown = sorted(set(data) - set(EVALUATE_FIELDS))
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}; the body takes only {', '.join(EVALUATE_FIELDS)}")
    text = data.get("sourceSnapshotId")
    if not isinstance(text, str):
        raise invalid(f"sourceSnapshotId must be a snapshot id, not {shown(text)}")
    snapshot_id = parse_id(text, "snapshots", "sourceSnapshotId")
    explainer = runtime.replicator().explainer
    return json_answer(evaluation_view(explainer.evaluate(snapshot_id)))
