"""Chaos: seeded fault-injection scenarios against real Azurite and the ARM emulator.

One `Scenario` is N disks x K incremental snapshots replicated into two regions under a
tight cap, with one family of faults turned up (and Event Grid's habits always on):

- Event Grid: duplicates (up to 3x, same event id), random order, late delivery, loss;
  a delivery that fails is redelivered later, as Event Grid does.
- ARM: 429 with Retry-After, 500/503, slow answers, dropped connections, a CopyStart
  PUT that landed but whose answer was lost, copies that fail (`World.fail_copy`), and
  sources deleted before or while they copy.
- Crash points: a store or ARM method raises `SystemExit` (the worker dies; a fresh
  instance takes over) or an exception (the step fails) at its n-th call by one kind of
  trigger (and a few times after), before or after the call took effect: i.e. between
  two steps of that trigger. Crash seeds walk through every (trigger, step, before/after)
  window in turn (CRASH_WINDOWS). Later ticks, Event Grid's redelivery and the sweep
  must recover.
- Concurrency: several independent `Replicator` instances (`runtime.build`, as separate
  worker processes would be) against the same table and emulator, with up to 8 event
  handlers and 2 overlapping timer ticks at once in threads.

Time is the emulator's virtual clock, shared by snapcopy: ticks advance it, and the SDK's
retry backoff (and any Retry-After) advances it instead of sleeping.

After the faults stop, the scenario runs to quiescence and the invariants are checked
against the emulator's ground truth (`World.copies()`, its refusal counters) and the
state table (see `check_invariants`). `python -m local.chaos --seeds 200` runs the
matrix, prints a table and writes `docs/reliability-latest.json`; `make reliability`
runs it. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from local.emulator.clock import VirtualClock
from local.emulator.config import EmulatorConfig
from local.emulator.credential import EmulatorCredential
from local.emulator.errors import ArmError as EmulatorArmError
from local.emulator.events import RequestInfo
from local.emulator.faults import Answer, Fault
from local.emulator.ids import parse_resource_id
from local.emulator.world import World
from local.host import FunctionHost
from local.tables import TableRows
from local.topic import TopicServer, distinct_by_copy
from shared import runtime
from shared.arm import RETRY_SETTINGS, ArmError, ArmRetryPolicy
from shared.config import load_settings
from shared.model import ChainKey
from shared.notices import copy_id
from shared.service import Replicator

SUBSCRIPTION = "6f1c2b3a-0d4e-4a5b-9c8d-7e6f5a4b3c2d"
SOURCE_REGION = "eastus2"
REGIONS = ("westus3", "centralus")
GIB = 1024**3
EMULATOR_START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
LATEST_JSON = ROOT / "docs" / "reliability-latest.json"

# The matrix: every seed turns up one family of faults (see FAMILY_CYCLE).
FAMILIES = (
    "events",  # Event Grid's habits only, turned up: heavy loss, duplicates, late delivery
    "throttling",  # 429 with Retry-After, 409 OperationNotAllowed (someone else's copy)
    "server_errors",  # 500 / 503
    "slow",  # slow ARM answers (real delay, kept small)
    "dropped",  # dropped connections
    "lost_answers",  # CopyStart PUT landed, its answer lost (504 / connection error)
    "copy_failures",  # copies failed by ARM (copyCompletionError)
    "source_deletes",  # sources deleted before or while they copy
    "crashes",  # SystemExit / exceptions between the steps of every trigger
    "concurrency",  # 3 instances, 8 handlers + 2 overlapping ticks in threads
    "list_lag",  # LISTs lag 1-5 min behind writes (GETs do not), with heavy event loss
    "premium_v2",  # Premium SSD v2 / Ultra sources: not copyable until their own background copy ends
    "put_answers",  # CopyStart answered 200, 201, 202 with and without a body, Location only
    "refused_source",  # one source's CopyStart refused for as long as faults are on; the others run
    "policies",  # COPY_POLICIES: tags select, retention prunes, under server errors and throttling
    "everything",  # all of the above at once, at lower rates
)

Trigger = Literal["event", "tick", "sweep", "chunk"]  # chunk: the diff method's queue (local/chaos_diff.py)
Layer = Literal["store", "arm", "queue"]  # queue: the chunk queue's sends (local/chaos_diff.py)
TRIGGERS: tuple[Trigger, ...] = ("event", "tick", "sweep")

# Where a crash point may sit, per trigger: around every write of the store and every ARM
# call that trigger makes (shared/engine/starting.py, finishing.py and sweep.py document their steps).
CRASH_SITES: dict[Trigger, tuple[tuple[Layer, str], ...]] = {
    "event": (
        ("arm", "get_snapshot"),
        ("store", "register_region"),
        ("store", "create_head"),
        ("store", "add_job_guarded"),
        ("store", "mark_waiting"),
        ("arm", "list_snapshots"),
        ("store", "save_head"),
        ("store", "add_jobs"),
        ("store", "reserve_slot"),
        ("store", "put_index"),
        ("arm", "start_copy"),
        ("store", "save_chain"),
        ("store", "save_flight"),
        ("store", "release_slot"),
        ("store", "save_job"),
    ),
    "tick": (
        ("arm", "list_snapshots"),
        ("store", "save_flight"),
        ("store", "save_chain"),
        ("store", "release_slot"),
        ("store", "set_waiting"),
        ("store", "clear_waiting"),
        ("store", "save_head"),
        ("store", "add_jobs"),
        ("store", "reserve_slot"),
        ("store", "put_index"),
        ("arm", "start_copy"),
        ("store", "save_job"),
        ("store", "mark_waiting"),
        ("arm", "get_snapshot"),
    ),
    "sweep": (
        ("arm", "list_subscription_snapshots"),
        ("store", "create_head"),
        ("store", "add_job_guarded"),
        ("store", "mark_waiting"),
        ("store", "correct_counter"),
        ("arm", "get_snapshot"),
        ("store", "reserve_slot"),
        ("store", "save_chain"),
        ("store", "release_slot"),
    ),
}
# Every (trigger, site, before/after): crash scenarios walk through them in turn.
CRASH_WINDOWS: tuple[tuple[Trigger, Layer, str, Literal["before", "after"]], ...] = tuple(
    (trigger, layer, method, when)
    for when in ("after", "before")
    for index in range(max(len(sites) for sites in CRASH_SITES.values()))
    for trigger, sites in CRASH_SITES.items()
    if index < len(sites)
    for layer, method in [sites[index]]
)
# Which family each seed runs: seed % len(FAMILY_CYCLE). The first len(FAMILIES) slots hold
# each family once (the test slice runs them); then a second listing-lag slot and two more
# crash slots (a crash window is narrow: it takes many seeds to hit each one in a state
# where it matters). Slot 15 is not a crash slot, so the regression seeds (87, 234) replay.
FAMILY_CYCLE = (*FAMILIES, "list_lag", "crashes", "crashes")
_CRASH_SLOTS = tuple(index for index, name in enumerate(FAMILY_CYCLE) if name == "crashes")
FAULT_TARGETS: tuple[tuple[str | None, str | None], ...] = (
    ("PUT", "snapshot"),
    ("PUT", "snapshot"),
    ("GET", "snapshot"),
    ("GET", "snapshots_list"),
    ("GET", "snapshots_list"),
    (None, None),
)
LOST, STRANDED = "lost", "stranded"  # how `_outcome_problems` tags the worst of them
LOST_OR_STRANDED = (LOST, STRANDED)
V2_SKUS = ("PremiumV2_LRS", "UltraSSD_LRS")
ANSWERS: tuple[Answer, ...] = ("202-empty", "202-location-only", "201", "200")
PUBLISH_FAILURES = 0.3  # chance that a notification publish fails, in every scenario, until recovery
REFUSED_FOREVER = 100_000  # a fault count no scenario uses up
FAIL_CODES = ("InternalDiskManagementError", "CopyFailedInternal", "OperationPreempted")
MAX_DELIVERIES = 30  # Event Grid gives up after 24 h (dead-letter); far more than snapcopy needs
RECOVERY_TICKS = 150
RECOVERY_TICK_SECONDS = 60.0
RECOVERY_SWEEP_EVERY = 15
_OK_REFUSALS = frozenset({"source_not_found"})  # a source deleted just before its PUT
# The "policies" family: gold disks' snapshots (even-numbered disks) carry these tags; the
# first policy copies them to the first region and keeps the GOLD_KEEP newest there.
GOLD_TAGS = {"tier": "gold", "app": "db"}
GOLD_KEEP = 2


def _gold(disk_id: str) -> bool:
    return int(disk_id.rsplit("/", 1)[-1].split("-", maxsplit=1)[0].removeprefix("vm")) % 2 == 0


def chaos_policies(scenario: Scenario) -> list[dict[str, Any]]:
    """COPY_POLICIES of the "policies" family: gold copies to the first region, tagged and
    pruned; every snapshot to every region (the first only if not gold) by the second."""
    group = {"resourceGroup": scenario.target_group} if scenario.target_group else {}
    return [
        {
            "name": "gold",
            "sources": {"tags": {"tier": "gold"}},
            "targets": [{"region": scenario.regions[0], "retain": {"count": GOLD_KEEP}, **group}],
            "tags": {"owner": "chaos"},
        },
        {"name": "rest", "targets": [{"region": region, **group} for region in scenario.regions], "copyTags": False},
    ]


log = logging.getLogger("snapcopy.chaos")


# --- the scenario -------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPoint:
    """Raise at the `occurrence`-th call of a store or ARM method made by one kind of
    trigger (counted across all instances), i.e. between two steps of that trigger; then
    again every `period` calls, `repeat` times in all."""

    trigger: Trigger
    layer: Layer
    method: str
    occurrence: int
    when: Literal["before", "after"]  # after: the call took effect, then the failure
    exit: bool  # SystemExit (the worker process dies) or InjectedCrash (the step fails)
    period: int = 1
    repeat: int = 1

    def hits(self, call: int) -> bool:
        later = call - self.occurrence
        return later >= 0 and later % self.period == 0 and later // self.period < self.repeat

    def describe(self) -> str:
        what = "SystemExit" if self.exit else "exception"
        where = f"{self.when} {self.layer}.{self.method} #{self.occurrence}"
        if self.repeat > 1:
            where += f" (and every {self.period} after, {self.repeat} times)"
        return f"{what} {where} in a {self.trigger}"


@dataclass(frozen=True)
class Scenario:
    """A seeded scenario: the fleet, Event Grid's habits and the faults to inject."""

    seed: int
    family: str
    disks: int
    snapshots: int
    regions: tuple[str, ...] = REGIONS
    cap: int = 2
    instances: int = 1
    threads: bool = False
    loss: float = 0.1
    duplicates: float = 0.3
    late: float = 0.2
    fault_kinds: tuple[str, ...] = ()
    fault_rate: float = 0.0  # chance per step of arming one more ARM fault
    lost_answers: int = 0
    copy_failures: int = 0
    source_deletes: int = 0
    crash_points: tuple[CrashPoint, ...] = ()
    max_event_attempts: int = 10
    disk_in_target_region: bool = False
    full_snapshots: bool = False
    round_gap: int = 2  # steps between two rounds of snapshots
    target_group: str | None = None  # COPY_TARGET_RESOURCE_GROUP (None: beside the source)
    sweep_rate: float = 0.1  # chance per step that the sweep runs while faults are on
    list_lag: float = 0.0  # seconds a LIST lags behind writes (the whole run: Azure promises no bound)
    v2_disks: float = 0.0  # share of disks that are Premium SSD v2 or Ultra (sources with a background copy)
    answer_rate: float = 0.0  # chance per step of reshaping the next CopyStart answers (200/201/202, no body)
    refused_source: bool = False  # one source's CopyStart refused while faults are on
    policies: bool = False  # COPY_POLICIES (tag-selected gold copies kept 2 deep) instead of the old settings

    @classmethod
    def generate(cls, seed: int, *, quick: bool = False, family: str | None = None) -> Scenario:
        """The scenario of a seed: its family is FAMILY_CYCLE[seed % len(FAMILY_CYCLE)] unless given."""
        rng = random.Random(seed)
        family = family or FAMILY_CYCLE[seed % len(FAMILY_CYCLE)]
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
        disks = rng.randint(2, 3) if quick else rng.randint(2, 4)
        snapshots = 2 if quick else rng.randint(2, 3)
        base: dict[str, Any] = {
            "seed": seed,
            "family": family,
            "disks": disks,
            "snapshots": snapshots,
            "cap": rng.randint(2, 3),
            "loss": rng.uniform(0.05, 0.15),
            "duplicates": rng.uniform(0.2, 0.4),
            "late": rng.uniform(0.1, 0.3),
            "disk_in_target_region": rng.random() < 0.25,
            "full_snapshots": rng.random() < 0.3,
            "round_gap": rng.randint(1, 3),
            "max_event_attempts": rng.choice((3, 5, 10)),
            "target_group": rng.choice((None, "replicas")),
        }
        if family == "events":
            base.update(loss=rng.uniform(0.2, 0.4), duplicates=rng.uniform(0.4, 0.7), late=rng.uniform(0.3, 0.5))
        elif family == "throttling":
            base.update(fault_kinds=("throttle", "busy"), fault_rate=0.6)
        elif family == "server_errors":
            base.update(fault_kinds=("server",), fault_rate=0.6)
        elif family == "slow":
            base.update(fault_kinds=("slow",), fault_rate=0.6)
        elif family == "dropped":
            base.update(fault_kinds=("drop",), fault_rate=0.6)
        elif family == "lost_answers":
            base.update(lost_answers=rng.randint(1, 3))
        elif family == "copy_failures":
            base.update(copy_failures=rng.randint(1, 3))
        elif family == "source_deletes":
            base.update(source_deletes=rng.randint(1, 3))
        elif family == "crashes":  # three windows in turn, plus a random one; lost events feed the sweep
            windows = [CRASH_WINDOWS[(3 * _crash_ordinal(seed) + i) % len(CRASH_WINDOWS)] for i in range(3)]
            points = tuple(
                CrashPoint(
                    trigger,
                    layer,
                    method,
                    rng.randint(1, 3),
                    when,
                    exit=rng.random() < 0.7,
                    period=rng.randint(2, 4),
                    repeat=3,
                )
                for trigger, layer, method, when in windows
            )
            sweeping = any(point.trigger == "sweep" for point in points)
            base.update(
                crash_points=points + _crash_points(rng, 1),
                loss=rng.uniform(0.3, 0.5) if sweeping else rng.uniform(0.15, 0.3),
                sweep_rate=0.5 if sweeping else 0.2,
            )
        elif family == "concurrency":
            base.update(instances=3, threads=True)
        elif family == "list_lag":
            base.update(list_lag=rng.uniform(60, 300), loss=rng.uniform(0.2, 0.5), sweep_rate=0.2)
        elif family == "premium_v2":
            base.update(v2_disks=rng.uniform(0.5, 1.0))
        elif family == "put_answers":
            base.update(answer_rate=0.7)
        elif family == "refused_source":
            base.update(refused_source=True)
        elif family == "policies":
            base.update(policies=True, fault_kinds=("server", "throttle"), fault_rate=0.3, snapshots=rng.randint(3, 4))
        else:  # everything
            base.update(
                instances=2,
                threads=True,
                fault_kinds=("throttle", "busy", "server", "slow", "drop"),
                fault_rate=0.3,
                lost_answers=rng.randint(0, 1),
                copy_failures=rng.randint(0, 1),
                source_deletes=rng.randint(0, 1),
                crash_points=_crash_points(rng, rng.randint(1, 2)),
                sweep_rate=0.2,
                list_lag=rng.choice((0.0, rng.uniform(30, 120))),
                v2_disks=rng.choice((0.0, 0.5)),
                answer_rate=0.2,
                refused_source=rng.random() < 0.3,
            )
        return cls(**base)

    def describe(self) -> str:
        parts = [
            f"seed {self.seed} ({self.family}): {self.disks} disks x {self.snapshots} snapshots -> "
            f"{', '.join(self.regions)}, cap {self.cap}",
            f"loss {self.loss:.2f} dup {self.duplicates:.2f} late {self.late:.2f}",
        ]
        if self.instances > 1 or self.threads:
            parts.append(f"{self.instances} instances{' in threads' if self.threads else ''}")
        if self.fault_kinds:
            parts.append(f"ARM faults {'/'.join(self.fault_kinds)} at {self.fault_rate:.1f}/step")
        for name in ("lost_answers", "copy_failures", "source_deletes"):
            if getattr(self, name):
                parts.append(f"{name} {getattr(self, name)}")
        if self.list_lag:
            parts.append(f"LISTs lag {self.list_lag:.0f} s")
        if self.v2_disks:
            parts.append(f"{self.v2_disks:.0%} Premium SSD v2 / Ultra disks")
        if self.answer_rate:
            parts.append(f"CopyStart answers reshaped at {self.answer_rate:.1f}/step")
        if self.refused_source:
            parts.append("one source refused")
        parts.extend(point.describe() for point in self.crash_points)
        return "; ".join(parts)


