"""No log record of a full run carries a token, a key or a connection string: every
record of every logger (the Azure SDKs' at DEBUG too, which log requests and headers) is
searched for the secrets the run used."""

from __future__ import annotations

import logging
import re

import pytest

from local.emulator.credential import EmulatorCredential
from local.topic import TopicServer
from tests.conftest import Deployment, with_topic
from tests.test_api_requests import call
from tests.test_functions import copies, disk_with_snapshots, run_until_done, snapshot_events

pytestmark = [pytest.mark.azurite, pytest.mark.emulator]

TOKEN = "snapcopy-log-secrets-token-9f3b2c"  # the bearer token the run's identity gets


@pytest.fixture
def app_settings(app_settings: dict[str, str], topic_server: TopicServer) -> dict[str, str]:
    return with_topic(app_settings, topic_server)


class Everything(logging.Handler):
    """Keeps every record's formatted message, its arguments and its extra fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.name} {record.getMessage()} {record.__dict__!r}")


def secrets_of(connection_string: str) -> list[str]:
    key = re.search(r"AccountKey=([^;]+)", connection_string)
    assert key is not None
    return [TOKEN, key.group(1), connection_string, "Bearer " + TOKEN]


def test_a_full_run_logs_no_token_key_or_connection_string(
    deployment: Deployment, topic_server: TopicServer, storage_connection_string: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(EmulatorCredential, "get_token", lambda self, *a, **k: _token())
    handler = Everything()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        disk_with_snapshots(deployment, "vm0-data0", 2)
        deployment.deliver(snapshot_events(deployment))
        target = copies(deployment)[0]["target_id"]
        deployment.world.fail_copy(target, "CopySourceUnavailable", "the source went away")
        topic_server.topic.fail_next(2)
        run_until_done(deployment)
        deployment.replicator.sweep()
        call(deployment, "list_chains", "GET")
        call(deployment, "get_status", "GET")
        call(deployment, "request_copies", "POST", body={"sourceSnapshotId": "not an id"})
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert len(handler.texts) > 200  # the SDKs' request logs included
    assert topic_server.topic.events()  # it published, with the token
    assert any("Authorization" in text for text in handler.texts)  # headers were logged, redacted
    for secret in secrets_of(storage_connection_string):
        leaked = [text[:200] for text in handler.texts if secret in text]
        assert leaked == [], f"a log record holds a secret: {leaked[:3]}"


def _token() -> object:
    from datetime import UTC, datetime

    from azure.core.credentials import AccessToken

    return AccessToken(TOKEN, int(datetime.now(UTC).timestamp()) + 3600)
