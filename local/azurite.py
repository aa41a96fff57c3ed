"""Start and stop Azurite (the pinned npm package in ./node_modules) on free loopback ports.

Used by the tests (session fixture), the demo and `python -m local.azurite` for a shell.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from shared.runtime import connection_parts

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
# Azurite's published well-known development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Azurite did not listen on port {port} in time")


@dataclass
class Azurite:
    """A running Azurite: blob, queue and table services with in-memory persistence."""

    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, timeout: float = 30.0) -> Azurite:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run `npm ci` (make does it) first")
        azurite = cls(free_port(), free_port(), free_port())
        command = [
            str(AZURITE_BIN),
            "--silent",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--disableTelemetry",  # no usage data sent from tests, CI or benchmarks (and less CPU)
            "--blobHost", "127.0.0.1", "--blobPort", str(azurite.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(azurite.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(azurite.table_port),
        ]  # fmt: skip
        azurite.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        try:
            for port in (azurite.blob_port, azurite.queue_port, azurite.table_port):
                _wait_listening(port, azurite.process, deadline)
        except Exception:
            azurite.stop()
            raise
        return azurite

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="Run Azurite on free ports until interrupted.")
    parser.parse_args()
    with Azurite.start() as azurite:
        print(azurite.connection_string, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


def blob_endpoint(connection_string: str) -> str:
    """Azurite's blob service URL from its connection string (a diff target's blobEndpoint)."""
    return connection_parts(connection_string)["BlobEndpoint"].rstrip("/")


if __name__ == "__main__":
    sys.exit(main())
