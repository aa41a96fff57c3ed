"""Runs the emulator as a real local HTTPS server (uvicorn in a background thread).

The unmodified Azure SDK needs HTTPS (bearer tokens are refused over HTTP), so the server
gets a certificate from a throw-away local CA (trustme) whose PEM clients pass as
`connection_verify`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
import uvicorn

from .app import create_app
from .world import World

_START_TIMEOUT_SECONDS = 10.0
_STOP_TIMEOUT_SECONDS = 10.0


class EmulatorServer:
    """The emulator on `https://{host}:{port}`; use as a context manager or `start()`/`stop()`.

    `port=0` picks a free port. With `state_dir`, the CA (`ca.pem`, `ca-key.pem`) is kept
    there and reused by later runs, so clients that trust it keep trusting it; without,
    TLS files live in a temporary directory removed on `stop()`.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | os.PathLike[str] | None = None,
        app: Any = None,
    ) -> None:
        """`app`: another ASGI app to serve the same way (the local Event Grid topic)."""
        self.world = world or World()
        self._app = app
        self.host = host
        self._requested_port = port
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._ca_path: Path | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("EmulatorServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for `ComputeManagementClient(base_url=...)`, e.g. `https://127.0.0.1:50123`."""
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        """PEM of the CA that signed the server certificate (`connection_verify=`)."""
        if self._ca_path is None:
            raise RuntimeError("EmulatorServer is not started")
        return self._ca_path

    def start(self) -> EmulatorServer:
        if self._server is not None:
            raise RuntimeError("EmulatorServer is already started")
        directory = self._tls_directory()
        ca = _load_or_create_ca(directory, persistent=self._state_dir is not None)
        cert_path = directory / "server.pem"
        ca.issue_cert("localhost", "127.0.0.1", self.host).private_key_and_cert_chain_pem.write_to_path(str(cert_path))
        os.chmod(cert_path, 0o600)
        self._ca_path = directory / "ca.pem"

        # proto=IPPROTO_TCP matters: asyncio disables Nagle only on sockets that say they are TCP;
        # without it every response (headers, then body) waits ~40 ms for a delayed ACK.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._requested_port))
        self._port = listener.getsockname()[1]

        config = uvicorn.Config(
            self._app if self._app is not None else create_app(self.world),
            ssl_certfile=str(cert_path),
            # httptools (C parser): ~0.2 ms less CPU per request than h11, measured side by side;
            # its request cycle keeps `.transport` too, which the connection-drop fault needs
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="arm-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the ARM emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and remove temporary TLS files; safe to call twice.

        Open client connections are aborted first: a graceful TLS close would wait for every
        idle keep-alive client to answer, and leave sockets behind if it did not.
        """
        server, thread = self._server, self._thread
        if server is not None:
            if server.started:
                with contextlib.suppress(RuntimeError):  # the loop may already be closed
                    server.servers[0].get_loop().call_soon_threadsafe(_abort_connections, server)
            server.should_exit = True
        if thread is not None:
            thread.join(_STOP_TIMEOUT_SECONDS)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(_STOP_TIMEOUT_SECONDS)
        self._server = self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _tls_directory(self) -> Path:
        if self._state_dir is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            return self._state_dir
        self._tempdir = tempfile.TemporaryDirectory(prefix="snapcopy-emulator-")
        return Path(self._tempdir.name)


def _abort_connections(server: uvicorn.Server) -> None:
    """Runs in the server's loop: drop every client connection at once."""
    for connection in list(server.server_state.connections):
        transport = getattr(connection, "transport", None)
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()


def _load_or_create_ca(directory: Path, *, persistent: bool) -> trustme.CA:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if persistent and cert_path.exists() and key_path.exists():
        return trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    ca = trustme.CA(organization_name="snapcopy ARM emulator (dev only)")
    ca.cert_pem.write_to_path(str(cert_path))
    if persistent:
        ca.private_key_pem.write_to_path(str(key_path))
        os.chmod(key_path, 0o600)
    return ca
