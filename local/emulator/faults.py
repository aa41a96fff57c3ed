"""Injected faults: throttling, server errors, delays and dropped connections for N requests.

A `Fault` is also the body of `POST /_admin/faults` (FastAPI validates the dataclass).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .ids import RequestKind

_DEFAULT_CODES = {
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass(frozen=True)
class Fault:
    """Applies to the next `count` ARM requests matching every given filter.

    Effects: wait `delay_seconds` (real time), then either answer `status` with an ARM error
    (and `Retry-After` if `retry_after` is set), drop the connection, or handle the request
    normally (a pure delay).
    """

    method: str | None = None
    kind: RequestKind | None = None
    path_contains: str | None = None
    status: int | None = None
    retry_after: int | None = None
    error_code: str | None = None
    delay_seconds: float = 0.0
    drop_connection: bool = False
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.status is not None and self.drop_connection:
            raise ValueError("a fault either answers a status or drops the connection, not both")
        if self.status is None and not self.drop_connection and self.delay_seconds == 0:
            raise ValueError("a fault needs an effect: status, drop_connection or delay_seconds")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")

    @property
    def code(self) -> str:
        if self.error_code:
            return self.error_code
        return _DEFAULT_CODES.get(self.status or 0, "EmulatedFault")

    def matches(self, method: str, kind: RequestKind, path: str) -> bool:
        return (
            (self.method is None or self.method.upper() == method.upper())
            and (self.kind is None or self.kind == kind)
            and (self.path_contains is None or self.path_contains.lower() in path.lower())
        )

    def to_admin(self, remaining: int) -> dict[str, Any]:
        return {**asdict(self), "remaining": remaining}
