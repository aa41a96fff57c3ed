"""Read access to snapshots for the diff method, shared through grant rows (shared/grants.py
decides; this asks ARM and writes the rows): acquire joins a live grant or claims the
row and asks ARM; release lets go, and the last holder claims the row, revokes and
deletes it; the sweep revokes what nobody holds.

It must not read or write a blob: the increments do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from shared.engine.parts import Part
from shared.grants import (
    GRANT_SECONDS,
    Grant,
    Need,
    Refusal,
    claim,
    idle,
    joined,
    left,
    need,
    over_budget,
    refused_read,
)
from shared.ids import ResourceId
from shared.store import Conflict

log = logging.getLogger("snapcopy")

ATTEMPTS = 5  # races lost on a grant row before giving up for this run


class Access(Part):
    """Acquire, release and sweep snapshot grants."""

    def acquire(self, snapshot_id: ResourceId, family_id: str, holder: str) -> Grant | None:
        """The snapshot's grant (its SAS URL and until when), held by `holder` until it
        releases it; None when it must wait (the family holds its budget, or another run is
        asking ARM)."""
        key = str(snapshot_id).lower()
        for _ in range(ATTEMPTS):
            now = self.clock()
            existing = self.store.load_grant(family_id, key)
            step = need(existing, self.store.family_grants(family_id), now)
            if step is Need.WAIT:
                return None
            try:
                if step is Need.JOIN and existing is not None:
                    if holder not in existing.holders:
                        existing = self.store.save_grant(joined(existing, holder))
                    return existing
                holders = joined(existing, holder).holders if existing is not None else (holder,)
                claimed = self.store.save_grant(claim(existing, key, family_id, holders, now))
            except Conflict:
                continue  # another run changed the row: read it again
            if existing is None and over_budget(self.store.family_grants(family_id)):
                with contextlib.suppress(Conflict):  # another run claimed too: this new one backs off
                    self.store.delete_grant(claimed)
                return None
            sas = self.arm.grant_read(snapshot_id, GRANT_SECONDS)  # a failure leaves the claim to run out
            try:
                granted = replace(claimed, sas=sas, expires=now + timedelta(seconds=GRANT_SECONDS))
                return self.store.save_grant(granted)
            except Conflict:
                continue  # the claim ran out and another run took over: its grant is the snapshot's now
        log.info("read access to %s: the grant row kept changing; the next run asks again", snapshot_id)
        return None

    def release(self, snapshot_id: ResourceId, family_id: str, holder: str) -> None:
        """Let go of a snapshot's grant; the last holder revokes it."""
        key = str(snapshot_id).lower()
        for _ in range(ATTEMPTS):
            grant = self.store.load_grant(family_id, key)
            if grant is None:
                return
            rest = left(grant, holder)
            try:
                if rest.holders:
                    if rest != grant:
                        self.store.save_grant(rest)
                    return
                claimed = self.store.save_grant(claim(grant, key, family_id, (), self.clock()))
            except Conflict:
                continue
            self._revoke(snapshot_id, claimed)
            return

    def spend(self, snapshot_id: ResourceId, family_id: str, sas: str, now: datetime) -> bool:
        """A chunk could not read with `sas` ("": it found no live SAS to read with). True
        when the snapshot's access is spent (gone, run out, or `sas` refused while it is
        still the grant's: then it is marked run out, so the next acquire asks ARM again);
        False when it is being renewed or was renewed since (the chunk is tried again)."""
        grant = self.store.load_grant(family_id, str(snapshot_id).lower())
        refusal = refused_read(grant, sas, now)
        if refusal is not Refusal.SPENT or grant is None:
            return refusal is Refusal.GONE
        try:
            self.store.save_grant(replace(grant, expires=now))
        except Conflict:
            return False  # changed meanwhile (renewed, or let go): try again
        return True

    def sweep(self, alive: Callable[[str], bool] = lambda holder: True) -> int:
        """Let go for the holders that are not `alive` (increments that ended without letting
        go: a run died), then revoke and forget the grants nobody holds or that ran out; how
        many were revoked."""
        grants = self.store.all_grants()
        for grant in grants:
            dead = [name for name in grant.holders if not alive(name)]
            if dead:
                log.warning("sweep: %s held read access to %s after they ended", ", ".join(dead), grant.snapshot_key)
                with contextlib.suppress(Conflict):  # changed meanwhile: the next sweep looks again
                    self.store.save_grant(replace(grant, holders=tuple(h for h in grant.holders if h not in dead)))
        if any(not alive(name) for grant in grants for name in grant.holders):
            grants = self.store.all_grants()
        done = 0
        for grant in idle(grants, self.clock()):
            try:
                claimed = self.store.save_grant(claim(grant, grant.snapshot_key, grant.family_id, (), self.clock()))
            except Conflict:
                continue  # someone joined or claimed it meanwhile
            self._revoke(ResourceId.parse(grant.snapshot_key, kind="snapshots"), claimed)
            done += 1
        if done:
            log.warning("sweep: revoked read access to %d snapshot(s) nobody held", done)
        return done

    def _revoke(self, snapshot_id: ResourceId, claimed: Grant) -> None:
        """Revoke (right after claiming: a claim runs out only after CLAIM) and forget."""
        self.arm.revoke_read(snapshot_id)
        with contextlib.suppress(Conflict):  # the claim ran out and another run took the row over
            self.store.delete_grant(claimed)
