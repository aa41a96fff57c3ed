"""Event Grid deliveries → domain observations.

Accepts the Event Grid schema and CloudEvents 1.0 (whichever the subscription uses), as
the Functions SDK objects or as plain dicts. Only `ResourceWriteSuccess` for
`Microsoft.Compute/snapshots/write` is a snapshot written; everything else is named and
ignored. An event we cannot read is `Malformed`: logged with its id and dropped (raising
would only make Event Grid retry the same bytes for 24 hours).

It must not read ARM or the table: an observation is only a hint, checked by the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.ids import InvalidResourceId, ResourceId

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
SNAPSHOT_WRITE = "microsoft.compute/snapshots/write"


@dataclass(frozen=True)
class SnapshotWritten:
    event_id: str
    snapshot_id: ResourceId
    event_time: datetime | None


@dataclass(frozen=True)
class NotOurs:
    event_id: str
    reason: str


@dataclass(frozen=True)
class Malformed:
    event_id: str
    problem: str


Observation = SnapshotWritten | NotOurs | Malformed


def _fields(event: Any) -> tuple[str, str | None, str | None, Any, datetime | None]:
    """(id, type, subject, data, time) from an SDK object or a dict in either schema."""
    if isinstance(event, dict):
        if "specversion" in event:
            return (str(event.get("id") or ""), event.get("type"), event.get("subject"), event.get("data"), None)
        return (str(event.get("id") or ""), event.get("eventType"), event.get("subject"), event.get("data"), None)
    event_id = str(getattr(event, "id", "") or "")
    if hasattr(event, "event_type"):  # azure.functions.EventGridEvent
        return event_id, event.event_type, event.subject, event.get_json(), event.event_time
    if hasattr(event, "specversion"):  # azure.functions.CloudEvent
        data = event.get_json() if hasattr(event, "get_json") else getattr(event, "data", None)
        return event_id, event.type, event.subject, data, getattr(event, "time", None)
    raise TypeError(f"not an Event Grid event: {type(event).__name__}")


def parse_event(event: Any) -> Observation:
    """Read one delivered event."""
    try:
        event_id, event_type, subject, data, event_time = _fields(event)
    except Exception as error:  # a body no schema explains
        return Malformed("", f"unreadable event: {error}")
    if not event_id:
        return Malformed("", "event has no id")
    if event_type != WRITE_SUCCESS:
        return NotOurs(event_id, f"event type {event_type!r} is not {WRITE_SUCCESS}")
    if not isinstance(data, dict):
        return Malformed(event_id, "event data is not a JSON object")
    operation = str(data.get("operationName") or "")
    if operation.lower() != SNAPSHOT_WRITE:
        return NotOurs(event_id, f"operation {operation!r} is not a snapshot write")
    if str(data.get("status") or "Succeeded").lower() != "succeeded":
        return NotOurs(event_id, f"operation status {data.get('status')!r}")
    resource = data.get("resourceUri") or subject
    if not isinstance(resource, str):
        return Malformed(event_id, "event names no resource (no data.resourceUri, no subject)")
    try:
        snapshot_id = ResourceId.parse(resource, kind="snapshots")
    except InvalidResourceId as error:
        return Malformed(event_id, str(error))
    return SnapshotWritten(event_id, snapshot_id, event_time)
