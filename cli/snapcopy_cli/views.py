"""How the command line shows copies and chains: rich tables, one row a copy or chain."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

STATE_STYLES = {"succeeded": "green", "failed": "red", "cancelled": "red", "skipped": "yellow", "copying": "cyan"}


def _short(copy_id: str, wide: bool) -> str:
    """A copy id is long and opaque; its head and tail are enough to tell rows apart."""
    return copy_id if wide or len(copy_id) <= 20 else f"{copy_id[:6]}…{copy_id[-10:]}"


def name_of(resource_id: str | None) -> str:
    return resource_id.rsplit("/", 1)[-1] if resource_id else "-"


def state_text(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def _why(copy: Mapping[str, Any]) -> str:
    error = copy.get("error")
    if error:
        return f"[red]{escape(str(error.get('code')))}[/red]: {escape(str(error.get('message')))}"
    return escape(str(copy.get("reason") or ""))


def _rpo(chain: Mapping[str, Any]) -> str:
    """The chain's RPO (older APIs: the last copy's age), red when over the alert threshold."""
    seconds = chain.get("rpoSeconds", chain.get("lastCompletedAgeSeconds"))
    text = _age(seconds)
    return f"[red]{text}[/red]" if chain.get("rpoBreached") else text


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, hours, minutes = whole // 86400, whole // 3600 % 24, whole // 60 % 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {whole % 60}s" if minutes else f"{whole}s"


def copies_table(copies: Iterable[Mapping[str, Any]], *, title: str | None = None, wide: bool = False) -> Table:
    rows = list(copies)
    table = Table(title=title)
    # Ids, regions and states are never cut short; names fold and the reason wraps instead.
    table.add_column("copy id", overflow="fold", no_wrap=not wide)
    table.add_column("source snapshot", overflow="fold")
    table.add_column("region", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("%", justify="right", no_wrap=True)
    table.add_column("reason / error", overflow="fold", min_width=10)
    for copy in rows:
        table.add_row(
            _short(copy["copyId"], wide),
            escape(name_of(copy.get("sourceSnapshotId"))),
            copy.get("targetRegion", "-"),
            state_text(copy.get("state", "?")),
            f"{float(copy.get('percent') or 0):.0f}",
            _why(copy),
        )
    if any("created" in copy for copy in rows):
        created = sum(1 for copy in rows if copy.get("created"))
        table.caption = f"{created} new, {len(rows) - created} already requested"
    return table


def copy_detail(copy: Mapping[str, Any]) -> Table:
    """One copy, every field, full ids (what `retry` and `cancel` need)."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    error = copy.get("error")
    fields = [
        ("copy id", copy.get("copyId")),
        ("state", state_text(copy.get("state", "?"))),
        ("percent", f"{float(copy.get('percent') or 0):.1f}"),
        ("source", copy.get("sourceSnapshotId")),
        ("target", copy.get("targetSnapshotId")),
        ("region", copy.get("targetRegion")),
        ("attempts", copy.get("attempts")),
        ("queued", copy.get("queuedAt")),
        ("started", copy.get("startedAt")),
        ("finished", copy.get("finishedAt")),
        ("error", _why({"error": error}) if error else None),
        ("reason", escape(str(copy["reason"])) if copy.get("reason") else None),
    ]
    for label, value in fields:
        table.add_row(label, "-" if value is None else str(value))
    return table


def chains_table(chains: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="chains (source disk × target region)")
    for column in ("source disk", "region", "copying", "queued", "last completed", "RPO"):
        right = column in ("queued", "RPO")
        table.add_column(column, justify="right" if right else "left", overflow="fold", no_wrap=right)
    for chain in chains:
        copying = chain.get("copying")
        now = (
            f"{escape(name_of(copying['sourceSnapshotId']))} {float(copying['percent'] or 0):.0f}%" if copying else "-"
        )
        table.add_row(
            escape(name_of(chain.get("sourceDiskId")) if chain.get("sourceDiskId") else str(chain.get("familyId"))),
            chain.get("targetRegion", "-"),
            now,
            str(chain.get("queued", 0)),
            escape(name_of(chain.get("lastCompletedSnapshotId"))),
            _rpo(chain),
        )
    return table


def policies_table(policies: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(title="replication policies (the first that selects a snapshot wins a region)")
    for column in ("policy", "sources", "region", "resource group", "name template", "tags"):
        table.add_column(column, overflow="fold")
    for policy in policies:
        sources = policy.get("sources") or {}
        selected = [*sources.get("scopes", []), *(f"{k}={v}" for k, v in (sources.get("tags") or {}).items())]
        for target in policy.get("targets", []):
            table.add_row(
                escape(str(policy.get("name"))) + (" (implicit)" if policy.get("implicit") else ""),
                escape(", ".join(selected) or "everything in scope"),
                target.get("region", "-"),
                escape(str(target.get("resourceGroup") or "the source's")),
                escape(str(policy.get("nameTemplate"))),
                ("source's + " if policy.get("copyTags") else "")
                + escape(", ".join(f"{k}={v}" for k, v in (policy.get("tags") or {}).items()) or "ours"),
            )
    return table


def evaluation_table(evaluation: Mapping[str, Any]) -> Table:
    name = name_of(evaluation.get("sourceSnapshotId"))
    table = Table(title=f"{escape(name)}: " + ("copied" if evaluation.get("copied") else "not copied"))
    for column in ("policy", "region", "verdict"):
        table.add_column(column, overflow="fold")
    for copy in evaluation.get("copies", []):
        table.add_row(
            escape(copy["policy"]), copy["targetRegion"], "copy as " + escape(name_of(copy["targetSnapshotId"]))
        )
    for passed in evaluation.get("passed", []):
        table.add_row(escape(passed["policy"]), passed.get("targetRegion") or "-", escape(passed["reason"]))
    if evaluation.get("reason"):
        table.add_row("-", "-", escape(str(evaluation["reason"])))
    return table


# --- commands -----------------------------------------------------------------------------
