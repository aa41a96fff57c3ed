"""Backpressure on ARM: a subscription that ARM throttles, or that keeps failing, is left alone.

ARM's throttling limits are per subscription. Once the SDK's own retries have given up on
a 429, every further call to that subscription would wait out the same backoff again (one
per waiting chain, in a tick with a ten-minute timeout). `GuardedArm` remembers the
subscription until ARM's Retry-After has passed (or THROTTLE_PAUSE without one) and
refuses calls to it at once, without a request; the next run after that asks again.
The pauses are kept with the process's other memories (`caches.Caches`).

It must not retry, sleep or decide what a refusal means for a copy: the parts do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from shared.arm import ArmError, ComputeApi
from shared.engine.caches import Caches
from shared.ids import ResourceGroupId, ResourceId
from shared.model import CopyOrder, Snapshot

T = TypeVar("T")

# How long a throttled subscription is left alone when ARM sent no Retry-After.
THROTTLE_PAUSE = timedelta(seconds=60)
# A subscription whose calls failed this many times in a row (5xx, lost connections, after
# the SDK's retries) is paused as if throttled.
FAILURES_BEFORE_PAUSE = 3
BACKED_OFF = "SubscriptionBackedOff"


class GuardedArm:
    """The ComputeApi every trigger uses: the real client behind a per-subscription pause."""

    def __init__(self, arm: ComputeApi, caches: Caches, clock: Callable[[], datetime]) -> None:
        self._arm = arm
        self._caches = caches  # the pauses and failure counts live with the process's other memories
        self._clock = clock

    @property
    def inner(self) -> ComputeApi:
        return self._arm

    def paused_until(self, subscription: str) -> datetime | None:
        """When ARM may be asked again about `subscription` (None: now)."""
        until = self._caches.paused_until(subscription)
        return until if until is not None and until > self._clock() else None

    def _call(self, subscription: str, action: Callable[[], T]) -> T:
        until = self.paused_until(subscription)
        if until is not None:
            wait = (until - self._clock()).total_seconds()
            raise ArmError(
                BACKED_OFF,
                f"ARM throttled or kept failing subscription {subscription}; snapcopy leaves it alone "
                f"until {until.isoformat()}",
                429,
                retry_after=wait,
            )
        try:
            result = action()
        except ArmError as error:
            self._note(subscription, error)
            raise
        self._caches.note_success(subscription)
        return result

    def _note(self, subscription: str, error: ArmError) -> None:
        """Pause the subscription after a 429, or after FAILURES_BEFORE_PAUSE failures in a
        row (5xx or no answer); any other answer breaks the run of failures."""
        failing = error.status is None or error.status >= 500
        if failing:
            failures = self._caches.note_failure(subscription)
        else:
            failures = 0
            self._caches.note_success(subscription)
        if error.throttled or failures >= FAILURES_BEFORE_PAUSE:
            pause = timedelta(seconds=error.retry_after) if error.retry_after else THROTTLE_PAUSE
            self._caches.pause(subscription, self._clock() + max(pause, timedelta(seconds=1)))

    # --- ComputeApi ----------------------------------------------------------------------

    def get_snapshot(self, snapshot_id: ResourceId) -> Snapshot | None:
        return self._call(snapshot_id.subscription, lambda: self._arm.get_snapshot(snapshot_id))

    def list_snapshots(self, group: ResourceGroupId) -> list[Snapshot]:
        return self._call(group.subscription, lambda: self._arm.list_snapshots(group))

    def list_subscription_snapshots(self, subscription: str) -> list[Snapshot]:
        return self._call(subscription, lambda: self._arm.list_subscription_snapshots(subscription))

    def disk_exists(self, disk_id: ResourceId) -> bool:
        return self._call(disk_id.subscription, lambda: self._arm.disk_exists(disk_id))

    def delete_snapshot(self, snapshot_id: ResourceId) -> None:
        self._call(snapshot_id.subscription, lambda: self._arm.delete_snapshot(snapshot_id))

    def start_copy(self, order: CopyOrder) -> Snapshot | None:
        return self._call(order.target_id.subscription, lambda: self._arm.start_copy(order))

    def grant_read(self, snapshot_id: ResourceId, seconds: int) -> str:
        return self._call(snapshot_id.subscription, lambda: self._arm.grant_read(snapshot_id, seconds))

    def revoke_read(self, snapshot_id: ResourceId) -> None:
        self._call(snapshot_id.subscription, lambda: self._arm.revoke_read(snapshot_id))

    def close(self) -> None:
        self._arm.close()
