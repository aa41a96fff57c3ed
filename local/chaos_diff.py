"""Chaos for the diff method: seeded fault-injection scenarios of diff chains against real
Azurite (the target page blobs, the chunk queue, the state table) and the ARM emulator
(the source disks' contents, grants, the SAS blob endpoint).

A scenario is a few disks written between snapshots (changes, clears, a disk that grows)
replicated into two regions by the diff method, with Event Grid's habits always on
(duplicates, random order, loss: the sweep finds what was lost) and one fault turned up:

- lost_chunks: queue messages deleted before any function ran them;
- duplicated_chunks: queue messages delivered twice (and late);
- crashes: a worker dies (SystemExit) or a step fails before or after a store write, an ARM
  grant or revoke, or a queue send, in an event, a tick, a sweep or a chunk; between the
  last chunk and the blob snapshot among them;
- sas_expiry: live SAS URLs run out while chunks copy;
- source_deletes: a source snapshot deleted while its increment copies.

After the faults stop the scenario runs to quiescence, then the invariants are checked:
every blob snapshot equals its source byte for byte (0 wrong blobs), every snapshot that
still exists is copied and every job ended (0 lost increments), copies in creation order,
no increment, chunk, grant or flight row left, no SAS left open, none refused (the
five-SAS limit never exceeded). `python -m local.chaos_diff --seeds 40` runs the matrix
(`make reliability` runs 20 seeds after the CopyStart matrix and writes
docs/reliability-diff-latest.json).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from local.azurite import blob_endpoint
from local.chaos import (
    SUBSCRIPTION,
    Backend,
    CrashPoint,
    Injector,
    Layer,
    Trigger,
    VirtualSleepRetry,
    _replayable_uuids,
)
from local.compare import blob_differs
from local.emulator.credential import EmulatorCredential
from local.emulator.events import RequestInfo
from local.emulator.ids import parse_resource_id
from local.tables import TableRows
from shared import runtime
from shared.arm import RETRY_SETTINGS
from shared.config import load_settings
from shared.increments import PAGE
from shared.service import Replicator
from shared.tables.keys import COUNTER, GRANT_LOW

log = logging.getLogger("snapcopy.chaos")

FAULTS = ("lost_chunks", "duplicated_chunks", "crashes", "sas_expiry", "source_deletes")
REGIONS = ("westus3", "centralus")
MIB = 1024 * 1024
MAX_DEQUEUE = 5  # the host's maxDequeueCount: then the poison queue
RECOVERY_ROUNDS = 120
LATEST_JSON = Path(__file__).resolve().parent.parent / "docs" / "reliability-diff-latest.json"
TOTALS = (
    "snapshots",
    "copied",
    "failed",
    "chunks_lost",
    "chunks_duplicated",
    "crashes",
    "expired",
    "deleted",
    "poisoned",
)
CRASH_SITES: tuple[tuple[Trigger, Layer, str], ...] = (  # (trigger, layer, method)
    ("event", "store", "save_chain"),
    ("event", "store", "save_increment"),
    ("event", "arm", "grant_read"),
    ("event", "queue", "send"),
    ("chunk", "store", "record_chunk"),
    ("chunk", "store", "save_increment"),  # claiming the finish, then the stamp: around the blob snapshot
    ("chunk", "store", "save_chain"),  # the finish's commit, after the blob snapshot
    ("chunk", "store", "drop_chunks"),
    ("chunk", "store", "release_slot"),
    ("chunk", "arm", "revoke_read"),
    ("tick", "store", "save_increment"),
    ("tick", "store", "save_chain"),
    ("tick", "arm", "grant_read"),
    ("tick", "queue", "send"),
    ("sweep", "arm", "revoke_read"),
    ("sweep", "store", "save_grant"),
)


class DiffInjector(Injector):
    """The matrix's injector, with the chunk queue's sends as crash sites too."""

    def instrument(self, replicator: Replicator) -> None:
        queued = [point for point in self.points if point.layer == "queue"]
        self.points = [point for point in self.points if point.layer != "queue"]
        super().instrument(replicator)
        self.points += queued
        diff = replicator.deps.diff
        if queued and diff is not None:
            setattr(diff.queue, "send", self._wrap("queue", "send", diff.queue.send))  # noqa: B010


@dataclass(frozen=True)
class DiffScenario:
    seed: int
    fault: str
    disks: int
    rounds: int
    crash_points: tuple[CrashPoint, ...] = ()

    @classmethod
    def generate(cls, seed: int, *, quick: bool = False) -> DiffScenario:
        rng = random.Random(seed * 104729 + 7)
        fault = FAULTS[seed % len(FAULTS)]
        points: tuple[CrashPoint, ...] = ()
        if fault == "crashes":
            # every other site, alternating: two crash scenarios in a row cover every site
            half = CRASH_SITES[(seed // len(FAULTS)) % 2 :: 2]
            points = tuple(
                CrashPoint(
                    trigger,
                    layer,
                    method,
                    rng.randint(1, 4),
                    "before" if rng.random() < 0.5 else "after",
                    rng.random() < 0.5,
                )
                for trigger, layer, method in half
            )
        return cls(seed, fault, 2 if quick else rng.randint(2, 3), 3 if quick else rng.randint(4, 5), points)


@dataclass
class DiffResult:
    seed: int
    fault: str
    snapshots: int = 0
    copied: int = 0  # blob snapshots checked byte for byte
    failed: int = 0  # increments failed with a reason (their source deleted)
    chunks_lost: int = 0
    chunks_duplicated: int = 0
    crashes: int = 0
    expired: int = 0
    deleted: int = 0
    poisoned: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def injected(self) -> int:
        return {
            "lost_chunks": self.chunks_lost,
            "duplicated_chunks": self.chunks_duplicated,
            "crashes": self.crashes,
            "sas_expiry": self.expired,
            "source_deletes": self.deleted,
        }[self.fault]


class DiffChaos:
    """Runs one diff scenario end to end and checks the invariants."""

    def __init__(self, scenario: DiffScenario, backend: Backend) -> None:
        self.scenario, self.backend, self.world, self.clock = scenario, backend, backend.world, backend.clock
        self.rng = random.Random(scenario.seed * 7919 + 23)
        self.result = DiffResult(scenario.seed, scenario.fault)
        tag = f"{scenario.seed}x{uuid.uuid4().hex[:8]}"
        self.table = f"diffchaos{tag}"
        self.container = f"diffchaos{tag}"
        # the emulator's world is shared by the scenarios of a run: a group of their own
        self._group_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-diff-{tag}"
        endpoint = blob_endpoint(backend.connection_string)
        storage = {"blobEndpoint": endpoint, "container": self.container}
        targets = [{"region": region, "method": "diff", "storage": storage} for region in REGIONS]
        self.settings = load_settings(
            {
                "COPY_POLICIES": json.dumps([{"name": "dr", "targets": targets}]),
                "COPY_SOURCE_SCOPES": self._group_id,  # its own snapshots: the world keeps earlier scenarios'
                "STATE_CONNECTION_STRING": backend.connection_string,
                "STATE_TABLE_NAME": self.table,
                "ARM_ENDPOINT": backend.arm_url,
                "ARM_CA_BUNDLE": backend.ca_path,
            }
        )
        self.injector = DiffInjector(scenario.crash_points, 0, random.Random(scenario.seed + 3))
        self.replicator = self._build()
        diff = self.replicator.deps.diff
        assert diff is not None
        self.queue = _text_queue(diff.queue.client.url, diff.queue.client.credential)
        self.poison = _text_queue(f"{diff.queue.client.url}-poison", diff.queue.client.credential)
        for queue in (self.queue, self.poison):
            with contextlib.suppress(ResourceExistsError):
                queue.create_queue()
            queue.clear_messages()
        self.blobs: ContainerClient = BlobServiceClient.from_connection_string(
            backend.connection_string
        ).get_container_client(self.container)
        self.checker = TableRows.from_connection_string(backend.connection_string, self.table)
        self.disks: list[str] = []
        self.written: dict[str, list[tuple[int, int]]] = {}  # disk -> (start, length) of its writes
        self.sources: dict[str, Any] = {}  # snapshot id -> its image (what the copy must equal), while it exists
        self.images: dict[str, Any] = {}  # every snapshot's image, deleted ones too
        self.events: list[dict[str, Any]] = []
        self.faulty = True
        self.refused_before = self.world.access_counters()["refused"]

    def _build(self) -> Replicator:
        policy = VirtualSleepRetry(self.clock, **RETRY_SETTINGS)
        replicator = runtime.build(
            self.settings, clock=self.clock.now, arm_retry={"retry_policy": policy}, credential=EmulatorCredential()
        )
        self.injector.instrument(replicator)
        return replicator

    # --- the world's side ------------------------------------------------------------------

    def _create_disks(self) -> None:
        for index in range(self.scenario.disks):
            disk_id = f"{self._group_id}/providers/Microsoft.Compute/disks/vm{index}-data0"
            body = {"location": "eastus2", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 1}}
            self.world.put_disk(parse_resource_id(disk_id, "id"), body, RequestInfo("PUT"))
            self.disks.append(disk_id)

    def _write_and_snapshot(self, round_: int) -> None:
        for index, disk_id in enumerate(self.disks):
            for _ in range(self.rng.randint(0, 3)):  # 0: an unchanged snapshot (an empty diff)
                start = self.rng.randrange(0, 900 * MIB // PAGE) * PAGE
                length = self.rng.choice((PAGE, 64 * 1024, MIB, 5 * MIB + 3 * PAGE))
                self.world.write_disk(disk_id, start, length, self.rng.randrange(1, 1 << 30))
                self.written.setdefault(disk_id, []).append((start, length))
            if self.written.get(disk_id) and self.rng.random() < 0.4:  # trim part of an earlier write
                start, length = self.rng.choice(self.written[disk_id])
                self.world.clear_disk(disk_id, start, max(PAGE, length // 2 // PAGE * PAGE))
            if round_ == 2 and index == 0:  # the disk grows
                body = {
                    "location": "eastus2",
                    "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 2},
                }
                self.world.put_disk(parse_resource_id(disk_id, "id"), body, RequestInfo("PUT"))
            name = f"vm{index}-data0-s{round_}"
            snapshot_id = f"{self._group_id}/providers/Microsoft.Compute/snapshots/{name}"
            body = {
                "location": "eastus2",
                "properties": {
                    "creationData": {"createOption": "Copy", "sourceResourceId": disk_id},
                    "incremental": True,
                },
            }
            self.world.put_snapshot(parse_resource_id(snapshot_id, "id"), body, RequestInfo("PUT"))
            self.sources[snapshot_id.lower()] = self.images[snapshot_id.lower()] = self.world.snapshot_image(
                snapshot_id
            )
            self.result.snapshots += 1
            self.clock.advance(self.rng.uniform(1.0, 5.0))

    def _publish(self) -> None:
        """Event Grid's habits: duplicates, shuffled, some lost (the sweep finds those)."""
        for event in self.world.events(drain=True):
            if "/snapshots/" not in event["subject"] or self.rng.random() < 0.15:
                continue
            self.events += [event] * self.rng.choice((1, 1, 2))
        self.rng.shuffle(self.events)

    # --- the triggers ----------------------------------------------------------------------

    def _invoke(self, trigger: Trigger, action: Callable[[], Any]) -> None:
        try:
            with self.injector.running(trigger):
                action()
        except SystemExit:
            self.replicator = self._build()  # the host starts a fresh worker
        except Exception as error:  # a failed invocation: the platform retries it
            log.info("chaos: %s failed: %s", trigger, error)

    def _deliver(self) -> None:
        events, self.events = self.events, []
        for event in events:
            datum = meta.Datum(json.dumps(event), "json")
            failed: list[bool] = []

            def handle(event_datum: meta.Datum = datum, out: list[bool] = failed) -> None:
                try:
                    self.replicator.handle_event(EventGridEventInConverter.decode(event_datum, trigger_metadata={}))
                except Exception:
                    out.append(True)
                    raise

            self._invoke("event", handle)
            if failed:  # Event Grid delivers again later
                self.events.append(event)

    def _drain_chunks(self) -> None:
        """Run copy_chunk on every visible message, as the host does, with the fault's
        losses and duplicates; a message failed MAX_DEQUEUE times goes to the poison queue."""
        for _ in range(40):
            messages = list(self.queue.receive_messages(messages_per_page=16, max_messages=16, visibility_timeout=1))
            if not messages:
                break
            for message in messages:
                if self.faulty and self.scenario.fault == "lost_chunks" and self.rng.random() < 0.25:
                    self.queue.delete_message(message)
                    self.result.chunks_lost += 1
                    continue
                if self.faulty and self.scenario.fault == "duplicated_chunks" and self.rng.random() < 0.3:
                    self.queue.send_message(message.content)
                    self.result.chunks_duplicated += 1
                done: list[bool] = []

                def copy(text: str = message.content, out: list[bool] = done) -> None:
                    self.replicator.copy_chunk(text)
                    out.append(True)

                self._invoke("chunk", copy)
                if done:
                    self.queue.delete_message(message)
                elif (message.dequeue_count or 0) >= MAX_DEQUEUE:
                    self.poison.send_message(message.content)
                    self.queue.delete_message(message)
                    self.result.poisoned += 1
                else:
                    with contextlib.suppress(ResourceNotFoundError):
                        self.queue.update_message(message, visibility_timeout=0)
        for message in self.poison.receive_messages(max_messages=32, visibility_timeout=1):
            text: str = message.content
            self._invoke("chunk", lambda: self.replicator.chunk_poisoned(text))  # noqa: B023 (run at once)
            self.poison.delete_message(message)

    def _delete_a_source(self) -> None:
        """A source deleted while its increment copies; else (none copying) one not copied yet."""
        rows = self.checker.rows("chain|")
        copying = [
            job["SourceId"]
            for job in rows
            if job["RowKey"].startswith("job|")
            and job["State"] in ("copying", "queued")
            and job["SourceId"].lower() in self.sources
        ]
        if not copying:
            return
        source = self.rng.choice(copying)
        with contextlib.suppress(Exception):
            self.world.delete(parse_resource_id(source, "id"), RequestInfo("DELETE"))
            self.sources.pop(source.lower(), None)
            self.result.deleted += 1

    def _round(self, *, sweep: bool) -> None:
        self._deliver()
        self._fault()
        self._drain_chunks()
        self.clock.advance(60)
        self._invoke("tick", self.replicator.tick)
        self._fault()
        self._drain_chunks()
        if sweep:
            self._invoke("sweep", self.replicator.sweep)

    def _fault(self) -> None:
        """While increments copy (their chunks on the queue): a source deleted, SAS expired."""
        if not self.faulty:
            return
        if self.scenario.fault == "source_deletes" and self.rng.random() < 0.6:
            self._delete_a_source()
        if self.scenario.fault == "sas_expiry" and self.rng.random() < 0.5:
            self.result.expired += self.world.expire_access()

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> DiffResult:
        with _replayable_uuids(self.scenario.seed):
            try:
                self._create_disks()
                for round_ in range(self.scenario.rounds):
                    self._write_and_snapshot(round_)
                    self._publish()
                    self._round(sweep=round_ % 2 == 1)
                self.faulty = False
                self.injector.points = []
                for index in range(RECOVERY_ROUNDS):
                    self._round(sweep=index % 15 == 0)
                    if self._settled():
                        break
                self.clock.advance(3600)
                self._invoke("sweep", self.replicator.sweep)  # the hourly sweep revokes what is left
                self.result.crashes = len(self.injector.fired)
                self.result.violations = self.check()
            finally:
                self.replicator.arm.close()
                with contextlib.suppress(Exception):
                    self.blobs.delete_container()
                with contextlib.suppress(Exception):
                    TableServiceClient.from_connection_string(self.backend.connection_string).delete_table(self.table)
        return self.result

    def _settled(self) -> bool:
        rows = self.checker.rows("")
        busy = any(row["RowKey"].startswith(("inc|", "chunk|", "flight|")) for row in rows)
        jobs = [row for row in rows if row["RowKey"].startswith("job|")]
        wanted = {(source, region) for source in self.sources for region in REGIONS}
        have = {(row["SourceId"].lower(), row["PartitionKey"].rsplit("|", 1)[-1]) for row in jobs}
        final = all(row["State"] in ("succeeded", "failed", "skipped") for row in jobs)
        return not busy and final and wanted <= have and not self.events

    def check(self) -> list[str]:
        problems: list[str] = []
        rows = self.checker.rows("")
        jobs = [row for row in rows if row["RowKey"].startswith("job|")]
        left = [
            f"{row['PartitionKey']}/{row['RowKey']}"
            for row in rows
            if row["RowKey"].startswith(("inc|", "chunk|", "flight|")) or row["PartitionKey"].startswith(GRANT_LOW)
        ]
        left += [row["PartitionKey"] for row in rows if row["RowKey"] == COUNTER and row.get("InFlight")]
        if left:
            problems.append(f"rows left behind: {left[:5]}")
        by_chain: dict[str, list[dict[str, Any]]] = {}
        for row in jobs:
            by_chain.setdefault(row["PartitionKey"], []).append(row)
        for source in self.sources:  # still there: copied into every region (0 lost increments)
            for region in REGIONS:
                states = [
                    r["State"] for r in jobs if r["SourceId"].lower() == source and r["PartitionKey"].endswith(region)
                ]
                if states != ["succeeded"]:
                    problems.append(f"lost: {source.rsplit('/', 1)[-1]} → {region}: {states or 'no job'}")
        unfinished = [row["RowKey"] for row in jobs if row["State"] not in ("succeeded", "failed", "skipped")]
        if unfinished:
            problems.append(f"jobs that never ended: {unfinished[:5]}")
        for partition, chain in by_chain.items():
            chain.sort(key=lambda row: row["RowKey"])
            for row in chain:
                if row["State"] == "failed":
                    self.result.failed += 1
                    if row["SourceId"].lower() in self.sources or not row.get("Reason"):
                        problems.append(f"failed though its source exists: {row['RowKey']} {row.get('ErrorCode')}")
                elif row["State"] == "succeeded":
                    problems += self._wrong_blob(row)
            ended = [row for row in chain if row["State"] in ("succeeded", "failed") and row.get("StartedAt")]
            for before, after in itertools.pairwise(ended):
                if after["StartedAt"] < before["FinishedAt"]:
                    problems.append(f"order: {after['RowKey']} started before {before['RowKey']} ended")
            head = next((r for r in rows if r["PartitionKey"] == partition and r["RowKey"] == "head"), None)
            last = ended[-1] if ended else None
            if head is not None and last is not None:
                base = last["SourceId"] if last["State"] == "succeeded" else ""
                if (head.get("DiffBase") or "") != base:
                    problems.append(f"{partition}: diff base {head.get('DiffBase')!r}, expected {base!r}")
        if self.world.open_grants():
            problems.append(f"SAS left open: {self.world.open_grants()}")
        refused = self.world.access_counters()["refused"] - self.refused_before
        if refused:
            problems.append(f"{refused} grant(s) refused: the five-SAS limit was reached")
        return problems

    def _wrong_blob(self, job: dict[str, Any]) -> list[str]:
        image = self.images[job["SourceId"].lower()]  # a source deleted after its copy too
        self.result.copied += 1
        url, stamp = str(job.get("BlobSnapshot", "")).split("?snapshot=")
        name = url.rsplit("/", 1)[-1]
        problem = blob_differs(self.blobs.get_blob_client(name, snapshot=stamp), image)
        return [f"wrong blob: {job['RowKey']}: {problem}"] if problem else []


