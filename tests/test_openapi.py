"""The OpenAPI document against the functions that answer: the same routes, and every real
answer (successes and each documented error) fits what the document promises."""

from __future__ import annotations

import json
import re
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import azure.functions as func
import pytest
from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

import shared.openapi
from local.emulator.faults import Fault
from local.host import FunctionHost
from shared import runtime
from shared.model import ChainKey
from shared.notices import copy_id
from shared.openapi import document
from shared.problems import MAX_BODY_BYTES
from tests.builders import SUB
from tests.conftest import Deployment
from tests.test_functions import RG, disk_with_snapshots, run_until_done

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

FAMILY = "3c2b1a09-8f7e-4d6c-b5a4-938271605f4e"
UNKNOWN_COPY = copy_id(ChainKey(FAMILY, "westus3"), "20261120T030002.123456Z|nothing")
KEY = {"x-functions-key": "a-function-key"}  # the host checks keys; call_http does not


def http_functions(host: FunctionHost) -> dict[str, tuple[str, str]]:
    """Every HTTP function: name -> (path as the document spells it, lower-case method)."""
    found = {}
    for name in host.functions:
        binding = host.binding(name)
        if binding["type"] != "httpTrigger":
            continue
        assert binding.get("route") and binding.get("methods"), f"{name} must declare its route and methods"
        (method,) = binding["methods"]
        route = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", binding["route"])  # drop route constraints
        found[name] = (f"/api/{route}", str(getattr(method, "value", method)).lower())
    return found


