"""HTTP plumbing every route shares: JSON answers, problem documents (RFC 9457), the body
read as a JSON object, parsed ids and regions, and the mapping of refusals to statuses.

It must not know a route or call the engine: the API modules do.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared import runtime
from shared.errors import Refusal, Refused, invalid
from shared.ids import REGION_RE, InvalidResourceId, ResourceId

log = logging.getLogger("snapcopy")

MAX_BODY_BYTES = 16 * 1024
# How each kind of refusal is answered (README, "Errors").
STATUS = {
    Refusal.INVALID: 400,
    Refusal.NOT_FOUND: 404,
    Refusal.NOT_NOW: 409,
    Refusal.TOO_LARGE: 413,
    Refusal.CANNOT_COPY: 422,
    Refusal.ARM_REFUSED: 502,
    Refusal.ARM_UNAVAILABLE: 503,
}
Handler = Callable[[func.HttpRequest], func.HttpResponse]


def json_answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=dict(headers or {})
    )


def problem(status: int, title: str, detail: str, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/problem+json", headers=dict(headers or {})
    )


def parse_region(text: str, field: str) -> str:
    region = text.strip().lower()
    if not REGION_RE.fullmatch(region):
        raise invalid(f"{field}: {text!r} is not an Azure region name (like 'westus3')")
    return region


def parse_id(text: str, kind: str, field: str) -> ResourceId:
    try:
        return ResourceId.parse(text.strip(), kind=kind)
    except InvalidResourceId as error:
        raise invalid(f"{field}: {error}") from None


def answers_problems(handler: Handler) -> Handler:
    """Refusals become problem documents; anything unexpected a bare 500 (logged here, not
    returned: no stack trace or setting ever reaches the caller)."""

    @functools.wraps(handler)
    def wrapped(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except Refused as refusal:
            headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None
            return problem(STATUS[refusal.kind], refusal.title, refusal.detail, headers)
        except Exception:
            # the path only: a query string may carry the function key (`code`)
            log.exception("%s %s failed", req.method, urlsplit(req.url).path)
            return problem(500, "Internal error", "snapcopy failed to answer; the function's log has the details")
        finally:
            runtime.publish_notices()  # what the request committed (never raises)

    return wrapped


def shown(value: Any) -> str:
    """A caller's value, quoted and cut short, for a detail."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_object(req: func.HttpRequest) -> dict[str, Any]:
    """The body as a JSON object, or a precise refusal."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise Refused(
            Refusal.TOO_LARGE, "Body too large", f"the body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted"
        )
    if not body.strip():
        raise invalid('the body is empty; send a JSON object like {"sourceSnapshotId": "/subscriptions/..."}')
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise invalid("the body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise invalid(f"the body is not JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    except (ValueError, RecursionError):
        raise invalid("the body is not JSON snapcopy can read (nested too deeply, or a number too long)") from None
    if not isinstance(data, dict):
        raise invalid(f"the body must be a JSON object, not {type(data).__name__}")
    return data
