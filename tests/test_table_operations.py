"""The harness's Table request counter names requests as the reports name them."""

from __future__ import annotations

import pytest

from local.tables import request_kind

ACCOUNT = "/devstoreaccount1"


@pytest.mark.parametrize(
    ("method", "path", "headers", "kind"),
    [
        ("POST", f"{ACCOUNT}/Tables", {}, "create_table"),
        ("POST", f"{ACCOUNT}/t1", {}, "create"),
        ("POST", f"{ACCOUNT}/$batch", {}, "batch"),
        ("GET", f"{ACCOUNT}/t1(PartitionKey='chain|a',RowKey='head')", {}, "get"),
        ("GET", f"{ACCOUNT}/t1()", {}, "query"),
        ("PUT", f"{ACCOUNT}/t1(PartitionKey='a',RowKey='b')", {"If-Match": 'W/"1"'}, "update"),
        ("PATCH", f"{ACCOUNT}/t1(PartitionKey='a',RowKey='b')", {"If-Match": "*"}, "update"),
        ("PUT", f"{ACCOUNT}/t1(PartitionKey='a',RowKey='b')", {}, "upsert"),
        ("PATCH", f"{ACCOUNT}/t1(PartitionKey='a',RowKey='b')", {}, "upsert"),
        ("DELETE", f"{ACCOUNT}/t1(PartitionKey='a',RowKey='b')", {"If-Match": "*"}, "delete"),
        ("DELETE", f"{ACCOUNT}/Tables('t1')", {}, "delete_table"),
    ],
)
def test_each_table_request_is_named_by_what_it_does(method: str, path: str, headers: dict[str, str], kind: str):
    assert request_kind(method, path, headers) == kind