def operations(doc: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def resolved(doc: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return resolved(doc, target)


# --- the document --------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc, cls=OpenAPIV31SpecValidator)
    OpenAPI.from_dict(doc)  # and openapi-core can use it
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert doc["info"]["version"] == pyproject["project"]["version"]


def test_every_http_function_is_documented_and_nothing_else_is():
    functions = http_functions(FunctionHost())
    assert len(functions) >= 7
    documented = {(path, method): operation["operationId"] for path, method, operation in operations(document())}
    assert documented == {route: name for name, route in functions.items()}


def test_every_operation_explains_itself_and_answers_errors_as_problems():
    doc = document()
    schemes = doc["components"]["securitySchemes"]
    assert {(s["type"], s["in"], s["name"]) for s in schemes.values()} == {
        ("apiKey", "header", "x-functions-key"),
        ("apiKey", "query", "code"),
    }
    assert doc["security"] == [{name: []} for name in schemes]  # either one is enough
    for path, method, operation in operations(doc):
        assert operation["summary"] and len(operation["description"]) > 40, (path, method)
        for status, response in operation["responses"].items():
            content = resolved(doc, response).get("content", {})
            if status == "401":  # answered by the Functions host, not by snapcopy
                assert not content
            elif int(status) >= 400:
                assert set(content) == {"application/problem+json"}, (path, method, status)
                assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


# --- real answers against the document -------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


class Contract:
    """Calls HTTP functions as the host does and checks every answer against the document."""

    def __init__(self, host: FunctionHost) -> None:
        self.host = host
        self.doc = document()
        # openapi-core parses application/json bodies only; problem+json is JSON too
        problem_json: dict[str, Callable[[bytes], Any]] = {"application/problem+json": json_loads}
        self.spec = OpenAPI.from_dict(self.doc, config=Config(extra_media_type_deserializers=problem_json))
        self.routes = http_functions(host)
        self.answered: dict[str, set[int]] = defaultdict(set)

    def call(
        self,
        function: str,
        *,
        copy: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] = KEY,
    ) -> Answer:
        template, method = self.routes[function]
        route_params = {"copyId": copy} if copy is not None else {}
        path = template.format(**{name: quote(value, safe="") for name, value in route_params.items()})
        data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
        request_headers = {**headers, **({"Content-Type": "application/json"} if data else {})}
        url = "http://localhost" + path + ("?" + urlencode(params) if params else "")
        response = self.host.call_http(
            function, method.upper(), url, route_params=route_params, params=params, body=data, headers=request_headers
        )
        request = MockRequest(
            "http://localhost",
            method,
            path,
            path_pattern=template,
            args=dict(params or {}),
            view_args=route_params,
            headers=request_headers,
            data=data,
            content_type="application/json" if data else "",
        )
        return self.check(function, request, response)

    def check(self, function: str, request: MockRequest, response: func.HttpResponse) -> Answer:
        template, method = self.routes[function]
        operation = self.doc["paths"][template][method]
        assert operation["operationId"] == function
        status = response.status_code
        assert str(status) in operation["responses"], f"{function} answered {status}, which is not documented"
        documented = resolved(self.doc, operation["responses"][str(status)])
        assert response.mimetype in documented.get("content", {}), f"{function} {status}: {response.mimetype}"
        for name, header in documented.get("headers", {}).items():
            if header.get("required"):
                assert response.headers.get(name), f"{function} {status}: no {name} header"
        self.spec.validate_response(
            request,
            MockResponse(
                response.get_body(), status_code=status, headers=dict(response.headers), content_type=response.mimetype
            ),
        )
        if status < 400 or status in (404, 409, 422, 502, 503):
            self.spec.validate_request(request)  # the document accepts what the function took in
        self.answered[function].add(status)
        return Answer(status, json.loads(response.get_body()), response.headers)


@pytest.fixture
def contract(deployment: Deployment) -> Contract:
    return Contract(deployment.host)


def disk_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/disks/{name}"


def test_every_operation_answers_as_documented(
    deployment: Deployment, contract: Contract, monkeypatch: pytest.MonkeyPatch
):
    call = contract.call
    served = call("openapi")
    assert served.status == 200 and served.body == document()
    assert call("list_chains").body == {"value": []}

    # backfill: a disk with three incremental snapshots and a full one
    snaps = disk_with_snapshots(deployment, "vm0-data0", 3)
    deployment.fleet.take_snapshot(disk_id("vm0-data0"), "vm0-data0-full", "eastus2", incremental=False)
    deployment.drain_events()
    backfill = call("request_copies", body={"sourceDiskId": disk_id("vm0-data0")})
    assert backfill.status == 202 and backfill.headers["Location"].startswith("/api/copies?sourceDiskId=")
    first, second, third = backfill.body["copies"]
    assert [copy["sourceSnapshotId"] for copy in backfill.body["copies"]] == snaps
    assert all(copy["created"] for copy in backfill.body["copies"])
    (ignored,) = backfill.body["ignored"]
    assert ignored["sourceSnapshotId"].endswith("/vm0-data0-full") and "incremental" in ignored["reason"]
    again = call("request_copies", body={"sourceDiskId": disk_id("vm0-data0"), "targetRegions": ["westus3"]})
    assert again.status == 202 and not any(copy["created"] for copy in again.body["copies"])
    one = call("request_copies", body={"sourceSnapshotId": snaps[1]})
    assert one.status == 202 and one.headers["Location"] == f"/api/copies/{second['copyId']}"

    # listing, filters and continuation (the key may come as ?code=)
    ids = [first["copyId"], second["copyId"], third["copyId"]]
    assert [copy["copyId"] for copy in call("list_copies").body["value"]] == ids
    page = call("list_copies", params={"top": "1", "sourceDiskId": disk_id("vm0-data0")})
    listed, pages = [], 0
    while "nextLink" in page.body:
        link = urlsplit(page.body["nextLink"])
        query = dict(parse_qsl(link.query))
        assert link.path == "/api/copies" and query["continuationToken"] == page.body["continuationToken"]
        listed += [copy["copyId"] for copy in page.body["value"]]
        page, pages = call("list_copies", params=query), pages + 1
        assert pages <= len(ids)
    assert [*listed, *(copy["copyId"] for copy in page.body["value"])] == ids
    queued = call(
        "list_copies", params={"state": "queued", "targetRegion": "westus3", "code": "a-function-key"}, headers={}
    )
    assert [copy["copyId"] for copy in queued.body["value"]] == ids[1:]
    for bad in ({"top": "0"}, {"top": "1001"}, {"state": "paused"}, {"region": "westus3"}, {"continuationToken": "x"}):
        assert call("list_copies", params=bad).status == 400

    # one copy; cancel and retry
    assert call("get_copy", copy=first["copyId"]).body["state"] == "copying"
    (chain,) = call("list_chains").body["value"]
    assert chain["copying"]["copyId"] == first["copyId"] and chain["queued"] == 2
    assert call("cancel_copy", copy=first["copyId"]).status == 409  # in flight: ARM cannot stop it
    for copy in (second, third):
        cancelled = call("cancel_copy", copy=copy["copyId"])
        assert cancelled.status == 200 and cancelled.body["state"] == "cancelled"
    assert call("cancel_copy", copy=second["copyId"]).body["state"] == "cancelled"  # again: nothing changes
    assert call("retry_copy", copy=first["copyId"]).status == 409  # only failed or cancelled
    retried = call("retry_copy", copy=third["copyId"])
    assert retried.status == 202 and retried.body["state"] == "queued"
    assert retried.headers["Location"] == f"/api/copies/{third['copyId']}"
    for function in ("get_copy", "cancel_copy", "retry_copy"):
        assert call(function, copy=UNKNOWN_COPY).status == 404
        assert call(function, copy="not base64!").status == 400

    # refused requests
    for raw in (b"{", b"", b"[]", b'{"sourceSnapshotId": 7}', b"\xff"):
        assert call("request_copies", raw=raw).status == 400
    for body in (
        {"sourceSnapshotId": snaps[0], "targetRegion": "westus3"},  # unknown field
        {"sourceSnapshotId": snaps[0], "sourceDiskId": disk_id("vm0-data0")},
        {"sourceSnapshotId": disk_id("vm0-data0")},
        {"sourceSnapshotId": snaps[0], "targetRegions": []},
    ):
        assert call("request_copies", body=body).status == 400
    assert call("request_copies", raw=b'{"x": "' + b"a" * MAX_BODY_BYTES + b'"}').status == 413
    deployment.fleet.create_disk(RG, "bare-disk", "eastus2")
    for body in (
        {"sourceSnapshotId": snaps[0], "targetRegions": ["centralus"]},  # not in COPY_TARGET_REGIONS
        {"sourceSnapshotId": snaps[0].replace("vm0-data0-s0", "gone")},
        {"sourceDiskId": disk_id("bare-disk")},
        {"sourceDiskId": disk_id("never-made")},
    ):
        assert call("request_copies", body=body).status == 422
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=403, error_code="AuthorizationFailed"))
    assert call("request_copies", body={"sourceSnapshotId": snaps[0]}).status == 502
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=503, count=5))
    unavailable = call("request_copies", body={"sourceSnapshotId": snaps[0]})
    assert unavailable.status == 503 and int(unavailable.headers["Retry-After"]) > 0
    deployment.world.clear_faults()

    # everything final: a repeated request answers 200; a finished copy cannot be retried or cancelled, nor
    # a cancelled one once a newer snapshot of the family has started copying (Azure's order rule)
    run_until_done(deployment)
    done = call("request_copies", body={"sourceDiskId": disk_id("vm0-data0")})
    assert done.status == 200
    assert [copy["state"] for copy in done.body["copies"]] == ["succeeded", "cancelled", "succeeded"]
    assert call("retry_copy", copy=first["copyId"]).status == 409
    too_late = call("retry_copy", copy=second["copyId"])
    assert too_late.status == 409 and "newer snapshot" in too_late.body["detail"]
    assert call("cancel_copy", copy=first["copyId"]).status == 409
    (chain,) = call("list_chains").body["value"]
    assert chain["copying"] is None and chain["lastCompletedAgeSeconds"] >= 0

    # a copy ARM refused for good fails; retrying it reads (and clears) its target first
    (lone,) = disk_with_snapshots(deployment, "vm1-data0", 1)
    deployment.world.add_fault(Fault(method="PUT", kind="snapshot", status=404, error_code="ResourceGroupNotFound"))
    failed = call("request_copies", body={"sourceSnapshotId": lone})
    (copy,) = failed.body["copies"]
    assert failed.status == 200 and copy["state"] == "failed" and copy["error"]["code"] == "ResourceGroupNotFound"
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=403, error_code="AuthorizationFailed"))
    assert call("retry_copy", copy=copy["copyId"]).status == 502
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=503, count=5))
    assert call("retry_copy", copy=copy["copyId"]).status == 503
    deployment.world.clear_faults()
    assert call("retry_copy", copy=copy["copyId"]).status == 202

    # replication at a glance
    status = call("get_status").body
    assert status["rpoAlertMinutes"] == 1500
    (region,) = status["regions"]
    assert region["targetRegion"] == "westus3" and region["chainsOverRpo"] == []
    assert region["completedLast24h"] == 2  # vm0-data0's first and third (the second was cancelled)
    assert region["inFlight"] + region["queued"] == 1  # the refused copy, retried just above

    # the policies in effect, and what they make of a snapshot (nothing written)
    (policy,) = call("list_policies").body["value"]
    assert policy["implicit"] and [target["region"] for target in policy["targets"]] == ["westus3"]
    rows = deployment.rows("")
    evaluated = call("evaluate_policies", body={"sourceSnapshotId": snaps[0]})
    assert evaluated.status == 200 and evaluated.body["copied"] and deployment.rows("") == rows
    (placed,) = evaluated.body["copies"]
    assert placed["targetRegion"] == "westus3" and placed["tags"] == {"snapcopy-source": snaps[0]}
    for raw in (b"{", b"[]", b'{"sourceSnapshotId": 7}', b'{"sourceSnapshotId": "x", "targetRegions": []}'):
        assert call("evaluate_policies", raw=raw).status == 400
    assert call("evaluate_policies", body={"sourceSnapshotId": disk_id("vm0-data0")}).status == 400
    assert call("evaluate_policies", raw=b'{"x": "' + b"a" * MAX_BODY_BYTES + b'"}').status == 413
    gone = snaps[0].replace("vm0-data0-s0", "gone")
    assert call("evaluate_policies", body={"sourceSnapshotId": gone}).status == 422
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=403, error_code="AuthorizationFailed"))
    assert call("evaluate_policies", body={"sourceSnapshotId": snaps[0]}).status == 502
    deployment.world.add_fault(Fault(method="GET", kind="snapshot", status=503, count=5))
    assert call("evaluate_policies", body={"sourceSnapshotId": snaps[0]}).status == 503
    deployment.world.clear_faults()

    # anything unexpected: a bare 500 problem, nothing internal
    def broken() -> None:
        raise RuntimeError("connection string AccountKey=secret")

    monkeypatch.setattr(runtime, "replicator", broken)
    monkeypatch.setattr(shared.openapi, "document", broken)
    cases: list[tuple[str, str | None, Any]] = [
        ("request_copies", None, {"sourceSnapshotId": lone}),
        ("list_copies", None, None),
        ("get_copy", UNKNOWN_COPY, None),
        ("cancel_copy", UNKNOWN_COPY, None),
        ("retry_copy", UNKNOWN_COPY, None),
        ("list_chains", None, None),
        ("list_policies", None, None),
        ("get_status", None, None),
        ("evaluate_policies", None, {"sourceSnapshotId": lone}),
        ("openapi", None, None),
    ]
    for function, copy_arg, body in cases:
        answer = call(function, copy=copy_arg, body=body)
        assert answer.status == 500 and "secret" not in json.dumps(answer.body)

    # every status the document promises was seen (401 comes from the host, not from snapcopy)
    promised = {
        operation["operationId"]: {int(status) for status in operation["responses"] if status != "401"}
        for _, _, operation in operations(contract.doc)
    }
    assert dict(contract.answered) == promised


