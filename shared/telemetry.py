"""snapcopy's metrics, through OpenTelemetry: to Application Insights when the app has
`APPLICATIONINSIGHTS_CONNECTION_STRING` (the runtime configures the Azure Monitor distro),
and nowhere otherwise (the API's no-op meter). Tests read them with the SDK's in-memory
reader (`Metrics(meter)`).

Each transition is also a record of the `snapcopy.events` logger with its dimensions
(event id, source, chain, region, copy id, transition) as fields: the distro turns those
records into Application Insights custom events (`customEvents`, the dimensions in
`customDimensions`). The logger does not propagate, so the Functions host, which drops
a record's fields, does not log them a second time.

Names and dimensions are a contract with the workbook and the alert rules in `infra/`
(tests/test_monitoring.py holds them against each other): `target_region` on every copy
metric, `family` and `source_disk` on the per-chain RPO.

It must not decide anything: the engine says what happened, this counts it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from opentelemetry import metrics
from opentelemetry.metrics import Meter

from shared import tokens
from shared.notices import Notice, NoticeType

METER = "snapcopy"
EVENTS_LOGGER = "snapcopy.events"  # the distro exports this logger's records as custom events
events_log = logging.getLogger(EVENTS_LOGGER)
events_log.propagate = False
events_log.setLevel(logging.INFO)
NAMES = {
    "started": "snapcopy.copies.started",
    "completed": "snapcopy.copies.completed",
    "failed": "snapcopy.copies.failed",
    "skipped": "snapcopy.copies.skipped",
    "stuck": "snapcopy.copies.stuck",
    "pruned": "snapcopy.copies.pruned",
    "in_flight": "snapcopy.copies.in_flight",
    "queued": "snapcopy.copies.queued",
    "duration": "snapcopy.copy.duration",
    "handoff": "snapcopy.chain.handoff_delay",
    "rpo": "snapcopy.chain.rpo",
    "worst_rpo": "snapcopy.region.worst_rpo",
    "breached": "snapcopy.chains.over_rpo",
    "arm_requests": "snapcopy.arm.requests",
    "arm_throttled": "snapcopy.arm.throttled",
    "published": "snapcopy.notifications.published",
    "unsent": "snapcopy.notifications.unsent",
}
_COUNTED = {
    NoticeType.COPY_STARTED: "started",
    NoticeType.COPY_COMPLETED: "completed",
    NoticeType.COPY_FAILED: "failed",
    NoticeType.COPY_SKIPPED: "skipped",
    NoticeType.COPY_STUCK: "stuck",
    NoticeType.COPY_PRUNED: "pruned",
}


F = TypeVar("F", bound=Callable[..., None])
log = logging.getLogger("snapcopy")


def never_raises(method: F) -> F:
    """Counting must never fail what it counts (an ARM call, a trigger): errors are logged."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            log.exception("metrics: %s failed (nothing else is affected)", method.__name__)

    return cast(F, guarded)


