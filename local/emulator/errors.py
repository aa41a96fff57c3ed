"""The one error type the emulator raises: an ARM error with its HTTP status and code.

Rules live in pure Python (`world`); this exception is how they tell the HTTP layer what
ARM would answer, without importing anything HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ArmError(Exception):
    """An ARM error response: `{"error": {"code", "message"}}` with `status` and extra headers."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    """ARM's 404 for a resource that does not exist (resource groups exist implicitly here)."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found.",
    )


def bad_request(message: str, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message)
