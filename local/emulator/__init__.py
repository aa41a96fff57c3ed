"""A strict, local ARM Compute emulator for disks, snapshots and CopyStart copies (dev only).

It serves the ARM REST shape over real HTTPS, so the unmodified azure-mgmt-compute SDK talks
to it through `base_url` and `connection_verify`. It refuses what Azure refuses (api-version
floor, CopyStart only from an incremental snapshot into another region, one copy in flight
per snapshot family per region, copies in creation order, at most `cap` copies in flight
per subscription per region, source deletion fails its copies, a Premium SSD v2 / Ultra
snapshot only once its own background copy is done), emits Event Grid-shaped
write/delete events into a sink, advances copies on a real or virtual clock, injects faults,
and counts requests, so tests and benchmarks can check the app against Azure's rules.

    from local.emulator import EmulatorServer, VirtualClock, World

    with EmulatorServer(World(VirtualClock())) as emulator:
        client = ComputeManagementClient(credential, subscription_id,
                                         base_url=emulator.url, connection_verify=str(emulator.ca_path))

See `local/emulator/README.md` for the rules, admin endpoints and CLI.
"""

from .clock import Clock, RealClock, VirtualClock
from .config import EmulatorConfig
from .errors import ArmError
from .events import RequestInfo
from .faults import Answer, Fault
from .ids import ResourceId
from .server import EmulatorServer
from .world import REFUSALS, World

__all__ = [
    "REFUSALS",
    "Answer",
    "ArmError",
    "Clock",
    "EmulatorConfig",
    "EmulatorServer",
    "Fault",
    "RealClock",
    "RequestInfo",
    "ResourceId",
    "VirtualClock",
    "World",
]