def _crash_ordinal(seed: int) -> int:
    """The how-manieth crash scenario a seed is (so consecutive ones take consecutive windows)."""
    slot = seed % len(FAMILY_CYCLE)
    if slot not in _CRASH_SLOTS:
        return seed
    return (seed // len(FAMILY_CYCLE)) * len(_CRASH_SLOTS) + _CRASH_SLOTS.index(slot)


def _crash_points(rng: random.Random, count: int, trigger: Trigger | None = None) -> tuple[CrashPoint, ...]:
    points = []
    for _ in range(count):
        where: Trigger = trigger if trigger is not None else rng.choice(TRIGGERS)
        layer, method = rng.choice(CRASH_SITES[where])
        points.append(
            CrashPoint(
                trigger=where,
                layer=layer,
                method=method,
                occurrence=rng.randint(1, 4 if where == "sweep" else 8),
                when=rng.choice(("before", "after")),
                exit=rng.random() < 0.7,
            )
        )
    return tuple(points)


@dataclass
class ScenarioResult:
    """What one scenario did, and the invariants it broke (none, one hopes)."""

    seed: int
    family: str
    snapshots: int = 0  # source snapshots taken (eligible or not)
    events_delivered: int = 0  # handler invocations, redeliveries included
    duplicates: int = 0  # extra deliveries of an event Event Grid had already delivered
    lost: int = 0  # events never delivered
    redelivered: int = 0  # deliveries retried because the handler failed
    crashes: int = 0  # crash points that fired
    crashes_fired: list[str] = field(default_factory=list)
    arm_faults: int = 0  # faulted ARM requests (HTTP faults taken + lost answers)
    copy_failures: int = 0  # copies failed with World.fail_copy
    sources_deleted: int = 0
    copies: int = 0  # CopyStart copies ARM started
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    ticks: int = 0
    sweeps: int = 0
    instances: int = 0  # Replicator instances built (worker processes), replacements included
    concurrent_calls: int = 0  # triggers run in parallel threads
    lagged_lists: int = 0  # LISTs served while they lagged behind writes
    v2_sources: int = 0  # snapshots of Premium SSD v2 / Ultra disks (a background copy of their own)
    lost_or_stranded: int = 0  # eligible snapshots neither copied nor settled with a reason ARM confirms
    pruned: int = 0  # copies retention deleted (the "policies" family)
    notices: int = 0  # notifications the topic took (a resend of the same id counts again)
    publish_failures: int = 0  # publishes the topic refused on purpose
    virtual_seconds: float = 0.0
    elapsed: float = 0.0
    violations: list[str] = field(default_factory=list)


# --- where scenarios run ------------------------------------------------------------------


@dataclass
class Backend:
    """The emulator's world (in this process) and the Table endpoint scenarios share."""

    world: World
    arm_url: str
    ca_path: str
    connection_string: str
    topic: TopicServer | None = None  # the notification topic scenarios publish to (failing at random)

    @property
    def clock(self) -> VirtualClock:
        clock = self.world.clock
        if not isinstance(clock, VirtualClock):
            raise TypeError("chaos scenarios need the emulator on a virtual clock")
        return clock


@contextmanager
def local_backend() -> Iterator[Backend]:
    """Start Azurite and the ARM emulator (virtual clock) on free ports; stop them after."""
    from local.azurite import Azurite
    from local.emulator.server import EmulatorServer

    world = World(VirtualClock(EMULATOR_START), EmulatorConfig())
    topic = TopicServer()
    with Azurite.start() as azurite, EmulatorServer(world) as server:
        topic.start()
        try:
            yield Backend(world, server.url, str(server.ca_path), azurite.connection_string, topic)
        finally:
            topic.stop()


class VirtualSleepRetry(ArmRetryPolicy):
    """The SDK's retry policy with production settings, waiting on the virtual clock:
    a Retry-After or a backoff moves emulator (and snapcopy) time instead of sleeping."""

    def __init__(self, clock: VirtualClock, **settings: Any) -> None:
        super().__init__(**settings)
        self._clock = clock

    def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
        seconds = (self.get_retry_after(response) if response is not None else None) or self.get_backoff_time(settings)
        if seconds > 0:
            self._clock.advance(seconds)


# --- injected failures inside snapcopy's own process ---------------------------------------


class InjectedCrash(RuntimeError):
    """An injected failure between two steps (the worker lives on)."""


class Injector:
    """Wraps each instance's store and ARM client: crash points and lost CopyStart answers.

    Counts are global across instances, as if every worker shared one fate table."""

    def __init__(self, points: Sequence[CrashPoint], lost_answers: int, rng: random.Random) -> None:
        self.points = list(points)
        self.lost_answers_left = lost_answers
        self.losing = True  # lost answers stop with the other ARM faults; crash points never do
        self.fired: list[CrashPoint] = []
        self.answers_lost = 0
        self._calls: Counter[tuple[str, str, str]] = Counter()
        self._rng = rng
        self._lock = threading.Lock()
        self._running = threading.local()  # which trigger this thread runs

    @contextmanager
    def running(self, trigger: Trigger) -> Iterator[None]:
        self._running.trigger = trigger
        try:
            yield
        finally:
            self._running.trigger = None

    def stop_losing_answers(self) -> None:
        with self._lock:
            self.losing = False

    def instrument(self, replicator: Replicator) -> None:
        sites = {(point.layer, point.method) for point in self.points}
        for layer, method in sorted(sites):
            target = replicator.store if layer == "store" else replicator.arm
            setattr(target, method, self._wrap(layer, method, getattr(target, method)))
        if self.lost_answers_left:
            arm = replicator.arm
            setattr(arm, "start_copy", self._lose_answer(arm.start_copy))  # noqa: B010

    def _due(self, layer: str, method: str) -> CrashPoint | None:
        trigger = getattr(self._running, "trigger", None)
        with self._lock:
            if trigger is None:
                return None
            self._calls[(trigger, layer, method)] += 1
            count = self._calls[(trigger, layer, method)]
            for point in self.points:
                if (point.trigger, point.layer, point.method) == (trigger, layer, method) and point.hits(count):
                    return point
            return None

    def _fire(self, point: CrashPoint) -> None:
        with self._lock:
            self.fired.append(point)
        log.warning("chaos: firing %s", point.describe())
        if point.exit:
            raise SystemExit(f"chaos: worker died ({point.describe()})")
        raise InjectedCrash(f"chaos: {point.describe()}")

    def _wrap(self, layer: str, method: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            point = self._due(layer, method)
            if point is not None and point.when == "before":
                self._fire(point)
            result = real(*args, **kwargs)
            if point is not None:
                self._fire(point)
            return result

        return wrapped

    def _lose_answer(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def start_copy(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            with self._lock:
                lose = self.losing and self.lost_answers_left > 0 and self._rng.random() < 0.6
                if lose:
                    self.lost_answers_left -= 1
                    self.answers_lost += 1
                    timeout = self._rng.random() < 0.5
            if lose:
                if timeout:
                    raise ArmError("GatewayTimeout", "chaos: the CopyStart answer was lost", 504)
                raise ArmError("ConnectionError", "chaos: connection reset after the PUT was sent", None)
            return result

        return start_copy


# --- one run -------------------------------------------------------------------------------


@dataclass
class _Source:
    """A snapshot the fleet took."""

    id: str
    disk: str
    location: str
    incremental: bool
    deleted: bool = False

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass
class _Delivery:
    due: int
    event: dict[str, Any]
    attempt: int = 1


@dataclass
class _Instance:
    """One worker process's Replicator."""

    replicator: Replicator
    dead: bool = False


class ChaosRun:
    """Runs one scenario end to end and checks the invariants."""

    def __init__(self, scenario: Scenario, backend: Backend) -> None:
        self.scenario = scenario
        self.backend = backend
        self.world = backend.world
        self.clock = backend.clock
        self.rng = random.Random(scenario.seed * 7919 + 17)
        self.result = ScenarioResult(scenario.seed, scenario.family)
        self.table = f"chaos{scenario.seed}x{uuid.uuid4().hex[:10]}"
        self.checker = TableRows.from_connection_string(backend.connection_string, self.table)
        if scenario.policies:
            targets: dict[str, str] = {"COPY_POLICIES": json.dumps(chaos_policies(scenario))}
        else:
            targets = {"COPY_TARGET_REGIONS": ",".join(scenario.regions)}
            if scenario.target_group:
                targets["COPY_TARGET_RESOURCE_GROUP"] = scenario.target_group
        self.settings = load_settings(
            {
                **targets,
                "COPY_SOURCE_SCOPES": f"/subscriptions/{SUBSCRIPTION}",
                "STATE_CONNECTION_STRING": backend.connection_string,
                "STATE_TABLE_NAME": self.table,
                "ARM_ENDPOINT": backend.arm_url,
                "ARM_CA_BUNDLE": backend.ca_path,
                "MAX_COPIES_PER_REGION": str(scenario.cap),
                "EVENT_MAX_ATTEMPTS": str(scenario.max_event_attempts),
                **self._notify_settings(),
            }
        )
        self.injector = Injector(scenario.crash_points, scenario.lost_answers, random.Random(scenario.seed + 3))
        self.instances: list[_Instance] = []
        self.retired: list[_Instance] = []
        self.host = FunctionHost()
        self.sources: list[_Source] = []
        self.disks: list[tuple[str, str]] = []  # (disk id, location)
        self.queue: list[_Delivery] = []
        self.faults_armed = 0
        self.clean_sweep_at = -1  # how many crashes had fired when a sweep last ran to the end
        self.clean_sweep_began = EMULATOR_START  # when that sweep began (it lists first)
        self.work_began = EMULATOR_START
        self.last_snapshot_at = EMULATOR_START
        self.copy_failures_left = scenario.copy_failures
        self.deletes_left = scenario.source_deletes
        self.refused = False
        self.v2_disks: set[str] = set()
        self.step = 0

    def _notify_settings(self) -> dict[str, str]:
        topic = self.backend.topic
        return (
            {} if topic is None else {"NOTIFY_TOPIC_ENDPOINT": topic.endpoint, "NOTIFY_CA_BUNDLE": str(topic.ca_path)}
        )

    # --- instances ---------------------------------------------------------------------

    def _build(self) -> _Instance:
        policy = VirtualSleepRetry(self.clock, **RETRY_SETTINGS)
        replicator = runtime.build(
            self.settings, clock=self.clock.now, arm_retry={"retry_policy": policy}, credential=EmulatorCredential()
        )
        self.injector.instrument(replicator)
        self.result.instances += 1
        return _Instance(replicator)

    def _pick(self) -> _Instance:
        alive = [instance for instance in self.instances if not instance.dead]
        return self.rng.choice(alive)

    def _replace_dead(self) -> None:
        for index, instance in enumerate(self.instances):
            if instance.dead:
                self.retired.append(instance)
                self.instances[index] = self._build()  # the host starts a fresh worker

    # --- the user's side: disks and snapshots, straight into the emulator ---------------

    def _create_disks(self) -> None:
        scenario = self.scenario
        for index in range(scenario.disks):
            location = REGIONS[0] if scenario.disk_in_target_region and index == 0 else SOURCE_REGION
            group = f"rg-{index % 2}"
            name = f"vm{index}-data0"
            disk_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Compute/disks/{name}"
            body: dict[str, Any] = {
                "location": location,
                "properties": {
                    "creationData": {"createOption": "Empty"},
                    "diskSizeGB": self.rng.choice((32, 64, 128)),
                },
            }
            if self.rng.random() < scenario.v2_disks:
                body["sku"] = {"name": self.rng.choice(V2_SKUS)}
                self.v2_disks.add(disk_id.lower())
            self.world.put_disk(parse_resource_id(disk_id, "id"), body, RequestInfo("PUT"))
            self.disks.append((disk_id, location))

    def _take_round(self, round_: int) -> None:
        order = list(self.disks)
        self.rng.shuffle(order)
        for disk_id, location in order:
            name = disk_id.rsplit("/", 1)[-1]
            self._snapshot(disk_id, location, f"{name}-s{round_}", incremental=True)
            if self.scenario.full_snapshots and self.rng.random() < 0.15:
                self._snapshot(disk_id, location, f"{name}-full{round_}", incremental=False)
            self.clock.advance(self.rng.uniform(0.5, 3.0))  # distinct creation times

    def _snapshot(self, disk_id: str, location: str, name: str, *, incremental: bool) -> None:
        group = disk_id.split("/")[4]
        snapshot_id = (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Compute/snapshots/{name}"
        )
        creation: dict[str, Any] = {"createOption": "Copy", "sourceResourceId": disk_id}
        if self.scenario.v2_disks and self.rng.random() < 0.3:
            creation["instantAccessDurationMinutes"] = 60  # InstantAccess, then AvailableWithInstantAccess
        body: dict[str, Any] = {
            "location": location,
            "properties": {"creationData": creation, "incremental": incremental},
        }
        if self.scenario.policies and _gold(disk_id):
            body["tags"] = dict(GOLD_TAGS)
        self.world.put_snapshot(parse_resource_id(snapshot_id, "id"), body, RequestInfo("PUT"))
        self.sources.append(_Source(snapshot_id, disk_id, location, incremental))
        self.last_snapshot_at = self.clock.now()
        self.result.snapshots += 1
        self.result.v2_sources += int(disk_id.lower() in self.v2_disks)

    # --- Event Grid -----------------------------------------------------------------------

    def _publish(self) -> None:
        """Hand the emulator's new events to 'Event Grid': lose, duplicate, delay some."""
        scenario = self.scenario
        for event in self.world.events(drain=True):
            if self.rng.random() < scenario.loss:
                self.result.lost += 1
                continue
            copies = 1 + int(self.rng.random() < scenario.duplicates) + int(self.rng.random() < scenario.duplicates / 3)
            self.result.duplicates += copies - 1
            for _ in range(copies):
                late = self.rng.random() < scenario.late
                delay = self.rng.randint(3, 12) if late else self.rng.randint(0, 1)
                self.queue.append(_Delivery(self.step + delay, event))

    def _due_deliveries(self, limit: int | None = None) -> list[_Delivery]:
        due = [item for item in self.queue if item.due <= self.step]
        self.rng.shuffle(due)
        if limit is not None:
            due = due[:limit]
        taken = {id(item) for item in due}
        self.queue = [item for item in self.queue if id(item) not in taken]
        return due

    def _after_delivery(self, delivery: _Delivery, outcome: str) -> None:
        self.result.events_delivered += 1
        if outcome == "ok":
            return
        if delivery.attempt >= MAX_DELIVERIES:
            return  # dead-lettered; the sweep still finds the snapshot
        self.result.redelivered += 1
        retry = _Delivery(self.step + self.rng.randint(1, 3), delivery.event, delivery.attempt + 1)
        self.queue.append(retry)

    # --- invoking snapcopy -----------------------------------------------------------------

    def _invoke(self, trigger: Trigger, action: Callable[[_Instance], None], instance: _Instance, host: bool) -> str:
        """Run one trigger on an instance: "ok", "exit" (the worker died) or "error"."""
        log.info("chaos: step %d: %s on instance %x", self.step, getattr(action, "what", trigger), id(instance))
        try:
            with self.injector.running(trigger):
                if host:
                    runtime.install(instance.replicator)
                action(instance)
        except SystemExit:
            instance.dead = True
            return "exit"
        except Exception:
            return "error"
        return "ok"

    def _event(self, event: dict[str, Any], via_host: bool) -> Callable[[_Instance], None]:
        def deliver(instance: _Instance) -> None:
            if via_host:
                self.host.deliver_event(event)
            else:  # decoded exactly as the host does it
                datum = meta.Datum(json.dumps(event), "json")
                instance.replicator.handle_event(EventGridEventInConverter.decode(datum, trigger_metadata={}))

        deliver.what = f"event {_name(event['subject'])}"  # type: ignore[attr-defined]
        return deliver

    def _tick(self, via_host: bool) -> Callable[[_Instance], None]:
        def tick(instance: _Instance) -> None:
            if via_host:
                self.host.run_timer()
            else:
                instance.replicator.tick()

        return tick

    def _sweep(self, via_host: bool) -> Callable[[_Instance], None]:
        def sweep(instance: _Instance) -> None:
            if via_host:
                self.host.run_timer(function="sweep_sources")
            else:
                instance.replicator.sweep()

        return sweep

    def _prune(self) -> Callable[[_Instance], None]:
        def prune(instance: _Instance) -> None:
            self.host.run_timer(function="prune_copies")

        prune.what = "prune"  # type: ignore[attr-defined]
        return prune

    def _work_sequential(self, deliveries: list[_Delivery], sweep: bool) -> None:
        """One worker: the due events, then the timer (and maybe the sweep), through the host."""
        for delivery in deliveries:
            outcome = self._invoke("event", self._event(delivery.event, True), self._pick(), host=True)
            self._after_delivery(delivery, outcome)
            self._replace_dead()
        self._invoke("tick", self._tick(True), self._pick(), host=True)
        self.result.ticks += 1
        self._replace_dead()
        if self.scenario.policies and self.rng.random() < 0.5:
            self._invoke("sweep", self._prune(), self._pick(), host=True)
            self._replace_dead()
        if sweep:
            self._swept(self._invoke("sweep", self._sweep(True), self._pick(), host=True))
            self.result.sweeps += 1
            self._replace_dead()

    def _work_threaded(self, pool: ThreadPoolExecutor, deliveries: list[_Delivery], sweep: bool) -> None:
        """Up to 8 handlers and 2 overlapping ticks (and maybe the sweep) at once, on random instances."""

        def start(trigger: Trigger, action: Callable[[_Instance], None]) -> Future[str]:
            return pool.submit(self._invoke, trigger, action, self._pick(), False)

        handlers = [start("event", self._event(delivery.event, False)) for delivery in deliveries]
        timers = [start("tick", self._tick(False)) for _ in range(2)]
        if sweep:
            timers.append(start("sweep", self._sweep(False)))
        for delivery, handler in zip(deliveries, handlers, strict=True):
            self._after_delivery(delivery, handler.result())
        for timer in timers:
            timer.result()
        if sweep:
            self._swept(timers[-1].result())
        self.result.ticks += 2
        self.result.sweeps += int(sweep)
        self.result.concurrent_calls += len(handlers) + len(timers)
        self._replace_dead()

    def _swept(self, outcome: str) -> None:
        if outcome == "ok":
            self.clean_sweep_at = len(self.injector.fired)
            self.clean_sweep_began = self.work_began

    @property
    def swept_since_last_crash(self) -> bool:
        """Whether a sweep ran to the end after the last crash: until one has, a snapshot
        whose events were lost may be unknown to snapcopy (the hourly sweep would find it)."""
        if self.clean_sweep_at != len(self.injector.fired):
            return False
        # with LISTs lagging, a sweep finds a lost event's snapshot only once the lag has
        # passed since it was taken (the hourly sweep would): until one has, it may be unknown
        return self.clean_sweep_began - self.last_snapshot_at >= timedelta(seconds=self.scenario.list_lag)

    # --- chaos ----------------------------------------------------------------------------

    def _arm_fault(self) -> None:
        kind = self.rng.choice(self.scenario.fault_kinds)
        method, target = self.rng.choice(FAULT_TARGETS)
        count = self.rng.randint(1, 4)
        if kind == "throttle":
            fault = Fault(method, target, status=429, retry_after=self.rng.choice((1, 2, 5, 10)), count=count)  # type: ignore[arg-type]
        elif kind == "busy":
            fault = Fault("PUT", "snapshot", status=409, error_code="OperationNotAllowed", count=self.rng.randint(1, 2))
        elif kind == "server":
            fault = Fault(method, target, status=self.rng.choice((500, 503)), count=count)  # type: ignore[arg-type]
        elif kind == "slow":
            fault = Fault(method, target, delay_seconds=self.rng.uniform(0.02, 0.12), count=count)  # type: ignore[arg-type]
        else:  # drop
            fault = Fault(method, target, drop_connection=True, count=count)  # type: ignore[arg-type]
        self.world.add_fault(fault)
        self.faults_armed += fault.count

    def _fail_a_copy(self) -> None:
        copying = [copy for copy in self.world.copies() if copy["state"] == "copying"]
        if not copying:
            return
        copy = self.rng.choice(copying)
        code = self.rng.choice(FAIL_CODES)
        try:
            self.world.fail_copy(copy["target_id"], code, "chaos: the copy failed in the region")
        except EmulatorArmError:
            return
        self.copy_failures_left -= 1
        self.result.copy_failures += 1

    def _refuse_a_source(self) -> None:
        """Every CopyStart of one source is refused (a permanent 400, a 409 that looks
        passing, or a 500 that leaves the outcome unknown) until faults stop."""
        incremental = [source for source in self.sources if source.incremental]
        if not incremental:
            return
        source = self.rng.choice(incremental)
        refusals = ((400, "BadRequest"), (409, "OperationNotAllowed"), (500, "InternalServerError"))
        status, code = self.rng.choice(refusals)
        fault = Fault("PUT", "snapshot", status=status, error_code=code, body_contains=source.id, count=REFUSED_FOREVER)
        self.world.add_fault(fault)
        self.faults_armed += fault.count
        self.refused = True

    def _delete_a_source(self) -> None:
        live = [source for source in self.sources if not source.deleted and source.incremental]
        copying = {copy["source_id"].lower() for copy in self.world.copies() if copy["state"] == "copying"}
        busy = [source for source in live if source.key in copying]
        pool = busy if busy and self.rng.random() < 0.6 else live
        if not pool:
            return
        source = self.rng.choice(pool)
        self.world.delete(parse_resource_id(source.id, "id"), RequestInfo("DELETE"))
        source.deleted = True
        self.deletes_left -= 1
        self.result.sources_deleted += 1

    def _inject(self) -> None:
        scenario = self.scenario
        if scenario.fault_kinds and self.rng.random() < scenario.fault_rate:
            self._arm_fault()
        if scenario.answer_rate and self.rng.random() < scenario.answer_rate:
            fault = Fault("PUT", "snapshot", answer=self.rng.choice(ANSWERS), count=self.rng.randint(1, 3))
            self.world.add_fault(fault)
            self.faults_armed += fault.count
        if scenario.refused_source and not self.refused and self.sources:
            self._refuse_a_source()
        if self.copy_failures_left and self.rng.random() < 0.35:
            self._fail_a_copy()
        if self.deletes_left and self.rng.random() < 0.3:
            self._delete_a_source()

    def _stop_chaos(self) -> None:
        remaining = sum(int(item["remaining"]) for item in self.world.faults())
        self.world.clear_faults()
        self.injector.stop_losing_answers()
        if self.backend.topic is not None:
            self.backend.topic.topic.fail_randomly(0.0, 0)
        self.result.arm_faults = self.faults_armed - remaining + self.injector.answers_lost

    # --- the run --------------------------------------------------------------------------

    def run(self) -> ScenarioResult:
        with _replayable_uuids(self.scenario.seed):
            return self._run()

    def _run(self) -> ScenarioResult:
        began, virtual_began = time.monotonic(), self.clock.now()
        scenario = self.scenario
        self.world.reset()
        self.world.configure(
            cap=scenario.cap,
            min_copy_seconds=30,
            copy_bytes_per_second=GIB,
            list_lag_seconds=scenario.list_lag,
            source_copy_seconds_factor=3.0,
        )
        if self.backend.topic is not None:
            self.backend.topic.topic.reset()
            self.backend.topic.topic.fail_randomly(PUBLISH_FAILURES, scenario.seed)
        self.instances = [self._build() for _ in range(scenario.instances)]
        pool = ThreadPoolExecutor(max_workers=11) if scenario.threads else None
        try:
            self._create_disks()
            self.world.events(drain=True)  # disk writes: nothing for snapcopy
            rounds = {round_ * scenario.round_gap: round_ for round_ in range(scenario.snapshots)}
            chaos_steps = max(rounds) + self.rng.randint(2, 4)
            for self.step in range(chaos_steps):
                if self.step in rounds:
                    self._take_round(rounds[self.step])
                self._inject()
                self._publish()
                self._work(pool, sweep=self.rng.random() < scenario.sweep_rate)
                self._check_slots()
                self.clock.advance(self.rng.uniform(20, 90))
            self._stop_chaos()
            self._publish()
            self._work(pool, sweep=True, deliver=False)  # ARM healthy again: the sweep finds lost events
            sweep_now = False
            for index in range(RECOVERY_TICKS):
                self.step += 1
                self.clock.advance(RECOVERY_TICK_SECONDS)
                self._publish()
                self._work(pool, sweep=sweep_now or index % RECOVERY_SWEEP_EVERY == RECOVERY_SWEEP_EVERY - 1)
                settled = self._settled(self._check_slots())
                if settled and self.swept_since_last_crash:
                    break
                sweep_now = settled  # quiet, but a crash may have cut the last sweep short: sweep again
            else:
                self.result.violations.append(f"not settled after {RECOVERY_TICKS} recovery ticks")
            if scenario.policies:  # the last retention run, ARM healthy: what it leaves is checked
                outcome = self._invoke("sweep", self._prune(), self._pick(), host=True)
                if outcome != "ok":
                    self.result.violations.append(f"the last retention run ended {outcome}")
            self.result.crashes = len(self.injector.fired)
            self.result.crashes_fired = [point.describe() for point in self.injector.fired]
            self.result.violations.extend(self.check_invariants())
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            runtime.install(None)
            for instance in self.instances + self.retired:
                instance.replicator.arm.close()
            self._drop_table()
        self.result.virtual_seconds = (self.clock.now() - virtual_began).total_seconds()
        self.result.elapsed = time.monotonic() - began
        return self.result

    def _work(self, pool: ThreadPoolExecutor | None, *, sweep: bool, deliver: bool = True) -> None:
        self.work_began = self.clock.now()
        deliveries = self._due_deliveries(limit=8 if pool is not None else None) if deliver else []
        if pool is not None:
            self._work_threaded(pool, deliveries, sweep)
        else:
            self._work_sequential(deliveries, sweep)

    def _drop_table(self) -> None:
        service = TableServiceClient.from_connection_string(self.backend.connection_string)
        try:
            service.delete_table(self.table)
        except ResourceNotFoundError:
            pass
        finally:
            service.close()

    def _settled(self, slots: list[dict[str, Any]]) -> bool:
        """Nothing left to deliver, copying in ARM, queued or in flight in the table."""
        if self.queue or any(row["RowKey"].startswith("flight|") for row in slots):
            return False
        if any(copy["state"] == "copying" for copy in self.world.copies()):
            return False
        rows = self.checker.rows("chain|")
        if any(row["RowKey"].startswith("outbox|") for row in (*rows, *slots)) or self.checker.rows("outbox"):
            return False  # notices still to publish
        return not any(row["RowKey"].startswith("job|") and row["State"] in ("queued", "copying") for row in rows)

    # --- invariants -----------------------------------------------------------------------

    def _check_slots(self) -> list[dict[str, Any]]:
        """Whenever nothing runs: each region's slot counter equals its flight rows.
        Returns the region partitions' rows."""
        slots = self.checker.rows("region|")
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in slots:
            by_partition[row["PartitionKey"]].append(row)
        for partition, rows in sorted(by_partition.items()):
            counter = next((int(row.get("InFlight", 0)) for row in rows if row["RowKey"] == "counter"), 0)
            flights = sum(1 for row in rows if row["RowKey"].startswith("flight|"))
            if counter != flights:
                self.result.violations.append(
                    f"step {self.step}: {partition} counts {counter} in flight but holds {flights} flight rows"
                )
        return slots

    def check_invariants(self) -> list[str]:
        """Every invariant, from the emulator's ground truth and the state table."""
        violations: list[str] = []
        copies = self.world.copies()
        counters = self.world.counters()
        rows = self.checker.rows("chain|")
        slots = self.checker.rows("region|")
        self.result.copies = len(copies)
        if self.scenario.list_lag:
            self.result.lagged_lists = int(counters["requests"].get("LIST snapshots", 0))

        # 1. ARM never refused a copy for breaking one of its rules
        for name, count in sorted(counters["refusals"].items()):
            if count and name not in _OK_REFUSALS:
                violations.append(f"the emulator refused {count} CopyStart(s) for rule '{name}'")

        # 2. every eligible snapshot: copied exactly once per region, or failed/skipped with a reason
        jobs: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            if row["RowKey"].startswith("job|"):
                region = row["PartitionKey"].rsplit("|", 1)[-1]
                jobs[(row["SourceId"].lower(), region)] = row
                state = row["State"]
                self.result.succeeded += state == "succeeded"
                self.result.failed += state == "failed"
                self.result.skipped += state == "skipped"
        made: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for copy in copies:
            made[(copy["source_id"].lower(), copy["region"])].append(copy)
        eligible: set[tuple[str, str]] = set()
        for source in self.sources:
            for region in self.scenario.regions:
                if source.incremental and region != source.location:
                    eligible.add((source.key, region))
                    problems = _outcome_problems(source, region, made[(source.key, region)], jobs)
                    self.result.lost_or_stranded += sum(1 for p in problems if p.endswith(LOST_OR_STRANDED))
                    violations.extend(problems)
        for pair in sorted(set(made) - eligible):
            violations.append(f"{_name(pair[0])} → {pair[1]}: copied, but it is not an eligible source")
        for pair in sorted(set(jobs) - eligible):
            violations.append(f"{_name(pair[0])} → {pair[1]}: a job exists, but it is not an eligible source")

        # 3. per chain: creation order, never two in flight; per region: the cap
        violations.extend(_order_problems(copies))
        violations.extend(_cap_problems(copies, self.scenario.cap))

        # 4. chain heads agree with their jobs (no lost update of the watermark or the head)
        violations.extend(_head_problems(rows, made))

        # 5. policies: only our completed copies deleted, each chain kept as deep as `retain` says, tags carried
        if self.scenario.policies:
            deletions = self.world.deletions()
            self.result.pruned = len(deletions)
            violations.extend(_policy_problems(deletions, rows, self.scenario.regions[0], self.world))

        # 6. notifications: each copy's transitions announced once each (by distinct id), whatever failed
        if self.backend.topic is not None:
            self.result.notices = len(self.backend.topic.topic.received)
            self.result.publish_failures = self.backend.topic.topic.failed
            violations.extend(_notice_problems(rows, self.backend.topic.topic.events()))

        # 7. no slot held or counted at the end
        for row in slots:
            if row["RowKey"].startswith("flight|"):
                violations.append(f"{row['PartitionKey']}: flight row {row['RowKey']} left behind")
            elif row["RowKey"] == "counter" and int(row.get("InFlight", 0)) != 0:
                violations.append(f"{row['PartitionKey']}: slot counter left at {row['InFlight']}")
        return violations


@contextmanager
def _replayable_uuids(seed: int) -> Iterator[None]:
    """uuid4 drawn from the seed while a scenario runs: the emulator's family ids (which order
    chain partitions, hence which chain a crash point hits) and every other id replay, so a
    scenario with one worker runs the same way every time."""
    rng, lock, real = random.Random(f"uuid-{seed}"), threading.Lock(), uuid.uuid4

    def uuid4() -> uuid.UUID:
        with lock:
            return uuid.UUID(int=rng.getrandbits(128), version=4)

    setattr(uuid, "uuid4", uuid4)  # noqa: B010
    try:
        yield
    finally:
        setattr(uuid, "uuid4", real)  # noqa: B010


def _name(source_id: str) -> str:
    return source_id.rsplit("/", 1)[-1]


def _policy_problems(
    deletions: list[dict[str, Any]], rows: list[dict[str, Any]], gold_region: str, world: World
) -> list[str]:
    """Retention deleted only completed copies snapcopy made, only where a policy prunes, and
    left every gold chain exactly GOLD_KEEP deep (its newest included); copies carry their tags."""
    problems = []
    deleted = {item["id"].lower() for item in deletions}
    for item in deletions:
        ours = item["create_option"] == "CopyStart" and "snapcopy-source" in item["tags"]
        if not ours or item["copy_state"] != "succeeded" or not item["id"].lower().endswith(f"-{gold_region}"):
            problems.append(f"{_name(item['id'])}: deleted, but it was not a completed copy retention may prune")
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["RowKey"].startswith("job|") and row["State"] == "succeeded":
            chains[row["PartitionKey"]].append(row)
    for partition, done in sorted(chains.items()):
        done.sort(key=lambda row: row["RowKey"])
        kept = [row for row in done if row["TargetId"].lower() not in deleted]
        gold = partition.endswith(f"|{gold_region}") and done[-1].get("Policy") == "gold"
        if not gold:
            if len(kept) != len(done):
                problems.append(f"{partition}: copies deleted where no policy prunes")
            continue
        if done[-1] not in kept:
            problems.append(f"{partition}: the newest completed copy was deleted")
        if len(kept) != min(GOLD_KEEP, len(done)):
            problems.append(f"{partition}: {len(kept)} completed copies kept, retain says {min(GOLD_KEEP, len(done))}")
        for row in kept:
            tags = world.snapshot_tags(row["TargetId"])
            if tags is not None and not {"tier": "gold", "app": "db", "owner": "chaos"}.items() <= tags.items():
                problems.append(f"{_name(row['TargetId'])}: tags {tags} lack the source's and the policy's")
    return problems


_TYPES_BY_STATE = {
    "succeeded": "Snapcopy.CopyCompleted",
    "failed": "Snapcopy.CopyFailed",
    "skipped": "Snapcopy.CopySkipped",
    "cancelled": "Snapcopy.CopySkipped",
}


def _notice_problems(rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[str]:
    """Per copy: one distinct id for its end, one for its start when it started, one for
    its pruning when it was pruned; no notice for a copy with no job; each id one notice."""
    problems: list[str] = []
    by_id: dict[str, tuple[str, str]] = {}
    for event in events:
        copy = event.get("data", {}).get("copyId")
        if copy is None:
            continue
        seen = by_id.setdefault(event["id"], (event["type"], copy))
        if seen != (event["type"], copy):
            problems.append(f"notice id {event['id']} published as {seen} and as {(event['type'], copy)}")
    kinds = distinct_by_copy(events)
    jobs = {
        copy_id(ChainKey(row["PartitionKey"].split("|")[1], row["PartitionKey"].split("|")[2]), row["RowKey"][4:]): row
        for row in rows
        if row["RowKey"].startswith("job|")
    }
    for copy in sorted(set(kinds) - set(jobs)):
        problems.append(f"notices for copy {copy}, which no job row holds")
    for copy, row in sorted(jobs.items()):
        expected = Counter[str]()
        if row["State"] in _TYPES_BY_STATE:
            expected[_TYPES_BY_STATE[row["State"]]] = 1
        if row.get("StartedAt") is not None:
            expected["Snapcopy.CopyStarted"] = 1
        if row.get("PrunedAt") is not None:
            expected["Snapcopy.CopyPruned"] = 1
        found = Counter(kinds.get(copy, {}))
        found.pop("Snapcopy.CopyStuck", None)
        if found != expected:
            problems.append(
                f"{_name(row['SourceId'])} → {row['PartitionKey'].rsplit('|', 1)[-1]} ({row['State']}): "
                f"notices {dict(found)}, expected {dict(expected)}"
            )
    return problems


def _outcome_problems(
    source: _Source, region: str, found: list[dict[str, Any]], jobs: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """One eligible (snapshot, region): what ARM did must be what the job says."""
    where = f"{_name(source.id)} → {region}"
    job = jobs.get((source.key, region))
    state = job["State"] if job is not None else None
    if len(found) > 1:
        return [f"{where}: copied {len(found)} times"]
    if found:
        copy = found[0]
        if copy["state"] == "copying":
            return [f"{where}: still copying in ARM at the end"]
        if job is None:
            return [f"{where}: ARM copied it ({copy['state']}) but no job records it"]
        if copy["state"] == "succeeded" and state != "succeeded":
            return [f"{where}: ARM finished the copy but the job says {state} ({job.get('Reason', '')})"]
        if copy["state"] == "failed":
            code = (copy.get("error") or {}).get("errorCode", "")
            if state != "failed" or job.get("ErrorCode") != code:
                return [f"{where}: ARM failed the copy with {code} but the job says {state} {job.get('ErrorCode')}"]
        return []
    if job is None:
        return [] if source.deleted else [f"{where}: silently missing (no copy, no job); {LOST}"]
    if state == "succeeded":
        return [f"{where}: the job says succeeded but ARM never copied it"]
    if state == "skipped":
        if not job.get("Reason"):
            return [f"{where}: skipped without a reason"]
        return [] if source.deleted else [f"{where}: skipped although its source exists: {job['Reason']}; {LOST}"]
    if state == "failed":
        return [] if job.get("ErrorCode") and job.get("Reason") else [f"{where}: failed without ARM's code or reason"]
    return [f"{where}: left {state} at the end; {STRANDED}"]


def _order_problems(copies: list[dict[str, Any]]) -> list[str]:
    problems = []
    chains: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for copy in copies:  # ground truth is in start order
        chains[(copy["family_id"], copy["region"])].append(copy)
    for (family, region), items in sorted(chains.items()):
        times = [item["source_time_created"] for item in items]
        if any(later <= earlier for earlier, later in itertools.pairwise(times)):
            order = ", ".join(_name(item["source_id"]) for item in items)
            problems.append(f"chain {family[:8]} → {region}: copies not started in creation order ({order})")
        for earlier, later in itertools.pairwise(items):
            if earlier["finished_at"] is None or earlier["finished_at"] > later["started_at"]:
                problems.append(
                    f"chain {family[:8]} → {region}: {_name(earlier['source_id'])} and "
                    f"{_name(later['source_id'])} in flight at once"
                )
    return problems


def _cap_problems(copies: list[dict[str, Any]], cap: int) -> list[str]:
    problems = []
    regions: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for copy in copies:
        key = (copy["subscription"].lower(), copy["region"])
        regions[key].append((copy["started_at"], 1))
        if copy["finished_at"] is not None:
            regions[key].append((copy["finished_at"], -1))
    for (_, region), marks in sorted(regions.items()):
        level = peak = 0
        for _, change in sorted(marks):  # at equal times a finish (-1) sorts before a start
            level += change
            peak = max(peak, level)
        if peak > cap:
            problems.append(f"{region}: {peak} copies in flight at once, over the cap of {cap}")
    return problems


def _head_problems(rows: list[dict[str, Any]], made: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    problems = []
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    heads: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["RowKey"] == "head":
            heads[row["PartitionKey"]] = row
        elif row["RowKey"].startswith("job|"):
            chains[row["PartitionKey"]].append(row)
    for partition, head in sorted(heads.items()):
        jobs = chains.get(partition, [])
        region = partition.rsplit("|", 1)[-1]
        started = [row["RowKey"][4:] for row in jobs if made.get((row["SourceId"].lower(), region))]
        succeeded = [row["RowKey"][4:] for row in jobs if row["State"] == "succeeded"]
        if head.get("CopyingKey"):
            problems.append(f"{partition}: head still says {head['CopyingKey']} is copying")
        if (head.get("LastStartedKey") or "") != max(started, default=""):
            problems.append(
                f"{partition}: order watermark {head.get('LastStartedKey')!r} but the newest started copy is "
                f"{max(started, default='')!r}"
            )
        if (head.get("LastCompletedKey") or "") != max(succeeded, default=""):
            problems.append(
                f"{partition}: last completed {head.get('LastCompletedKey')!r} but the newest succeeded job is "
                f"{max(succeeded, default='')!r}"
            )
    return problems


def run_scenario(scenario: Scenario, backend: Backend) -> ScenarioResult:
    """Run one scenario against the backend and return what it did and what it broke."""
    return ChaosRun(scenario, backend).run()


# --- the matrix -------------------------------------------------------------------------------

TOTALS = (
    "events_delivered",
    "duplicates",
    "lost",
    "crashes",
    "arm_faults",
    "copy_failures",
    "sources_deleted",
    "copies",
    "succeeded",
    "failed",
    "skipped",
    "lost_or_stranded",
    "pruned",
    "notices",
    "publish_failures",
)


def summarise(results: Sequence[ScenarioResult]) -> dict[str, dict[str, int]]:
    """Totals per family, plus "total"."""
    groups: dict[str, list[ScenarioResult]] = defaultdict(list)
    for result in results:
        groups[result.family].append(result)
    groups["total"] = list(results)
    summary: dict[str, dict[str, int]] = {}
    for family in [*FAMILIES, "total"]:
        members = groups.get(family, [])
        if not members:
            continue
        totals = {"scenarios": len(members)}
        totals.update({name: sum(int(getattr(item, name)) for item in members) for name in TOTALS})
        totals["violations"] = sum(len(item.violations) for item in members)
        summary[family] = totals
    return summary


def _table(summary: dict[str, dict[str, int]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    columns = (
        ("family", "family"),
        ("scenarios", "scenarios"),
        ("events delivered", "events_delivered"),
        ("duplicates", "duplicates"),
        ("lost", "lost"),
        ("crashes injected", "crashes"),
        ("ARM faults injected", "arm_faults"),
        ("copies failed by ARM", "copy_failures"),
        ("sources deleted", "sources_deleted"),
        ("copies", "copies"),
        ("copies pruned", "pruned"),
        ("publishes failed", "publish_failures"),
        ("notices", "notices"),
        ("lost or stranded", "lost_or_stranded"),
        ("violations", "violations"),
    )
    for label, _ in columns:
        if label == "family":
            table.add_column(label, no_wrap=True, min_width=14)
        else:
            table.add_column(label, justify="right")
    for family, totals in summary.items():
        cells = [family] + [str(totals[key]) for _, key in columns[1:]]
        if totals["violations"]:
            cells[-1] = f"[red]{cells[-1]}[/red]"
        table.add_row(*cells, style="bold" if family == "total" else None)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds to run (from --first-seed)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, action="append", help="run only this seed (repeatable)")
    parser.add_argument("--family", choices=FAMILIES, help="run every seed in this family")
    parser.add_argument("--quick", action="store_true", help="smaller fleets (2-4 disks x 2-3 snapshots)")
    parser.add_argument(
        "--json",
        help=f"where to write the figures ('' for nowhere; default {LATEST_JSON.relative_to(ROOT)} for a whole matrix)",
    )
    parser.add_argument("--log", help="write snapcopy's log (INFO) to this file")
    parser.add_argument("--verbose", action="store_true", help="one line per scenario")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(width=None if sys.stdout.isatty() else 180)
    seeds = args.seed or list(range(args.first_seed, args.first_seed + args.seeds))
    results: list[ScenarioResult] = []
    began = time.monotonic()
    with local_backend() as backend:
        _quiet_logs(args.log)  # after uvicorn configured its logging (which closes existing handlers)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("chaos", total=len(seeds))
            for seed in seeds:
                scenario = Scenario.generate(seed, quick=args.quick, family=args.family)
                progress.update(task, description=f"seed {seed} ({scenario.family})")
                result = run_scenario(scenario, backend)
                results.append(result)
                if args.verbose or result.violations:
                    mark = "[red]✗[/red]" if result.violations else "[green]✓[/green]"
                    progress.console.print(
                        f"{mark} {scenario.describe()}: {result.copies} copies, {result.crashes} crashes, "
                        f"{result.arm_faults} ARM faults, {result.elapsed:.1f} s"
                    )
                    for violation in result.violations:
                        progress.console.print(f"    [red]{violation}[/red]")
                progress.advance(task)
    elapsed = time.monotonic() - began
    summary = summarise(results)
    console.print(_table(summary, f"snapcopy under faults: {len(seeds)} seeds{' (quick)' if args.quick else ''}"))
    console.print(f"elapsed {elapsed:.0f} s on {os.cpu_count()} CPU(s)")
    target = args.json if args.json is not None else ("" if args.seed or args.family else str(LATEST_JSON))
    if target:
        _write_json(Path(target), results, summary, elapsed, quick=args.quick)
        console.print(f"figures written to {target}")
    failing = [result for result in results if result.violations]
    if failing:
        console.print(f"[red]✗ {len(failing)} scenario(s) broke an invariant: seeds {[r.seed for r in failing]}[/red]")
        return 1
    console.print("[green]✓ no invariant broken[/green]")
    return 0


def _quiet_logs(path: str | None) -> None:
    """snapcopy logs every injected failure; keep the console for the table."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler = logging.NullHandler()
    if path:
        handler = logging.FileHandler(path, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
        root.setLevel(logging.INFO)
        logging.getLogger("azure").setLevel(logging.WARNING)
    root.addHandler(handler)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).propagate = False
        logging.getLogger(name).handlers = [logging.NullHandler()]


def _write_json(
    path: Path, results: Sequence[ScenarioResult], summary: dict[str, dict[str, int]], elapsed: float, *, quick: bool
) -> None:
    scenarios = []
    for result in results:
        item = {key: value for key, value in asdict(result).items() if key != "violations"}
        item.update(elapsed=round(result.elapsed, 2), violations=len(result.violations))
        scenarios.append(item)
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m local.chaos" + (" --quick" if quick else "") + f" --seeds {len(results)}",
        "seeds": [result.seed for result in results],
        "quick": quick,
        "elapsed_seconds": round(elapsed, 1),
        "cpus": os.cpu_count(),
        "families": {name: total for name, total in summary.items() if name != "total"},
        "total": summary.get("total", {}),
        "violations": [
            {"seed": result.seed, "family": result.family, "violations": result.violations}
            for result in results
            if result.violations
        ],
        "scenarios": scenarios,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dumps(document))


def _dumps(document: dict[str, Any]) -> str:
    """JSON with one line per family, per violation and per scenario (small, readable diffs)."""
    parts = []
    for key, value in document.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            rows = ",\n".join(f"    {json.dumps(item)}" for item in value)
            parts.append(f"  {json.dumps(key)}: [\n{rows}\n  ]")
        elif isinstance(value, dict) and value and all(isinstance(item, dict) for item in value.values()):
            rows = ",\n".join(f"    {json.dumps(name)}: {json.dumps(item)}" for name, item in value.items())
            parts.append(f"  {json.dumps(key)}: {{\n{rows}\n  }}")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


if __name__ == "__main__":
    sys.exit(main())
