"""The replication triggers: the Event Grid subscription, the polling timer, the sweep timer,
the retention timer, and the diff method's chunk queue and its poison queue.

Thin on purpose: each trigger hands its input to the shell (shared/service.py), logs the
outcome, and ends the invocation failed when part of the work failed (after doing the
rest), so the platform counts it.

It must not touch the store or ARM, nor decide: the engine does.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import runtime
from shared.chunk_messages import QUEUE_NAME

log = logging.getLogger("snapcopy")

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]


@blueprint.function_name("on_snapshot_written")
@blueprint.event_grid_trigger(arg_name="event")
def on_snapshot_written(event: func.EventGridEvent) -> None:
    """A resource write in the subscription: record the snapshot and start what may start.

    Errors that may pass (ARM throttling after retries, storage outages) are raised so
    Event Grid redelivers; a malformed event is logged and dropped.
    """
    outcome = runtime.replicator().handle_event(event)
    log.info("event %s (%s): %s", event.id, event.subject, outcome)


class RunFailed(Exception):
    """A timer run finished what it could, but part of its work failed: the invocation ends
    failed so the Functions failure count (and any alert on it) sees it."""


def _finish(name: str, errors: list[str]) -> None:
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        log.error("%s finished with %d error(s): %s", name, len(errors), shown)
        raise RunFailed(f"{name}: {len(errors)} part(s) failed (the next run retries them): {shown}")


@blueprint.function_name("poll_copies")
@blueprint.timer_trigger(arg_name="timer", schedule=runtime.poll_schedule(), run_on_startup=False, use_monitor=True)
def poll_copies(timer: func.TimerRequest) -> None:
    """Poll copies in flight, finish what finished, release the next snapshots."""
    if timer.past_due:
        log.warning("poll_copies is running late")
    _finish("poll_copies", runtime.replicator().tick().errors)


@blueprint.function_name("sweep_sources")
@blueprint.timer_trigger(arg_name="timer", schedule=runtime.sweep_schedule(), run_on_startup=False, use_monitor=True)
def sweep_sources(timer: func.TimerRequest) -> None:
    """Find snapshots no event reported and repair state that disagrees with ARM."""
    _finish("sweep_sources", runtime.replicator().sweep().errors)


@blueprint.function_name("prune_copies")
@blueprint.timer_trigger(arg_name="timer", schedule=runtime.prune_schedule(), run_on_startup=False, use_monitor=True)
def prune_copies(timer: func.TimerRequest) -> None:
    """Delete completed copies that no policy's `retain` keeps (snapcopy's own copies only)."""
    _finish("prune_copies", runtime.replicator().prune().errors)


@blueprint.function_name("copy_chunk")
@blueprint.queue_trigger(arg_name="message", queue_name=QUEUE_NAME, connection="AzureWebJobsStorage")
def copy_chunk(message: func.QueueMessage) -> None:
    """One chunk of a diff increment: its pages read from the source snapshot and written
    onto the target page blob. An error ends the invocation failed, so the queue delivers
    the chunk again (five times, then to the poison queue)."""
    runtime.replicator().copy_chunk(message.get_body().decode())


@blueprint.function_name("chunk_poisoned")
@blueprint.queue_trigger(arg_name="message", queue_name=f"{QUEUE_NAME}-poison", connection="AzureWebJobsStorage")
def chunk_poisoned(message: func.QueueMessage) -> None:
    """A chunk the queue gave up on: its increment fails with the reason, and the chain's
    next increment re-bases."""
    log.error("chunk %s was delivered %d times and failed each time", message.id, message.dequeue_count or 0)
    runtime.replicator().chunk_poisoned(message.get_body().decode())