def test_the_contract_check_catches_drift(deployment: Deployment, contract: Contract):
    (snap,) = disk_with_snapshots(deployment, "vm0-data0", 1)
    copy = contract.call("request_copies", body={"sourceSnapshotId": snap}).body["copies"][0]
    del copy["created"]
    path = f"/api/copies/{copy['copyId']}"
    request = MockRequest(
        "http://localhost",
        "get",
        path,
        path_pattern="/api/copies/{copyId}",
        view_args={"copyId": copy["copyId"]},
        headers=KEY,
    )

    def answer(body: Any, status: int = 200, mimetype: str = "application/json") -> func.HttpResponse:
        return func.HttpResponse(json.dumps(body), status_code=status, mimetype=mimetype)

    contract.check("get_copy", request, answer(copy))  # the real shape passes
    for drifted in (
        {**copy, "eta": None},
        {**copy, "state": "paused"},
        {k: v for k, v in copy.items() if k != "reason"},
    ):
        with pytest.raises(OpenAPIError):
            contract.check("get_copy", request, answer(drifted))
    with pytest.raises(AssertionError, match="not documented"):
        contract.check("get_copy", request, answer(copy, 418))
    with pytest.raises(AssertionError):
        contract.check("get_copy", request, answer({"detail": "x"}, 404, "application/json"))
