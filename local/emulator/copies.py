"""One CopyStart copy: its progress, state and failure, all derived from the clock at read time.

The ledger of copies outlives the snapshots (ground truth for tests and the copy-order rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from .clock import arm_time

CopyState = Literal["copying", "succeeded", "failed"]

CANCELLED_CODE = "CopyCancelled"


def progress(started_at: datetime, duration_seconds: float, at: datetime) -> float:
    """Linear 0.0 -> 100.0 over the duration, floored to one decimal so 100.0 means done and nothing else."""
    if at >= started_at + timedelta(seconds=duration_seconds):
        return 100.0
    elapsed = (at - started_at).total_seconds()
    return math.floor(1000.0 * elapsed / duration_seconds) / 10.0


@dataclass(frozen=True)
class CopyError:
    """ARM's `copyCompletionError`."""

    code: str
    message: str

    def to_arm(self) -> dict[str, str]:
        return {"errorCode": self.code, "errorMessage": self.message}


@dataclass
class Copy:
    """A copy from `source_id` into `region` (the target snapshot `target_id`).

    Progress is linear over `duration_seconds`; a failure freezes it where it was.
    """

    source_id: str
    target_id: str
    family_id: str
    region: str
    subscription: str
    source_time_created: datetime
    started_at: datetime
    duration_seconds: float
    failed_at: datetime | None = None
    error: CopyError | None = None
    target_deleted: bool = False

    @property
    def finishes_at(self) -> datetime:
        return self.started_at + timedelta(seconds=self.duration_seconds)

    def state(self, now: datetime) -> CopyState:
        if self.error is not None:
            return "failed"
        return "succeeded" if now >= self.finishes_at else "copying"

    def in_flight(self, now: datetime) -> bool:
        """What Azure's rules count: started, not finished, not failed."""
        return self.state(now) == "copying"

    def percent(self, now: datetime) -> float:
        """0.0 -> 100.0 (see `progress`), frozen where it was if the copy failed."""
        return progress(self.started_at, self.duration_seconds, self.failed_at or now)

    def fail(self, now: datetime, code: str, message: str) -> bool:
        """Fail the copy if it is still copying; a finished copy cannot fail any more."""
        if not self.in_flight(now):
            return False
        self.failed_at = now
        self.error = CopyError(code, message)
        return True

    def to_admin(self, now: datetime) -> dict[str, Any]:
        """The ground-truth row of `GET /_admin/copies`."""
        state = self.state(now)
        finished_at = {"copying": None, "succeeded": self.finishes_at, "failed": self.failed_at}[state]
        return {
            "source_id": self.source_id,
            "target_id": self.target_id,
            "family_id": self.family_id,
            "region": self.region,
            "subscription": self.subscription,
            "source_time_created": arm_time(self.source_time_created),
            "started_at": arm_time(self.started_at),
            "finished_at": arm_time(finished_at) if finished_at is not None else None,
            "duration_seconds": self.duration_seconds,
            "state": state,
            "percent": self.percent(now),
            "error": self.error.to_arm() if self.error is not None else None,
            "target_deleted": self.target_deleted,
        }
