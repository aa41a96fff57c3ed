"""Replication state in Azure Table Storage: one repository per kind of partition, one store.

`StateStore` is what the engine holds: the chain rows (`tables/chains.py`), the region
slots (`tables/slots.py`) and the seen-index with the poison rows (`tables/index.py`),
over one Table (`tables/gateway.py`). The key schema is `tables/keys.py` and the row ↔
model mapping `tables/codec.py`: nothing outside `shared/tables/` sees a PartitionKey.

It must not decide: the engine reads, the core decides, the store writes what was decided.
"""

from __future__ import annotations

from shared.model import IndexEntry
from shared.tables.chains import ChainRows
from shared.tables.codec import MissingETag, chain_entity, head_entity, index_entity, job_entity
from shared.tables.gateway import (
    CONFLICT_PAUSE,
    CONFLICT_PAUSE_MAX,
    CapacityExhausted,
    Conflict,
    retrying,
)
from shared.tables.grants import GrantRows
from shared.tables.increments import IncrementRows
from shared.tables.index import IndexRows
from shared.tables.keys import WAIT_PREFIX
from shared.tables.slots import SlotRows

__all__ = [
    "CONFLICT_PAUSE",
    "CONFLICT_PAUSE_MAX",
    "WAIT_PREFIX",
    "CapacityExhausted",
    "Conflict",
    "IndexEntry",
    "MissingETag",
    "StateStore",
    "chain_entity",
    "head_entity",
    "index_entity",
    "job_entity",
    "retrying",
]


class StateStore(ChainRows, SlotRows, IndexRows, IncrementRows, GrantRows):
    """The repository over one Table; created once per process and shared."""
