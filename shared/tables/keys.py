"""The table's key schema: which partition and row each kind of state lives in.

One table; its partitions (README, "How state is kept"):

| PartitionKey                 | RowKey              | holds                                          |
|------------------------------|---------------------|------------------------------------------------|
| `chain|<family>|<region>`    | `head`              | order watermark, what is copying, last done    |
|                              | `job|<time>|<name>` | one source snapshot's copy, sorted by creation |
|                              | `inc|<job key>`     | a diff chain's increment in flight (its plan)  |
|                              | `chunk|<job key>|<generation>|<index>` | a chunk of it done  |
| `region|<sub>|<region>`      | `counter`           | copies in flight (Azure's cap counts these)    |
|                              | `flight|<family>`   | the one copy of that family in flight          |
|                              | `wait|<family>`     | a chain with queued work waiting for a slot    |
| `regions`                    | `<sub>|<region>`    | the region partitions the timer visits         |
| `chains`                     | `<family>|<region>` | every chain, with its disk (status, filters)   |
| `poison`                     | `<event id>`        | an event that failed, and how often            |
| `chain|…`, `region|…`        | `outbox|<id>`       | a notice recorded with its transition, unsent  |
| `outbox`                     | `<partition>`       | a partition whose outbox a publish left behind |
| `grant|<family>`             | `<snapshot id>` (`/` as `:`) | read access to a snapshot and its holders |
| `snap|<sub>:<rg>`            | `<name>`            | snapshots already handled (dedupes events)     |

Keys hold none of `/ \\ # ?`. Only `shared/tables/` knows them.

It must not touch the SDK: it names keys only.
"""

from __future__ import annotations

import hashlib
import re

from shared.ids import ResourceId

HEAD = "head"
COUNTER = "counter"
JOB_PREFIX = "job|"
FLIGHT_PREFIX = "flight|"
WAIT_PREFIX = "wait|"
DIRECTORY = "regions"
POISON = "poison"
CHAINS = "chains"
GRANT_LOW, GRANT_HIGH = "grant|", "grant}"
INCREMENT_PREFIX = "inc|"
CHUNK_PREFIX = "chunk|"
OUTBOX = "outbox"
OUTBOX_PREFIX = "outbox|"
OUTBOX_LOW, OUTBOX_HIGH = "outbox|", "outbox}"
CHAIN_LOW, CHAIN_HIGH = "chain|", "chain}"  # every chain partition, and nothing else
SAFE_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def grant_partition(family_id: str) -> str:
    return f"grant|{family_id.lower()}"


def grant_key(snapshot_key: str) -> str:
    """A snapshot id as a RowKey: ARM names hold no `:`, so `/` becomes `:` and back."""
    return snapshot_key.lower().replace("/", ":")


def chunk_key(job_key: str, generation: int, index: int) -> str:
    """A done chunk's RowKey: sorted by job, plan generation and index."""
    return f"{CHUNK_PREFIX}{job_key}|{generation:06d}|{index:06d}"


def poison_key(event_id: str) -> str:
    """An event id as a RowKey: as delivered when it is safe, else its SHA-256."""
    return event_id if SAFE_KEY_RE.fullmatch(event_id) else hashlib.sha256(event_id.encode()).hexdigest()


def index_partition(snapshot_id: ResourceId) -> str:
    return f"snap|{snapshot_id.resource_group_key}"
