"""The local Event Grid topic takes what the unmodified EventGridPublisherClient sends."""

from __future__ import annotations

import pytest
import requests
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient

from local.emulator.credential import EmulatorCredential
from local.topic import TopicServer, problems

pytestmark = pytest.mark.emulator


@pytest.fixture
def server(topic_server: TopicServer) -> TopicServer:
    topic_server.topic.reset()
    return topic_server


def client(server: TopicServer, credential: AzureKeyCredential | None = None) -> EventGridPublisherClient:
    """The unmodified client (it takes the CA to trust per publish, not at construction)."""
    return EventGridPublisherClient(server.endpoint, credential or EmulatorCredential())


def event(n: int) -> CloudEvent[dict[str, int]]:
    return CloudEvent(source="snapcopy", type="Snapcopy.CopyStarted", subject=f"/s/{n}", data={"n": n}, id=f"id-{n}")


def test_published_cloudevents_arrive_as_sent(server: TopicServer):
    with client(server) as publisher:
        publisher.send([event(1), event(2)], connection_verify=str(server.ca_path))
    received = server.topic.events("Snapcopy.CopyStarted")
    assert [(e["id"], e["subject"], e["data"]) for e in received[-2:]] == [
        ("id-1", "/s/1", {"n": 1}),
        ("id-2", "/s/2", {"n": 2}),
    ]
    assert all(e["specversion"] == "1.0" and e["source"] == "snapcopy" for e in received)


def test_the_topic_fails_on_demand_and_recovers(server: TopicServer):
    server.topic.fail_next(1, status=503)
    before = len(server.topic.events())
    with client(server) as publisher:
        with pytest.raises(HttpResponseError) as caught:
            publisher.send([event(3)], retry_total=0, connection_verify=str(server.ca_path))
        assert caught.value.status_code == 503
        publisher.send([event(3)], connection_verify=str(server.ca_path))
    assert len(server.topic.events()) == before + 1


def test_a_key_is_refused_and_a_bad_batch_is_named(server: TopicServer):
    with (
        EventGridPublisherClient(
            server.endpoint, AzureKeyCredential("a-key"), connection_verify=str(server.ca_path)
        ) as keyed,
        pytest.raises(HttpResponseError) as caught,
    ):
        keyed.send([event(4)], connection_verify=str(server.ca_path))
    assert caught.value.status_code == 401
    answer = requests.post(
        server.endpoint,
        json=[{"specversion": "1.0", "source": "s"}],
        headers={"authorization": "Bearer t", "content-type": "application/cloudevents-batch+json"},
        verify=str(server.ca_path),
        timeout=10,
    )
    assert answer.status_code == 400 and "has no id" in answer.json()["error"]["message"]
    assert problems([]) and problems([{"specversion": "0.3", "id": "i", "source": "s", "type": "t"}])
