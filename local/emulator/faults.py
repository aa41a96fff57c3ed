"""Injected faults: throttling, server errors, delays, dropped connections and reshaped answers
for N requests.

A `Fault` is also the body of `POST /_admin/faults` (FastAPI validates the dataclass).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .ids import RequestKind

# How a PUT that succeeds is answered, instead of the usual 202 + body + both LRO headers:
# 202 with both headers and no body; 202 with `Location` only and no body; 201 + body; 200 + body.
Answer = Literal["202-empty", "202-location-only", "201", "200"]

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

    Filters: `method`, `kind`, `path_contains` (case-insensitive, on the canonical path) and
    `body_contains` (case-insensitive, on the raw request body). Effects: wait
    `delay_seconds` (real time), then either answer `status` with an ARM error (and
    `Retry-After` if `retry_after` is set), drop the connection, handle the request normally
    but give its successful answer another shape (`answer`, PUTs only), or handle it normally
    (a pure delay).
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
    body_contains: str | None = None
    answer: Answer | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if self.status is not None and self.drop_connection:
            raise ValueError("a fault either answers a status or drops the connection, not both")
        if self.answer is not None and (self.status is not None or self.drop_connection):
            raise ValueError("an answer fault handles the request: it has no status and drops nothing")
        if self.answer is not None and (self.method or "PUT").upper() != "PUT":
            raise ValueError("an answer fault reshapes a PUT's answer: method must be PUT (or left out)")
        if self.status is None and not self.drop_connection and self.delay_seconds == 0 and self.answer is None:
            raise ValueError("a fault needs an effect: status, drop_connection, answer or delay_seconds")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")

    @property
    def code(self) -> str:
        if self.error_code:
            return self.error_code
        return _DEFAULT_CODES.get(self.status or 0, "EmulatedFault")

    def matches(self, method: str, kind: RequestKind, path: str, body: bytes | None = None) -> bool:
        """Every given filter matches; a `body_contains` fault never matches an unread body."""
        wanted_method = "PUT" if self.answer is not None and self.method is None else self.method
        return (
            (wanted_method is None or wanted_method.upper() == method.upper())
            and (self.kind is None or self.kind == kind)
            and (self.path_contains is None or self.path_contains.lower() in path.lower())
            and (
                self.body_contains is None
                or (body is not None and self.body_contains.lower() in body.decode("utf-8", "replace").lower())
            )
        )

    def to_admin(self, remaining: int) -> dict[str, Any]:
        return {**asdict(self), "remaining": remaining}


@dataclass
class _Armed:
    fault: Fault
    remaining: int


@dataclass
class ArmedFaults:
    """The faults armed now, in arming order. Not thread-safe: `World` holds the lock."""

    _armed: list[_Armed] = field(default_factory=list)

    def add(self, fault: Fault) -> None:
        self._armed.append(_Armed(fault, fault.count))

    def clear(self) -> None:
        self._armed.clear()

    def describe(self) -> list[dict[str, Any]]:
        return [armed.fault.to_admin(armed.remaining) for armed in self._armed]

    def read_bodies(self) -> bool:
        """Whether a fault filters on request bodies (only then does the gateway read them first)."""
        return any(armed.fault.body_contains is not None for armed in self._armed)

    def take(self, method: str, kind: RequestKind, path: str, body: bytes | None) -> Fault | None:
        """The first armed fault matching this request, used up by one."""
        for armed in self._armed:
            if armed.fault.matches(method, kind, path, body):
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
                return armed.fault
        return None