class Metrics:
    """The instruments, made once per process; no method raises."""

    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter or metrics.get_meter(METER)
        self._counters = {
            key: meter.create_counter(NAMES[key], unit="{copy}", description=f"copies {key}")
            for key in _COUNTED.values()
        }
        self._in_flight = meter.create_gauge(NAMES["in_flight"], unit="{copy}", description="copies in flight")
        self._queued = meter.create_gauge(NAMES["queued"], unit="{copy}", description="copies queued")
        self._duration = meter.create_histogram(NAMES["duration"], unit="s", description="start to completion")
        self._handoff = meter.create_histogram(
            NAMES["handoff"], unit="s", description="a copy's completion to its chain's next start"
        )
        self._rpo = meter.create_gauge(NAMES["rpo"], unit="s", description="a chain's recovery point age")
        self._worst = meter.create_gauge(NAMES["worst_rpo"], unit="s", description="the worst RPO in a region")
        self._breached = meter.create_gauge(NAMES["breached"], unit="{chain}", description="chains over the RPO alert")
        self._arm = meter.create_counter(NAMES["arm_requests"], unit="{request}", description="ARM requests sent")
        self._throttled = meter.create_counter(NAMES["arm_throttled"], unit="{request}", description="ARM 429s")
        self._published = meter.create_counter(NAMES["published"], unit="{notice}", description="notices published")
        self._unsent = meter.create_counter(NAMES["unsent"], unit="{notice}", description="publishes left for later")

    @never_raises
    def transitions(self, notices: Sequence[Notice]) -> None:
        """Each committed transition, counted once (a transition commits once), and
        recorded as a custom event with its dimensions."""
        for notice in notices:
            events_log.info("%s %s", notice.type.value, notice.subject, extra=dimensions(notice))
            key = _COUNTED.get(notice.type)
            if key is None:
                continue
            attributes = {"target_region": str(notice.data.get("targetRegion", ""))}
            if notice.type is NoticeType.COPY_FAILED:
                attributes["error_code"] = str((notice.data.get("error") or {}).get("code", ""))
            self._counters[key].add(1, attributes)
            if notice.type is NoticeType.COPY_COMPLETED:
                began, ended = notice.data.get("startedAt"), notice.data.get("completedAt")
                if began and ended:
                    seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(began)).total_seconds()
                    self._duration.record(max(0.0, seconds), {"target_region": attributes["target_region"]})

    @never_raises
    def handoff(self, region: str, delay: timedelta) -> None:
        self._handoff.record(max(0.0, delay.total_seconds()), {"target_region": region})

    @never_raises
    def in_flight(self, region: str, subscription: str, count: int) -> None:
        """Copies in flight in a (subscription, region) as each timer run found them (Azure's cap is 100)."""
        self._in_flight.set(count, {"target_region": region, "subscription": subscription.lower()})

    @never_raises
    def queued(self, region: str, count: int) -> None:
        """Copies queued for a region: each sweep."""
        self._queued.set(count, {"target_region": region})

    @never_raises
    def chain_rpo(self, region: str, family: str, disk: str, rpo: timedelta) -> None:
        self._rpo.set(rpo.total_seconds(), {"target_region": region, "family": family, "source_disk": disk})

    @never_raises
    def region_rpo(self, region: str, worst: timedelta | None, over: int) -> None:
        if worst is not None:
            self._worst.set(worst.total_seconds(), {"target_region": region})
        self._breached.set(over, {"target_region": region})

    @never_raises
    def arm_response(self, method: str, status: int) -> None:
        self._arm.add(1, {"method": method, "status_class": f"{status // 100}xx"})
        if status == 429:
            self._throttled.add(1, {"method": method})

    @never_raises
    def delivered(self, sent: int, left: int) -> None:
        if sent:
            self._published.add(sent)
        if left:
            self._unsent.add(left)


def dimensions(notice: Notice) -> dict[str, str]:
    """A transition's custom dimensions (`microsoft.custom_event.name` names the event)."""
    data = notice.data
    return {
        "microsoft.custom_event.name": notice.type.value,
        "eventId": notice.id,
        "source": str(data.get("sourceSnapshotId") or data.get("sourceDiskId") or notice.subject),
        "chain": _chain(str(data.get("copyId") or ""), str(data.get("targetRegion", ""))),
        "region": str(data.get("targetRegion", "")),
        "copyId": str(data.get("copyId") or ""),
        "transition": notice.type.value.removeprefix("Snapcopy."),
        "state": str(data.get("state", "")),
        "errorCode": str((data.get("error") or {}).get("code", "")),
        "reason": str(data.get("reason") or ""),
    }


def _chain(copy_id: str, region: str) -> str:
    """The chain a copy belongs to, `<family>|<region>` (from the copy id the API issues)."""
    if not copy_id:
        return ""
    try:
        family = tokens.decode(copy_id, max_length=256).split("|", 1)[0]
    except tokens.InvalidToken:
        return ""
    return f"{family}|{region}"
