"""W4: the diff copy method's own compute, measured (issue 23).

One disk with a fragmented first snapshot and a chain of increments (changed and cleared
ranges of many sizes), read from the ARM emulator through SAS URLs and written onto page
blobs in Azurite, exactly as `shared/pageblobs.py` and `shared/increments.py` do it:

- MiB/s through one worker (the full first increment, one chunk after another);
- bytes read and written against bytes changed (the goal is 1.00: nothing copied twice,
  nothing unchanged copied);
- wall time of the whole chain with 1, 2 and 4 workers side by side (threads over each
  increment's chunks; on this 2-CPU machine Azurite, the emulator and the workers share
  the CPUs, so the ratios say what the code allows here, not what Azure would do).

Every run ends by comparing its last blob snapshot with the source, byte for byte.

`python -m local.bench.diff [--quick]`; `make bench` runs it last, on its own.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.mgmt.compute.models import GrantAccessData
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.compare import blob_differs
from local.emulator import EmulatorServer, VirtualClock, World
from local.emulator.config import EmulatorConfig
from local.fleet import Fleet
from shared.increments import PAGE, Chunk, plan
from shared.pageblobs import SourceSnapshot, TargetBlob, copy_chunk

MIB = 1024 * 1024
SUBSCRIPTION = "6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d"
RG = "bench-rg"
WORKERS = (1, 2, 4)


@dataclass(frozen=True)
class Shape:
    disk_gib: int
    first_mib: int  # data in the first snapshot
    increments: int
    changed_mib: int  # written per increment (plus a few clears)


def shape(quick: bool) -> Shape:
    return Shape(1, 24, 3, 6) if quick else Shape(4, 256, 4, 48)


def _ranges(rng: random.Random, total: int, size: int) -> list[tuple[int, int]]:
    """Random page-aligned ranges of 4 KiB to 8 MiB adding up to about `total` bytes."""
    out, placed = [], 0
    while placed < total:
        length = min(rng.choice((4096, 65536, 512 * 1024, 2 * MIB, 8 * MIB)), total - placed)
        length -= length % PAGE
        if length <= 0:
            break
        start = rng.randrange(0, (size - length) // PAGE) * PAGE
        out.append((start, length))
        placed += length
    return out


class Bench:
    """The emulator, a disk of synthetic data with its chain of snapshots, and SAS URLs."""

    def __init__(self, emulator: EmulatorServer, container: ContainerClient, spec: Shape, seed: int) -> None:
        self.emulator, self.container, self.spec = emulator, container, spec
        self.world = emulator.world
        self.fleet = Fleet(emulator.url, str(emulator.ca_path), SUBSCRIPTION)
        rng = random.Random(seed)
        size = spec.disk_gib * 1024 * MIB
        self.disk = self.fleet.create_disk(RG, "bench-data0", "eastus2", size_gb=spec.disk_gib)
        self.snapshots: list[str] = []
        for index in range(spec.increments + 1):
            wanted = (spec.first_mib if index == 0 else spec.changed_mib) * MIB
            for start, length in _ranges(rng, wanted, size):
                self.world.write_disk(self.disk, start, length, seed=rng.randrange(1, 1 << 40))
            if index:
                for start, length in _ranges(rng, 2 * MIB, size):
                    self.world.clear_disk(self.disk, start, length)
            self.snapshots.append(self.fleet.take_snapshot(self.disk, f"bench-data0-s{index}", "eastus2"))

    def sas(self, snapshot_id: str) -> str:
        access = GrantAccessData(access="Read", duration_in_seconds=24 * 3600)
        name = snapshot_id.rsplit("/", 1)[-1]
        url = self.fleet.client.snapshots.begin_grant_access(RG, name, access).result().access_sas
        assert url
        return url

    def revoke(self, snapshot_id: str) -> None:
        self.fleet.client.snapshots.begin_revoke_access(RG, snapshot_id.rsplit("/", 1)[-1]).result()

    def chain(self, blob: str, workers: int) -> dict[str, Any]:
        """Copy the whole chain onto `blob` with `workers` threads; what it took."""
        target = TargetBlob(self.container, blob)
        read_before = self.world.access_counters()["bytes_read"]
        changed = written = 0
        first_seconds, first_bytes = 0.0, 0
        previous: tuple[str, str] | None = None
        began = time.perf_counter()
        stamp = ""
        for index, snapshot_id in enumerate(self.snapshots):
            url = self.sas(snapshot_id)
            source = SourceSnapshot(url, connection_verify=str(self.emulator.ca_path))
            changes, clears = source.ranges(previous[1] if previous else None)
            size = source.size()
            chunks = plan(changes, clears, size=size)
            target.prepare(size, fence=index + 1)
            step = time.perf_counter()
            done = _run(source, target, chunks, workers)
            written += done
            if index == 0:
                first_seconds, first_bytes = time.perf_counter() - step, done
            changed += sum(end - start for start, end in changes)
            stamp = target.snapshot({"sourcesnapshotid": snapshot_id})
            if previous is not None:
                self.revoke(previous[0])
            previous = (snapshot_id, url)
        assert previous is not None
        self.revoke(previous[0])
        wall = time.perf_counter() - began
        read = self.world.access_counters()["bytes_read"] - read_before
        return {
            "workers": workers,
            "wall_seconds": round(wall, 2),
            "first_increment_seconds": round(first_seconds, 2),
            "first_increment_mib": round(first_bytes / MIB, 1),
            "bytes_changed": changed,
            "bytes_read": read,
            "bytes_written": written,
            "equal_to_source": self._equal(blob, stamp),
        }

    def _equal(self, blob: str, stamp: str) -> bool:
        image = self.world.snapshot_image(self.snapshots[-1])
        return not blob_differs(self.container.get_blob_client(blob, snapshot=stamp), image)

    def close(self) -> None:
        self.fleet.close()


def _run(source: SourceSnapshot, target: TargetBlob, chunks: list[Chunk], workers: int) -> int:
    """Copy an increment's chunks with `workers` threads; the bytes written."""
    if workers == 1:
        for chunk in chunks:
            copy_chunk(source, target, chunk)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda chunk: copy_chunk(source, target, chunk), chunks))
    return sum(chunk.write_bytes for chunk in chunks)


def diff_workload(quick: bool = False, seed: int = 1) -> dict[str, Any]:
    """W4's figures (one JSON-able document)."""
    from local.azurite import Azurite

    spec = shape(quick)
    world = World(VirtualClock(), EmulatorConfig())
    with Azurite.start() as azurite, EmulatorServer(world) as emulator:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        container = service.get_container_client("benchdiff")
        bench = Bench(emulator, container, spec, seed)
        try:
            runs = [bench.chain(f"chain-{workers}w.vhd", workers) for workers in WORKERS]
        finally:
            bench.close()
            service.close()
    single = runs[0]
    return {
        "shape": {
            "disk_gib": spec.disk_gib,
            "first_mib": spec.first_mib,
            "increments": spec.increments,
            "changed_mib": spec.changed_mib,
        },
        "runs": runs,
        "one_worker_mib_per_second": round(single["first_increment_mib"] / single["first_increment_seconds"], 1),
        "read_per_changed": round(single["bytes_read"] / single["bytes_changed"], 3),
        "written_per_changed": round(single["bytes_written"] / single["bytes_changed"], 3),
        "wall_ratio": {str(run["workers"]): round(run["wall_seconds"] / single["wall_seconds"], 2) for run in runs},
        "access": world.access_counters(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    document = diff_workload(args.quick, args.seed)
    print(json.dumps(document, indent=2))
    return 0 if all(run["equal_to_source"] for run in document["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
