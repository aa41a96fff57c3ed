"""snapcopy's HTTP API, as the command line calls it: one request, its JSON or its problem.

Depends on the API only (its OpenAPI document, `GET /api/openapi.json`, is the contract),
never on the function app's code or settings. The key is sent as `x-functions-key`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import requests

TIMEOUT = (10.0, 120.0)  # connect, read (seconds); a backfill lists a whole subscription


class ApiError(Exception):
    """An HTTP error (or no answer at all), told as its problem document's title and detail."""

    def __init__(self, status: int | None, title: str, detail: str) -> None:
        super().__init__(f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail

    def __str__(self) -> str:
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.title}: {self.detail}"


class Client:
    """snapcopy's HTTP API at `url` (the function app's address, with or without `/api`)."""

    def __init__(self, url: str, key: str | None, *, timeout: tuple[float, float] = TIMEOUT) -> None:
        base = url.rstrip("/")
        self.base = base[: -len("/api")] if base.endswith("/api") else base
        self.timeout = timeout
        self.has_key = bool(key)
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json, application/problem+json"
        if key:
            self.session.headers["x-functions-key"] = key

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """The JSON answer to one request; `path` is `/api/...` or an absolute link."""
        url = self.base + path if path.startswith("/") else path
        try:
            response = self.session.request(method, url, params=params, json=body, timeout=self.timeout)
        except requests.RequestException as error:
            raise ApiError(
                None, "No answer", f"{method} {url.split('?')[0]} failed: {error.__class__.__name__}"
            ) from None
        if response.status_code >= 400:
            raise self._problem(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "Unexpected answer", f"{method} {path} did not answer JSON") from None

    def _problem(self, response: requests.Response) -> ApiError:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and (doc.get("title") or doc.get("detail")):
            return ApiError(response.status_code, str(doc.get("title") or response.reason), str(doc.get("detail", "")))
        if response.status_code == 401:
            detail = "the function key was refused" if self.has_key else "no function key: pass --key or set it"
            return ApiError(401, "Unauthorized", f"{detail} (SNAPCOPY_KEY)")
        if response.status_code == 404:
            return ApiError(404, "Not found", f"{self.base} has no such route; is --url the function app's address?")
        return ApiError(response.status_code, response.reason or "HTTP error", "the answer has no problem details")

    # --- the API ------------------------------------------------------------------------

    def request_copies(self, field: str, source: str, regions: Sequence[str] | None) -> Any:
        body: dict[str, Any] = {field: source}
        if regions:
            body["targetRegions"] = list(regions)
        return self.call("POST", "/api/copies", body=body)

    def copy(self, copy_id: str) -> Any:
        return self.call("GET", f"/api/copies/{quote(copy_id, safe='')}")

    def cancel(self, copy_id: str) -> Any:
        return self.call("DELETE", f"/api/copies/{quote(copy_id, safe='')}")

    def retry(self, copy_id: str) -> Any:
        return self.call("POST", f"/api/copies/{quote(copy_id, safe='')}/retry")

    def chains(self) -> Any:
        return self.call("GET", "/api/chains")

    def policies(self) -> Any:
        return self.call("GET", "/api/policies")

    def evaluate(self, snapshot_id: str) -> Any:
        return self.call("POST", "/api/policies/evaluate", body={"sourceSnapshotId": snapshot_id})

    def copies(self, filters: Mapping[str, str | None], *, limit: int, page_size: int) -> tuple[list[Any], bool]:
        """Up to `limit` copies, following nextLink; and whether more were left."""
        params = {name: value for name, value in filters.items() if value}
        params["top"] = str(min(page_size, limit))
        page = self.call("GET", "/api/copies", params=params)
        found = list(page.get("value", []))
        while page.get("nextLink") and len(found) < limit:
            page = self.call("GET", page["nextLink"])
            found.extend(page.get("value", []))
        return found[:limit], len(found) > limit or bool(page.get("nextLink"))
