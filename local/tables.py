"""The state table as the harness sees it, from outside snapcopy's code.

`TableOperations` counts the Table requests a client sends. Tests and the benchmark hand
it to the SDK client as azure-core's `raw_request_hook` (run by the `CustomHookPolicy` in
every Table client's pipeline; the Table SDK builds its pipeline itself and takes no extra
policies), so snapcopy carries no measuring code. `TableRows` reads raw rows by PartitionKey prefix for the
tests, the demo and the chaos checker.

It must not be imported by `shared/`: the function app never ships it.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline import PipelineRequest
from azure.data.tables import TableClient


def request_kind(method: str, path: str, headers: Any) -> str:
    """What one Table REST request does, named as snapcopy's reports name it.

    PUT or MERGE/PATCH with If-Match is a conditional update; without it an upsert
    (insert-or-replace / insert-or-merge); a GET naming one (PartitionKey, RowKey) is a
    point read, any other GET a query page."""
    method = method.upper()
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if method == "POST":
        if last == "$batch":
            return "batch"
        return "create_table" if last.lower() == "tables" else "create"
    if method == "GET":
        return "get" if "PartitionKey=" in last and "RowKey=" in last else "query"
    if method in ("PUT", "MERGE", "PATCH"):
        return "update" if headers.get("If-Match") else "upsert"
    if method == "DELETE":
        return "delete_table" if last.lower().startswith("tables(") else "delete"
    return method.lower()


class TableOperations:
    """Counts every request the client sends: each point read, write, transaction and
    query page is one (a request the SDK retries counts again: it is billed again)."""

    def __init__(self) -> None:
        self.total = 0
        self.by_kind: dict[str, int] = {}

    def __call__(self, request: PipelineRequest[Any]) -> None:
        http = request.http_request
        kind = request_kind(http.method, unquote(urlsplit(http.url).path), http.headers)
        self.total += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def options(self) -> dict[str, Any]:
        """The client options that put this counter in an SDK client's pipeline."""
        return {"raw_request_hook": self}


class TableRows:
    """Raw rows, for looking at what snapcopy wrote (a second client: not counted)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str) -> Self:
        return cls(TableClient.from_connection_string(connection_string, table_name))

    def rows(self, partition_prefix: str) -> list[dict[str, Any]]:
        """Rows whose PartitionKey starts with a prefix (a parameterised range query);
        none while snapcopy has not created the table yet."""
        rows = self._table.query_entities(
            "PartitionKey ge @low and PartitionKey lt @high",
            parameters={"low": partition_prefix, "high": partition_prefix + "\x7f"},
        )
        try:
            return [dict(row) for row in rows]
        except ResourceNotFoundError:
            return []
