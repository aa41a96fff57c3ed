"""Event Grid (subscription system topic) events for resource writes and deletes.

Shaped exactly like `shared/samples/eventgrid-*.json`: one dict per event, `subject` and
`resourceUri` with lower-case `resourcegroups`, no resource body (the app must GET it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .clock import event_time
from .ids import ResourceId

DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-000000000001"
_PRINCIPAL_ID = "1a2b3c4d-5e6f-47a8-b9c0-d1e2f3a4b5c6"
_TOKEN_SECONDS = 3900


@dataclass(frozen=True)
class RequestInfo:
    """What an event says about the ARM request that caused it."""

    method: str
    api_version: str = "2024-03-02"
    client_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_ip: str = "127.0.0.1"


def resource_event(
    rid: ResourceId,
    action: Literal["write", "delete"],
    request: RequestInfo,
    now: datetime,
    tenant_id: str = DEFAULT_TENANT_ID,
) -> dict[str, Any]:
    """A `ResourceWriteSuccess` or `ResourceDeleteSuccess` event for `rid`."""
    operation = f"{rid.type}/{action}"
    subscription_scope = f"/subscriptions/{rid.subscription}"
    issued = int(now.timestamp())
    return {
        "subject": rid.subject,
        "eventType": (
            "Microsoft.Resources.ResourceWriteSuccess"
            if action == "write"
            else "Microsoft.Resources.ResourceDeleteSuccess"
        ),
        "eventTime": event_time(now),
        "id": str(uuid.uuid4()),
        "data": {
            "authorization": {
                "scope": rid.subject,
                "action": operation,
                "evidence": {
                    "role": "Contributor",
                    "roleAssignmentScope": subscription_scope,
                    "roleAssignmentId": "0e8a7c1d2b3f4a5e9d8c7b6a5f4e3d2c",
                    "roleDefinitionId": "b24988ac618042a0ab8820f7382dd24c",
                    "principalId": _PRINCIPAL_ID.replace("-", ""),
                    "principalType": "ServicePrincipal",
                },
            },
            "claims": {
                "aud": "https://management.core.windows.net/",
                "iss": f"https://sts.windows.net/{tenant_id}/",
                "iat": str(issued),
                "nbf": str(issued),
                "exp": str(issued + _TOKEN_SECONDS),
                "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                "http://schemas.microsoft.com/identity/claims/objectidentifier": _PRINCIPAL_ID,
            },
            "correlationId": request.correlation_id,
            "httpRequest": {
                "clientRequestId": request.client_request_id,
                "clientIpAddress": request.client_ip,
                "method": request.method,
                "url": f"https://management.azure.com{rid.subject}?api-version={request.api_version}",
            },
            "resourceProvider": "Microsoft.Compute",
            "resourceUri": rid.subject,
            "operationName": operation,
            "status": "Succeeded",
            "subscriptionId": rid.subscription,
            "tenantId": tenant_id,
        },
        "dataVersion": "2",
        "metadataVersion": "1",
        "topic": subscription_scope,
    }
