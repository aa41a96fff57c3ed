"""A local Event Grid custom topic: the real HTTPS endpoint the unmodified
`EventGridPublisherClient` publishes CloudEvents to, offline.

It checks what Event Grid checks of a CloudEvents batch (a JSON array of CloudEvents 1.0:
`specversion`, `id`, `source` and `type` on each, at most 1 MB a request) and wants an
Entra ID bearer token (a key or a SAS is refused: snapcopy publishes with its managed
identity). It records what arrived and can fail the next publishes on demand, so tests
and the demo can see notifications and what a failing topic does.

It must not be imported by `shared/`: the function app never ships it.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from local.emulator.server import EmulatorServer

MAX_REQUEST_BYTES = 1024 * 1024  # Event Grid: 1 MB per publish request
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
REQUIRED = ("specversion", "id", "source", "type")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def problems(batch: Any) -> list[str]:
    """What makes a body not a CloudEvents 1.0 batch (empty: it is one)."""
    if not isinstance(batch, list) or not batch:
        return ["the body must be a non-empty JSON array of CloudEvents"]
    found = []
    for index, event in enumerate(batch):
        if not isinstance(event, dict):
            found.append(f"event {index} is not a JSON object")
            continue
        for name in REQUIRED:
            if not isinstance(event.get(name), str) or not event[name]:
                found.append(f"event {index} has no {name}")
        if event.get("specversion") not in (None, "1.0"):
            found.append(f"event {index}: specversion must be 1.0")
    return found


def distinct_by_copy(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How many distinct notice ids each copy had of each type: {copyId: {type: count}}
    (a notice resent with its id counts once; notices of no copy are left out)."""
    ids: dict[str, dict[str, set[str]]] = {}
    for event in events:
        copy = (event.get("data") or {}).get("copyId")
        if copy is not None:
            ids.setdefault(copy, {}).setdefault(event["type"], set()).add(event["id"])
    return {copy: {kind: len(found) for kind, found in kinds.items()} for copy, kinds in ids.items()}


@dataclass
class LocalTopic:
    """What the topic received, and the failures it is told to answer with."""

    received: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    failing: list[int] = field(default_factory=list)  # statuses for the next publishes, in order
    fail_rate: float = 0.0  # chance that any other publish fails (503)
    failed: int = 0  # publishes refused on purpose
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_randomly(self, rate: float, seed: int) -> None:
        """Fail each publish with chance `rate` (0 stops it), replayably."""
        with self._lock:
            self.fail_rate, self._rng = rate, random.Random(seed)

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        with self._lock:
            self.failing.extend([status] * count)

    def reset(self) -> None:
        """Forget what arrived and any failures still due (a test's fresh start)."""
        with self._lock:
            self.received.clear()
            self.failing.clear()
            self.requests = self.failed = 0
            self.fail_rate = 0.0

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self.received if event_type is None or e.get("type") == event_type]

    def app(self) -> FastAPI:
        api = FastAPI()

        @api.post("/api/events")
        async def publish(request: Request) -> Response:
            with self._lock:
                self.requests += 1
                status = self.failing.pop(0) if self.failing else None
                if status is None and self.fail_rate and self._rng.random() < self.fail_rate:
                    status = 503
                self.failed += status is not None
            authorization = request.headers.get("authorization", "")
            if not authorization.lower().startswith("bearer ") or len(authorization) <= len("bearer "):
                return _error(401, "Unauthorized", "an Entra ID bearer token is required (keys and SAS are not used)")
            if status is not None:
                return _error(status, "ServiceUnavailable", "the local topic was told to fail this publish")
            body = await request.body()
            if len(body) > MAX_REQUEST_BYTES:
                return _error(413, "RequestEntityTooLarge", f"{len(body)} bytes; at most {MAX_REQUEST_BYTES}")
            if not request.headers.get("content-type", "").startswith(CLOUDEVENTS_BATCH):
                return _error(400, "BadRequest", f"content-type must be {CLOUDEVENTS_BATCH}")
            try:
                batch = json.loads(body)
            except ValueError:
                return _error(400, "BadRequest", "the body is not JSON")
            found = problems(batch)
            if found:
                return _error(400, "BadRequest", "; ".join(found))
            with self._lock:
                self.received.extend(batch)
            return Response(status_code=200)

        return api


class TopicServer(EmulatorServer):
    """The local topic on `https://127.0.0.1:<port>`; its endpoint is `url + "/api/events"`."""

    def __init__(self, topic: LocalTopic | None = None) -> None:
        self.topic = topic or LocalTopic()
        super().__init__(app=self.topic.app())

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/events"
