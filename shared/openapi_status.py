"""The status part of the OpenAPI document (shared/openapi.py merges it in): the schema of
`GET /api/status`, field for field as shared/api.py `region_view` answers it.

It must not carry behaviour: it describes what shared/api.py does.
"""

from __future__ import annotations

from typing import Any

from shared.ids import REGION
from shared.openapi_schema import closed, ref

_COUNT = {"type": "integer", "minimum": 0}
_SECONDS = {"type": ["number", "null"], "minimum": 0}


def status_schemas() -> dict[str, Any]:
    over = closed(
        {"familyId": {"type": "string"}, "sourceDiskId": {"type": ["string", "null"]}, "rpoSeconds": _SECONDS},
        description="A chain whose RPO is over RPO_ALERT_MINUTES.",
    )
    region = closed(
        {
            "targetRegion": {"type": "string", "pattern": f"^{REGION}$"},
            "inFlight": {**_COUNT, "description": "Copies ARM is making now."},
            "queued": {**_COUNT, "description": "Copies waiting their turn."},
            "waitingForCap": {**_COUNT, "description": "Chains with a copy ready to start and no free slot."},
            "waitingForSource": {**_COUNT, "description": "Queued copies whose source's own copy still runs."},
            "completedLast24h": _COUNT,
            "failedLast24h": _COUNT,
            "worstRpoSeconds": {**_SECONDS, "description": "The largest RPO of the region's chains."},
            "chainsOverRpo": {"type": "array", "items": ref("ChainOverRpo")},
        },
        description="One target region, summed over its target subscriptions.",
    )
    return {
        "ChainOverRpo": over,
        "RegionStatus": region,
        "Status": closed(
            {
                "rpoAlertMinutes": {"type": "integer", "minimum": 1},
                "regions": {"type": "array", "items": ref("RegionStatus")},
            }
        ),
    }


def status_paths(errors: Any) -> dict[str, Any]:
    return {
        "/api/status": {
            "get": {
                "operationId": "get_status",
                "tags": ["chains"],
                "summary": "Replication at a glance, per target region",
                "description": (
                    "Per target region: copies in flight, queued, chains waiting for the cap and copies waiting "
                    "for their source, copies completed and failed in the last 24 hours, the worst RPO and the "
                    "chains over RPO_ALERT_MINUTES. It reads every chain (a query each), like /api/chains."
                ),
                "responses": {
                    "200": {
                        "description": "The status.",
                        "content": {"application/json": {"schema": ref("Status")}},
                    },
                    **errors(),
                },
            }
        }
    }
