"""The blob endpoint behind a snapshot's SAS URL: what the unmodified azure-storage-blob
client reads of a managed disk snapshot.

Get Blob Properties (HEAD), Get Blob with a range, and Get Page Ranges, including the
managed-disk diff (`x-ms-previous-snapshot-url`: the SAS URL of an older snapshot of the
same disk), answered from the snapshot's image (`contents.py`), in Storage's shapes:
XML page lists, `x-ms-*` headers, and XML errors with `x-ms-error-code`. Every request is
checked against its SAS (`access.py`): unknown, revoked or expired answers 403.

Paths are `/<account>/<container>/<blob>` (path-style, as local storage endpoints are),
the account beginning `md-`; the ARM gateway lets them through untouched.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, cast
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .access import Grant, SasRefused
from .contents import PAGE, Image, Span
from .data_plane import DISK_RESOURCE, ENTRA_REQUIRED
from .world import World

router = APIRouter()
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


async def _world(request: Request) -> World:
    return cast(World, request.app.state.world)


WorldDep = Annotated[World, Depends(_world)]


EMULATOR_TENANT = "00000000-0000-0000-0000-0000000e3a7e"  # the tenant a challenge names


class StorageError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def storage_error(status: int, code: str, message: str, request: Request) -> Response:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>'
    )
    headers = {**_common(request), "x-ms-error-code": code}
    if code == ENTRA_REQUIRED:  # the challenge Azure answers with: which audience to ask a token for
        headers["WWW-Authenticate"] = (
            f"Bearer authorization_uri=https://login.microsoftonline.com/{EMULATOR_TENANT}/oauth2/authorize "
            f"resource_id={DISK_RESOURCE}"
        )
    return Response(body, status_code=status, media_type="application/xml", headers=headers)


def _common(request: Request) -> dict[str, str]:
    return {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": request.headers.get("x-ms-version", "2021-08-06")}


def _bearer(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    return authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None


def _open(world: World, account: str, request: Request) -> tuple[Image, Grant]:
    try:
        return world.blob(account, request.query_params.get("sig"), _bearer(request))
    except SasRefused as refused:
        status = {"BlobNotFound": 404, ENTRA_REQUIRED: 401}.get(refused.code, 403)
        raise StorageError(status, refused.code, str(refused)) from None


def _properties(world: World, image: Image, grant: Grant, request: Request) -> dict[str, str]:
    modified = world.blob_modified(grant)
    return {
        **_common(request),
        "x-ms-blob-type": "PageBlob",
        "ETag": f'"0x{abs(hash((grant.snapshot_key, len(image.log)))):X}"',
        "Last-Modified": _http_date(modified),
        "Accept-Ranges": "bytes",
        "x-ms-blob-sequence-number": "0",
        "x-ms-server-encrypted": "true",
    }


def _http_date(arm_moment: str) -> str:

    return format_datetime(datetime.fromisoformat(arm_moment.replace("Z", "+00:00")), usegmt=True)


@router.head("/{account}/{container}/{blob}")
async def blob_properties(account: str, container: str, blob: str, request: Request, world: WorldDep) -> Response:
    world.count_request("HEAD blob")
    try:
        image, grant = _open(world, account, request)
    except StorageError as error:  # a HEAD answers without a body
        failed = storage_error(error.status, error.code, error.message, request)
        return Response(
            status_code=error.status, headers={k: v for k, v in failed.headers.items() if k != "content-length"}
        )
    headers = {**_properties(world, image, grant, request), "Content-Length": str(image.size)}
    return Response(status_code=200, headers=headers, media_type="application/octet-stream")


@router.get("/{account}/{container}/{blob}")
async def get_blob(account: str, container: str, blob: str, request: Request, world: WorldDep) -> Response:
    try:
        image, grant = _open(world, account, request)
        if request.query_params.get("comp") == "pagelist":
            world.count_request("GET pagelist")
            return _page_list(world, image, grant, request)
        world.count_request("GET blob")
        return _download(world, image, grant, request)
    except StorageError as error:
        return storage_error(error.status, error.code, error.message, request)


def _requested_range(request: Request, size: int) -> Span | None:
    text = request.headers.get("x-ms-range") or request.headers.get("range")
    if not text:
        return None
    match = _RANGE_RE.match(text.strip())
    if match is None:
        raise StorageError(400, "InvalidRange", f"the range {text!r} is not bytes=start-end")
    start = int(match[1])
    end = int(match[2]) + 1 if match[2] else size
    if start >= size or end <= start:
        raise StorageError(416, "InvalidRange", f"the range {text!r} is outside the blob's {size} bytes")
    return start, min(end, size)


def _download(world: World, image: Image, grant: Grant, request: Request) -> Response:
    wanted = _requested_range(request, image.size)
    start, end = wanted or (0, image.size)
    data = image.read(start, end - start)
    world.count_bytes_read(len(data))
    headers = {**_properties(world, image, grant, request), "Content-Length": str(len(data))}
    if wanted is None:
        return Response(data, status_code=200, headers=headers, media_type="application/octet-stream")
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{image.size}"
    return Response(data, status_code=206, headers=headers, media_type="application/octet-stream")


def _page_list(world: World, image: Image, grant: Grant, request: Request) -> Response:
    previous = request.headers.get("x-ms-previous-snapshot-url")
    if previous is not None:
        older = _previous(world, previous, grant, _bearer(request))
        try:
            changed, cleared = image.diff(older)
        except ValueError:
            raise StorageError(
                409, "PreviousSnapshotNotFound", "the previous snapshot is not an older snapshot of the same disk"
            ) from None
    else:
        changed, cleared = image.allocated(), []
    limit = _requested_range(request, image.size)
    if limit is not None:
        if limit[0] % PAGE or limit[1] % PAGE:
            raise StorageError(416, "InvalidPageRange", "a page range must start and end on 512-byte pages")
        changed, cleared = _clip(changed, limit), _clip(cleared, limit)
    ranges = [("PageRange", span) for span in changed] + [("ClearRange", span) for span in cleared]
    ranges.sort(key=lambda item: item[1][0])
    # long lists come in pages, as Azure's do: `marker` continues where NextMarker said
    first = _marker(request.query_params.get("marker"))
    count = min(world.config.page_ranges_per_answer, int(request.query_params.get("maxresults") or 1 << 30))
    page, following = ranges[first : first + count], first + count
    body = "".join(f"<{tag}><Start>{start}</Start><End>{end - 1}</End></{tag}>" for tag, (start, end) in page)
    marker = f"<NextMarker>ix{following}</NextMarker>" if following < len(ranges) else "<NextMarker />"
    xml = f'<?xml version="1.0" encoding="utf-8"?><PageList>{body}{marker}</PageList>'
    headers = {**_properties(world, image, grant, request), "x-ms-blob-content-length": str(image.size)}
    return Response(xml, status_code=200, headers=headers, media_type="application/xml")


def _marker(text: str | None) -> int:
    if not text:
        return 0
    if not re.fullmatch(r"ix\d{1,9}", text):
        raise StorageError(400, "InvalidQueryParameterValue", f"marker {text!r} is not one this endpoint gave")
    return int(text[2:])


@router.put("/{account}/{container}/{blob}")
@router.delete("/{account}/{container}/{blob}")
async def refuse_writes(account: str, container: str, blob: str, request: Request, world: WorldDep) -> Response:
    """A snapshot's SAS reads (`sp=r`): anything else is refused as Azure refuses it."""
    return storage_error(
        403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation.", request
    )


def _previous(world: World, url: str, grant: Grant, bearer: str | None) -> Image:
    """The older image a diff is against: its SAS must be valid too (with the request's Entra
    token when its data access takes one), and of the same family."""
    parts = urlsplit(url)
    account = parts.path.strip("/").split("/", 1)[0]
    signature = parse_qs(parts.query).get("sig", [None])[0]
    try:
        older, older_grant = world.blob(account, signature, bearer)
    except SasRefused as refused:
        if refused.code == ENTRA_REQUIRED:  # the previous snapshot wants the token too: the same challenge
            raise StorageError(401, ENTRA_REQUIRED, f"the previous snapshot: {refused}") from None
        raise StorageError(409, "PreviousSnapshotNotFound", f"the previous snapshot: {refused}") from None
    if older_grant.family_id is None or older_grant.family_id != grant.family_id:
        raise StorageError(409, "PreviousSnapshotNotFound", "the previous snapshot is not of the same disk")
    return older


def _clip(spans: list[Span], limit: Span) -> list[Span]:
    return [(max(start, limit[0]), min(end, limit[1])) for start, end in spans if start < limit[1] and end > limit[0]]
