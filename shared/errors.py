"""The exception types shared across layers: a setting that is wrong (`ConfigError`), and
why snapcopy will not carry out an operator's request (the refusals, in domain words).

The engine raises `Refused` with a `Refusal` kind and a precise detail; only the HTTP
layer (shared/api.py) knows which status and Retry-After each kind is answered with.

It must not import HTTP or Azure types: it is shared by the engine and the API.
"""

from __future__ import annotations

from enum import StrEnum


class Refusal(StrEnum):
    INVALID = "invalid"  # the request itself is malformed
    TOO_LARGE = "too-large"  # the body is over the limit
    NOT_FOUND = "not-found"  # no copy by that id
    CANNOT_COPY = "cannot-copy"  # understood, but that source cannot be copied there
    NOT_NOW = "not-now"  # the copy's state does not allow it (cancel, retry)
    ARM_UNAVAILABLE = "arm-unavailable"  # ARM did not answer, or answered incompletely: retry shortly
    ARM_REFUSED = "arm-refused"  # ARM refused snapcopy (its identity, say) or answered oddly


class Refused(Exception):
    """A request snapcopy will not carry out: what kind of refusal, a title and a detail."""

    def __init__(self, kind: Refusal, title: str, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.title = title
        self.detail = detail
        self.retry_after = retry_after  # seconds worth waiting before asking again, when known


def invalid(detail: str) -> Refused:
    return Refused(Refusal.INVALID, "Invalid request", detail)


def unprocessable(detail: str) -> Refused:
    return Refused(Refusal.CANNOT_COPY, "Cannot copy that", detail)


def conflict(detail: str) -> Refused:
    return Refused(Refusal.NOT_NOW, "Not possible in the copy's current state", detail)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""

    def __init__(self, setting: str, value: str | None, expected: str) -> None:
        shown = "<unset>" if value is None else repr(value)
        super().__init__(f"setting {setting} is invalid: got {shown}, expected {expected}")
        self.setting = setting
