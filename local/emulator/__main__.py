"""`python -m local.emulator`: run the emulator until SIGTERM/SIGINT.

Prints one JSON line `{"url": ..., "ca_path": ...}` on stdout once it accepts requests,
so a parent process (demo runner, scripts) can wait for that line and connect.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .clock import RealClock, VirtualClock
from .config import EmulatorConfig
from .server import EmulatorServer
from .world import World


def _parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--state-dir", help="keep the TLS CA here and reuse it across runs")
    parser.add_argument("--virtual-clock", action="store_true", help="time moves only through POST /_admin/clock")
    parser.add_argument("--cap", type=int, default=defaults.cap, help="copies in flight per subscription per region")
    parser.add_argument("--copy-bytes-per-second", type=float, default=defaults.copy_bytes_per_second)
    parser.add_argument("--min-copy-seconds", type=float, default=defaults.min_copy_seconds)
    parser.add_argument("--page-size", type=int, default=defaults.page_size)
    parser.add_argument(
        "--list-lag-seconds",
        type=float,
        default=defaults.list_lag_seconds,
        help="LISTs show the collection as it was this long ago (GETs never lag)",
    )
    parser.add_argument(
        "--source-copy-seconds-factor",
        type=float,
        default=defaults.source_copy_seconds_factor,
        help="background copy of a Premium SSD v2 / Ultra snapshot, as a multiple of a CopyStart's duration",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = EmulatorConfig(
            cap=args.cap,
            copy_bytes_per_second=args.copy_bytes_per_second,
            min_copy_seconds=args.min_copy_seconds,
            page_size=args.page_size,
            list_lag_seconds=args.list_lag_seconds,
            source_copy_seconds_factor=args.source_copy_seconds_factor,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    world = World(VirtualClock() if args.virtual_clock else RealClock(), config)
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with EmulatorServer(world, host=args.host, port=args.port, state_dir=args.state_dir) as server:
        print(json.dumps({"url": server.url, "ca_path": str(server.ca_path)}), flush=True)
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
