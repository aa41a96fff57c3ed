"""ARM async operations: what a 202 points at (`Azure-AsyncOperation`, `Location`), and a PUT's answer.

The emulator applies writes at once, so every operation is `Succeeded` as soon as it exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .clock import arm_time
from .errors import ArmError
from .ids import ResourceId


@dataclass(frozen=True)
class Operation:
    """An ARM async operation on `resource`, in the resource's location."""

    name: str
    resource: ResourceId
    location: str
    started_at: datetime
    result: dict[str, Any] | None = None  # an action's answer (grant access: the SAS), not the resource

    @property
    def subscription(self) -> str:
        return self.resource.subscription

    def to_arm(self) -> dict[str, Any]:
        moment = arm_time(self.started_at)
        return {"name": self.name, "status": "Succeeded", "startTime": moment, "endTime": moment}


@dataclass(frozen=True)
class WriteResult:
    """A PUT's answer: the resource and its body, and the async operation if the PUT created it (202)."""

    rid: ResourceId
    body: dict[str, Any]
    operation: Operation | None = None


@dataclass
class Operations:
    """Every operation started, by name (lower-case). Not thread-safe: `World` holds the lock."""

    _by_name: dict[str, Operation] = field(default_factory=dict)

    def start(
        self, resource: ResourceId, location: str, now: datetime, result: dict[str, Any] | None = None
    ) -> Operation:
        operation = Operation(str(uuid.uuid4()), resource, location, now, result)
        self._by_name[operation.name] = operation
        return operation

    def find(self, subscription: str, location: str, name: str) -> Operation:
        """The operation at `/subscriptions/{subscription}/.../locations/{location}/operations/{name}`."""
        operation = self._by_name.get(name.lower())
        if (
            operation is None
            or operation.subscription.lower() != subscription.lower()
            or operation.location != location.replace(" ", "").lower()
        ):
            raise ArmError(404, "ResourceNotFound", f"The operation '{name}' was not found.")
        return operation