def _text_queue(url: str, credential: Any) -> QueueClient:
    return QueueClient.from_queue_url(
        url,
        credential=credential,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def run_diff_scenario(scenario: DiffScenario, backend: Backend) -> DiffResult:
    return DiffChaos(scenario, backend).run()


def main(argv: Sequence[str] | None = None) -> int:
    from local.chaos import local_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 disks x 3 snapshots per scenario")
    parser.add_argument("--json", default=str(LATEST_JSON), help="where to write the results ('' for nowhere)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    results: list[DiffResult] = []
    began = time.monotonic()
    with local_backend() as backend:
        for seed in range(args.seeds):
            result = run_diff_scenario(DiffScenario.generate(seed, quick=args.quick), backend)
            results.append(result)
            mark = "ok" if not result.violations else "VIOLATED: " + "; ".join(result.violations[:3])
            print(
                f"seed {seed:3d} {result.fault:18s} injected {result.injected:3d}, "
                f"{result.copied:3d} blob snapshots exact, {result.failed} failed (source deleted): {mark}",
                flush=True,
            )
    broken = [result for result in results if result.violations]
    totals = {name: sum(getattr(r, name) for r in results) for name in TOTALS}
    print(f"{len(results)} diff scenarios in {time.monotonic() - began:.0f} s, {len(broken)} with violations; {totals}")
    if args.json:
        document = {
            "seeds": args.seeds,
            "violations": sum(len(r.violations) for r in results),
            "totals": totals,
            "scenarios": [asdict(r) for r in results],
        }
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
