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
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from shared.increments import Chunk, Span


def _spans(ranges: Any) -> list[Span]:
    return [_span(item["start"], item["end"]) for item in ranges]


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
        every allocated range and nothing cleared when there is none (a full copy)."""
        if previous_sas_url is not None:
            changed, cleared = self._blob.get_page_range_diff_for_managed_disk(previous_sas_url)
            return _spans(changed), _spans(cleared)
        allocated = [_span(item.start, item.end) for item in self._blob.list_page_ranges() if not item.cleared]
        return allocated, []

    def read(self, span: Span) -> bytes:
        start, end = span
        return bytes(self._blob.download_blob(offset=start, length=end - start).readall())


class TargetBlob:
    """The page blob a diff chain writes in its target region's storage account."""

    def __init__(self, container: ContainerClient, name: str) -> None:
        self._container = container
        self._blob = container.get_blob_client(name)

    @property
    def name(self) -> str:
        return str(self._blob.blob_name)

    def prepare(self, size: int) -> None:
        """The blob exists and is at least `size` bytes (a disk may grow, never shrink)."""
        try:
            current = int(self._blob.get_blob_properties().size)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._container.create_container()
            # only if it is still missing: a Put Blob over an existing blob would empty it
            with contextlib.suppress(ResourceExistsError, ResourceModifiedError):
                self._blob.create_page_blob(size, match_condition=MatchConditions.IfMissing)
            current = int(self._blob.get_blob_properties().size)
        if current < size:
            self._blob.resize_blob(size)

    def write(self, span: Span, data: bytes) -> None:
        start, end = span
        if len(data) != end - start:
            raise ValueError(f"{len(data)} bytes read for the range {start}-{end}")
        self._blob.upload_page(data, offset=start, length=end - start)

    def clear(self, span: Span) -> None:
        start, end = span
        self._blob.clear_page(offset=start, length=end - start)

    def snapshot(self, metadata: Mapping[str, str]) -> str:
        """Take the blob snapshot that stands for the source snapshot in the target region."""
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
