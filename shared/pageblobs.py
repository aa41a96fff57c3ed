"""The diff copy method's storage edge: a source snapshot read through its SAS URL, and the
target page blob (one per source family and target region) written, cleared and
snapshotted, with the unmodified azure-storage-blob client.

Ranges come back from Storage with inclusive ends; here every range is [start, end) like
in `shared/increments.py`. A blob snapshot taken after an increment is that point in time
in the target region; its metadata names the source snapshot.

It must not decide what to copy (shared/increments.py plans it) nor touch the table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient, SequenceNumberAction

from shared.increments import Chunk, Span

MAX_PAGE_BLOB = 8 * 1024**4  # bytes: Azure's largest page blob (a disk may be up to 64 TiB)
HOLDS = "holds"  # the blob's metadata: the source snapshot it holds exactly
SOURCE_KEY = "sourcesnapshotid"  # a blob snapshot's metadata: the source snapshot it stands for


def _spans(ranges: Any) -> list[Span]:
    return [_span(item["start"], item["end"]) for item in ranges]


def allocated(blob: BlobClient) -> list[Span]:
    """The ranges a page blob (or one of its snapshots, or a snapshot behind a SAS) holds
    data in, every page of the answer read."""
    return [_span(item.start, item.end) for item in blob.list_page_ranges() if not item.cleared]


def _span(start: int | None, last: int | None) -> Span:
    """Storage's inclusive range as [start, end)."""
    if start is None or last is None:
        raise ValueError(f"Storage answered a page range without its bounds ({start}-{last})")
    return int(start), int(last) + 1


class SourceSnapshot:
    """A managed disk snapshot, read through the SAS URL its grant gave."""

    def __init__(self, sas_url: str, **client_options: Any) -> None:
        self.sas_url = sas_url
        self._blob = BlobClient.from_blob_url(sas_url, **client_options)

    def size(self) -> int:
        return int(self._blob.get_blob_properties().size)

    def ranges(self, previous_sas_url: str | None = None) -> tuple[list[Span], list[Span]]:
        """(changed, cleared): since the previous snapshot (Azure's managed-disk diff), or
        every allocated range and nothing cleared when there is none (a full copy). A long
        answer comes in pages (a NextMarker): every page is read, or the copy would miss
        ranges without a word."""
        if previous_sas_url is None:
            return allocated(self._blob), []
        changed: list[Span] = []
        cleared: list[Span] = []
        marker: str | None = None
        while True:
            markers: list[str | None] = []

            def keep_marker(response: Any, page: Any, headers: Any, into: list[str | None] = markers) -> Any:
                into.append(getattr(page, "next_marker", None))
                return page

            more, gone = self._blob.get_page_range_diff_for_managed_disk(
                previous_sas_url, marker=marker, cls=keep_marker
            )
            changed += _spans(more)
            cleared += _spans(gone)
            marker = markers[0] if markers else None
            if not marker:
                return changed, cleared

    def read(self, span: Span) -> bytes:
        """The bytes of a range; `SourceRefused` when the SAS no longer reads (revoked,
        run out, or the snapshot deleted)."""
        start, end = span
        try:
            return bytes(self._blob.download_blob(offset=start, length=end - start).readall())
        except HttpResponseError as error:
            if error.status_code in (401, 403, 404):  # 401: an Entra token wanted and not given
                raise SourceRefused(error.status_code or 0, str(error.reason or "")) from error
            raise


class SourceRefused(Exception):
    """The source snapshot's SAS was refused (401: it also wants an Entra token; 403) or found
    nothing (404)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


class TargetBlob:
    """The page blob a diff chain writes in its target region's storage account."""

    def __init__(self, container: ContainerClient, name: str, fence: int | None = None) -> None:
        self._container = container
        self._blob = container.get_blob_client(name)
        self._fence = fence  # the increment's sequence number: writes are conditional on it

    @property
    def name(self) -> str:
        return str(self._blob.blob_name)

    @property
    def fence(self) -> int:
        """The sequence number this blob's writes are conditional on (set by `prepare`)."""
        if self._fence is None:
            raise ValueError(f"{self.name} was not prepared: it has no fence to write with")
        return self._fence

    def prepare(self, size: int, fence: int) -> bool:
        """The blob exists, is at least `size` bytes (a disk may grow, never shrink) and
        carries `fence` as its sequence number; True when it had to be created (then it
        holds nothing: a diff against a base would be applied onto zeros, so the caller
        re-bases). Writes made with an older fence are refused from now on (412), so a
        late chunk of an earlier increment can never overwrite this one's pages."""
        if size > MAX_PAGE_BLOB:
            raise ValueError(f"a page blob holds at most {MAX_PAGE_BLOB} bytes (8 TiB); the disk has {size}")
        created = False
        try:
            current = int(self._blob.get_blob_properties().size)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            # only if it is still missing: a Put Blob over an existing blob would empty it
            with contextlib.suppress(ResourceExistsError, ResourceModifiedError):
                self._blob.create_page_blob(size, match_condition=MatchConditions.IfMissing)
                created = True
            current = int(self._blob.get_blob_properties().size)
        if current < size:
            self._blob.resize_blob(size)
        # above any number the blob carries: a planner whose clock ran ahead may have set one
        carried = int(self._blob.get_blob_properties().page_blob_sequence_number or 0)
        self._fence = max(fence, carried + 1)
        self._blob.set_sequence_number(SequenceNumberAction.MAX, str(self._fence))
        return created

    def allocated(self) -> list[Span]:
        """The ranges the blob holds data in (a re-base clears what the source does not hold)."""
        return allocated(self._blob)

    def write(self, span: Span, data: bytes) -> None:
        start, end = span
        if len(data) != end - start:
            raise ValueError(f"{len(data)} bytes read for the range {start}-{end}")
        self._blob.upload_page(data, offset=start, length=end - start, if_sequence_number_eq=self._fence)

    def clear(self, span: Span) -> None:
        start, end = span
        self._blob.clear_page(offset=start, length=end - start, if_sequence_number_eq=self._fence)

    def holds(self) -> str:
        """The source snapshot the blob holds exactly ("": none, or the blob is new): a diff
        may be applied only onto the blob that holds its base (its metadata says which,
        written by `mark_holding` when an increment finishes)."""
        try:
            metadata = self._blob.get_blob_properties().metadata or {}
        except ResourceNotFoundError:
            return ""
        return str(metadata.get(HOLDS, ""))

    def mark_holding(self, source_id: str) -> None:
        self._blob.set_blob_metadata({HOLDS: source_id})

    def snapshot(self, metadata: Mapping[str, str]) -> str:
        """The blob snapshot that stands for a source snapshot in the target region: the one
        taken already for that source (a finish that died after taking it), else a new one."""
        source = metadata.get(SOURCE_KEY, "")
        for item in self._container.list_blobs(name_starts_with=self.name, include=["snapshots", "metadata"]):
            if item.name == self.name and item.snapshot and (item.metadata or {}).get(SOURCE_KEY) == source:
                return str(item.snapshot)
        taken = self._blob.create_snapshot(metadata=dict(metadata))
        return str(taken["snapshot"])


def copy_chunk(source: SourceSnapshot, target: TargetBlob, chunk: Chunk) -> int:
    """Write one chunk: its ranges read from the source at their own offsets, its clears
    cleared. Idempotent. The bytes read back."""
    read = 0
    for span in chunk.writes:
        data = source.read(span)
        target.write(span, data)
        read += len(data)
    for span in chunk.clears:
        target.clear(span)
    return read
