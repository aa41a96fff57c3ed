"""An event that keeps failing is counted and given up on at the threshold (no I/O)."""

from __future__ import annotations

from datetime import timedelta

from azure.data.tables import TableEntity

from shared.poison import failed_again
from shared.tables.codec import failure_entity, failure_from
from shared.tables.keys import poison_key
from tests.builders import T0


def test_an_event_is_poisoned_on_the_failure_that_reaches_the_threshold():
    failure = None
    seen = []
    for minute in range(3):
        failure = failed_again(
            failure, "evt-1", "/subscriptions/x", f"boom {minute}", T0 + timedelta(minutes=minute), poisoned_at=3
        )
        seen.append((failure.attempts, failure.poisoned))
    assert seen == [(1, False), (2, False), (3, True)]
    assert failure is not None
    assert failure.first_failed_at == T0 and failure.last_failed_at == T0 + timedelta(minutes=2)
    assert failure.last_error == "boom 2"


def test_a_threshold_of_one_poisons_the_first_failure():
    assert failed_again(None, "evt", "s", "e", T0, poisoned_at=1).poisoned


def test_a_poison_row_round_trips_and_an_unsafe_event_id_becomes_a_hashed_key():
    failure = failed_again(None, "id with/slash?#", "subject", "x" * 5000, T0, poisoned_at=5)
    entity = failure_entity(failure)
    assert entity["RowKey"] == poison_key("id with/slash?#") and len(entity["RowKey"]) == 64
    assert len(entity["LastError"]) == 1000
    row = TableEntity(**entity)
    row._metadata = {"etag": 'W/"1"', "timestamp": T0}  # as the SDK hands a read row back
    back = failure_from("id with/slash?#", row)
    assert back.attempts == 1 and back.first_failed_at == T0 and not back.poisoned and back.etag == 'W/"1"'
    assert poison_key("plain-id.1") == "plain-id.1"
