"""`/_admin/...`: what tests, the demo and benchmarks use to steer and observe the emulator.

No auth, no api-version; JSON in and out. Errors use the ARM error shape too.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from .arm_api import WorldDep
from .clock import VirtualClock, arm_time
from .errors import ArmError
from .faults import Fault
from .gateway import ADMIN_PREFIX

router = APIRouter(prefix=ADMIN_PREFIX)


class ClockAdvance(BaseModel):
    advance_seconds: float = Field(ge=0)


class CopyFailure(BaseModel):
    target_id: str
    error_code: str = "CopyFailed"
    error_message: str = "The copy failed (injected by the emulator)."


class ConfigChange(BaseModel):
    cap: int | None = Field(default=None, ge=0)
    copy_bytes_per_second: float | None = Field(default=None, gt=0)
    min_copy_seconds: float | None = Field(default=None, ge=0)
    page_size: int | None = Field(default=None, ge=1)
    page_ranges_per_answer: int | None = Field(default=None, ge=1)
    list_lag_seconds: float | None = Field(default=None, ge=0)
    source_copy_seconds_factor: float | None = Field(default=None, ge=0)
    enhanced_copy_factor: float | None = Field(default=None, ge=1)


@router.get("/clock")
async def get_clock(world: WorldDep) -> dict[str, Any]:
    return {"now": arm_time(world.clock.now()), "virtual": world.clock.virtual}


@router.post("/clock")
async def advance_clock(change: ClockAdvance, world: WorldDep) -> dict[str, Any]:
    clock = world.clock
    if not isinstance(clock, VirtualClock):
        message = "The emulator runs on the real clock; start it with --virtual-clock to move time."
        raise ArmError(409, "ClockNotVirtual", message)
    return {"now": arm_time(clock.advance(change.advance_seconds)), "virtual": True}


@router.get("/events")
async def get_events(world: WorldDep, drain: bool = False) -> list[dict[str, Any]]:
    return world.events(drain=drain)


@router.get("/faults")
async def get_faults(world: WorldDep) -> list[dict[str, Any]]:
    return world.faults()


@router.post("/faults", status_code=201)
async def add_fault(fault: Fault, world: WorldDep) -> list[dict[str, Any]]:
    world.add_fault(fault)
    return world.faults()


@router.delete("/faults")
async def clear_faults(world: WorldDep) -> list[dict[str, Any]]:
    world.clear_faults()
    return world.faults()


@router.get("/copies")
async def get_copies(world: WorldDep) -> list[dict[str, Any]]:
    return world.copies()


@router.post("/copies/fail")
async def fail_copy(failure: CopyFailure, world: WorldDep) -> dict[str, Any]:
    return world.fail_copy(failure.target_id, failure.error_code, failure.error_message)


@router.get("/counters")
async def get_counters(world: WorldDep) -> dict[str, Any]:
    return world.counters()


@router.get("/config")
async def get_config(world: WorldDep) -> dict[str, Any]:
    return asdict(world.config)


@router.post("/config")
async def change_config(change: ConfigChange, world: WorldDep) -> dict[str, Any]:
    return asdict(world.configure(**change.model_dump(exclude_none=True)))


@router.post("/reset")
async def reset(world: WorldDep) -> dict[str, Any]:
    world.reset()
    return {"reset": True}


class DiskWrite(BaseModel):
    """What a VM writes to a disk (the diff method's source data): `seed`'s pattern, or
    zeros when trimmed (`seed` None), over whole 512-byte pages."""

    disk_id: str
    start: int = Field(ge=0)
    length: int = Field(gt=0)
    seed: int | None = Field(default=None, ge=0)


@router.post("/disks/write")
async def write_disk(write: DiskWrite, world: WorldDep) -> dict[str, Any]:
    if write.seed is None:
        world.clear_disk(write.disk_id, write.start, write.length)
    else:
        world.write_disk(write.disk_id, write.start, write.length, write.seed)
    return {"written": write.length}


@router.get("/access")
async def get_access(world: WorldDep) -> dict[str, Any]:
    """Read access: the counters (a refusal means the five-SAS limit was reached) and the
    snapshots whose SAS is live now."""
    return {**world.access_counters(), "open": world.open_grants()}
