"""The retention run: delete the completed copies that no policy's `retain` keeps.

Per chain, `shared/retention.py` says which copies its policy lets go; this part deletes
them, each only after a GET shows it is a copy snapcopy made of that very source (our
tag, `createOption: CopyStart`, the source's uniqueId on record), and records on the
job what happened: pruned (when, by which policy), or why not (a lock, an immutability
policy, a snapshot that is not ours) once, never to be asked again. ARM trouble that may
pass leaves the job as it was for the next run.

It must not decide what to keep (retention.py does), nor delete anything it has not just
read and recognised as its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta

from shared.arm import ArmError
from shared.engine.parts import Part
from shared.engine.reports import summary_line
from shared.model import ChainHead, CopyState, Job
from shared.policies import Policy, Retention
from shared.retention import prunable
from shared.scheduler import ours_to_replace

log = logging.getLogger("snapcopy")

PRUNE_BUDGET = timedelta(minutes=5)  # a run leaves the rest for the next one, well inside the timeout


@dataclass
class PruneReport:
    """What one retention run did (logged, and returned for tests and the demo)."""

    chains: int = 0
    pruned: int = 0
    kept: int = 0  # copies retention let go that snapcopy may not delete (recorded on the job)
    deferred: int = 0  # chains left for the next run (time budget)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return summary_line(self)


class Pruner(Part):
    """Runs retention."""

    def prune(self) -> PruneReport:
        report = PruneReport()
        policies = {policy.name: policy for policy in self.settings.policies}
        regions = {target.region for policy in policies.values() for target in policy.targets if target.retain}
        if not regions:
            return report  # no policy prunes: not a read
        deadline = self.clock() + PRUNE_BUDGET
        for head in self.store.list_heads():
            if head.key.region not in regions:
                continue
            if self.clock() >= deadline:
                report.deferred += 1
                continue
            report.chains += 1
            try:
                self._prune_chain(head, policies, report)
            except Exception as error:  # one chain's trouble must not stop the others
                report.errors.append(f"{head.key.partition}: {error}")
                log.exception("prune: %s failed (the next run retries)", head.key.partition)
        log.info("prune: %s", report.summary())
        return report

    def _prune_chain(self, head: ChainHead, policies: dict[str, Policy], report: PruneReport) -> None:
        """Each policy's `retain` over the copies that policy made in this chain (a policy
        that is gone, or keeps everything, deletes nothing)."""
        jobs = self.store.list_jobs(head.key)
        for name in sorted({job.policy for job in jobs if job.state == CopyState.SUCCEEDED}):
            retain = _retention(policies.get(name), head.key.region)
            for job in prunable(jobs, name, retain, self.clock(), copying_key=head.copying_key):
                self._record(self._delete(job, name), report)

    def _record(self, handled: Job, report: PruneReport) -> None:
        self.save_quietly(handled)
        if handled.pruned_at is not None:
            report.pruned += 1
        else:
            report.kept += 1

    def _delete(self, job: Job, policy: str) -> Job:
        """The job after its copy was deleted, or after snapcopy declined to or was refused."""
        target = self.arm.get_snapshot(job.target_id)  # ARM trouble: raised, the next run asks again
        now = self.clock()
        if target is None:
            log.info("prune: %s was already gone", job.target_id)
            return replace(job, pruned_at=now, pruned_by=policy)
        if not ours_to_replace(target, job):
            reason = (
                f"not pruned: {job.target_id.name} is not a copy snapcopy made of {job.source_id.name} "
                "(tag, CopyStart and source uniqueId must all agree); it is left alone"
            )
            log.warning("prune: %s", reason)
            return replace(job, prune_error=reason)
        try:
            self.arm.delete_snapshot(job.target_id)
        except ArmError as error:
            if error.status != 409:  # passing trouble, or a missing role: the run fails, the next asks again
                raise
            # a lock or an immutability policy protects it: recorded once, never asked again
            reason = f"not pruned: ARM refused the delete ({error.code}: {error.message}); not asked again"
            log.warning("prune: %s: %s", job.target_id, reason)
            return replace(job, prune_error=reason)
        log.info("prune: deleted %s (policy %s)", job.target_id, policy)
        return replace(job, pruned_at=now, pruned_by=policy)


def _retention(policy: Policy | None, region: str) -> Retention | None:
    if policy is None:
        return None
    return next((target.retain for target in policy.targets if target.region == region), None)
