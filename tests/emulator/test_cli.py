"""`python -m local.emulator`: one JSON line when ready, a clean exit on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Http

pytestmark = pytest.mark.emulator

REPO = Path(__file__).resolve().parents[2]


def test_cli_prints_where_it_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "local.emulator",
        "--virtual-clock",
        "--cap",
        "7",
        "--list-lag-seconds",
        "5",
        "--source-copy-seconds-factor",
        "0.5",
        "--state-dir",
        str(tmp_path),
    ]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline())
            http = Http(ready["url"], Path(ready["ca_path"]))
            clock = http.admin("GET", "clock")
            config = http.admin("GET", "config")
        finally:
            process.send_signal(signal.SIGTERM)
            exit_code = process.wait(timeout=15)

    assert ready["url"].startswith("https://127.0.0.1:")
    assert ready["ca_path"] == str(tmp_path / "ca.pem")
    assert (tmp_path / "ca-key.pem").exists()  # kept, so the next run reuses the same CA
    assert clock["virtual"] is True
    assert (config["cap"], config["list_lag_seconds"], config["source_copy_seconds_factor"]) == (7, 5.0, 0.5)
    assert exit_code == 0
