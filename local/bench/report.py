"""The benchmark's report: targets judged, a rich table, a PNG plot, the docs' figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from local.bench.run import POLL_SECONDS

FIGURES_START = "<!-- figures:start (written by make bench) -->"
FIGURES_END = "<!-- figures:end -->"


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    limit: float
    at_least: bool = False  # the value must reach the limit (else stay within it)
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "limit": round(self.limit, 2),
            "rule": ">=" if self.at_least else "<=",
            "unit": self.unit,
            "met": self.met,
        }


def targets(document: dict[str, Any]) -> list[Target]:
    runs = document["runs"]
    found: list[Target] = []
    for workload in ("W1", "W2"):
        ours, naive = runs.get(f"{workload}/snapcopy"), runs.get(f"{workload}/naive")
        if ours is None:
            continue
        limit = 1.02 * ours["lower_bound_seconds"] + POLL_SECONDS
        found.append(
            Target(f"{workload} makespan <= 1.02 x lower bound + one poll", ours["makespan_seconds"], limit, unit="s")
        )
        handoff = ours["chain_handoff"]["p95"]
        found.append(Target(f"{workload} chain handoff p95 <= one poll + 5 s", handoff, POLL_SECONDS + 5, unit="s"))
        found.append(Target(f"{workload} ARM requests per copy <= 3", ours["arm_per_copy"], 3))
        found.append(Target(f"{workload} Table operations per copy <= 6", ours["table_per_copy"], 6))
        if naive is not None and ours["arm_requests"]["total"]:
            ratio = round(naive["arm_requests"]["total"] / ours["arm_requests"]["total"], 1)
            found.append(Target(f"{workload} ARM calls: naive / snapcopy >= 10", ratio, 10, at_least=True, unit="x"))
    history = document.get("history")
    if history:
        found.append(Target("W3 tick time, 100k / 1k history rows <= 1.2", history["ratio_snapcopy"], 1.2, unit="x"))
    imports = document.get("import")
    if imports:
        found.append(Target("cold import of function_app <= 0.8 s", imports["median_seconds"], 0.8, unit="s"))
    return found


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,}" if not isinstance(value, float) else f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _hours(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 3600:.2f} h"


def run_rows(document: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The per-run figures as (column names, rows) for the console and the docs."""
    names = list(document["runs"])
    runs = [document["runs"][name] for name in names]

    def row(label: str, pick: Any) -> tuple[str, list[str]]:
        return label, [pick(run) for run in runs]

    rows = [
        row("copies completed / expected", lambda r: f"{r['copies_completed']:,} / {r['copies_expected']:,}"),
        row("makespan", lambda r: _hours(r["makespan_seconds"])),
        row("lower bound", lambda r: _hours(r["lower_bound_seconds"])),
        row("makespan / lower bound", lambda r: _fmt(r["makespan_ratio"])),
        row("chain handoff p50 / p95 / max", lambda r: _spread(r["chain_handoff"])),
        row("slot refill p50 / p95 / max", lambda r: _spread(r["slot_refill"])),
        row("ARM requests per copy", lambda r: _fmt(r["arm_per_copy"])),
        row("Table operations per copy", lambda r: _fmt(r["table_per_copy"])),
        row("ARM requests (GET / LIST / PUT)", lambda r: _requests(r["arm_requests"])),
        row("Azure refusals", lambda r: _fmt(sum(r["refusals"].values()))),
        row("timer ticks / median tick wall", lambda r: f"{r['ticks']:,} / {r['tick_seconds_median'] * 1000:.0f} ms"),
        row("wall time", lambda r: f"{r['wall_seconds']:.0f} s"),
    ]
    return names, rows


def _spread(values: dict[str, Any]) -> str:
    if not values.get("count"):
        return "—"
    return f"{values['p50']:.0f} / {values['p95']:.0f} / {values['max']:.0f} s"


def _requests(requests: dict[str, int]) -> str:
    return " / ".join(_fmt(requests.get(key, 0)) for key in ("GET snapshot", "LIST snapshots", "PUT snapshot"))


def console_tables(document: dict[str, Any]) -> list[Table]:
    names, rows = run_rows(document)
    runs = Table(title=f"snapcopy vs naive baseline (seed {document['seed']}{', quick' if document['quick'] else ''})")
    runs.add_column("")
    for name in names:
        runs.add_column(name, justify="right")
    for label, cells in rows:
        runs.add_row(label, *cells)
    judged = Table(title="targets")
    judged.add_column("target")
    judged.add_column("measured", justify="right")
    judged.add_column("limit", justify="right")
    judged.add_column("", justify="center")
    for item in document["targets"]:
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "?"}[item["met"]]
        judged.add_row(item["name"], _fmt(item["value"], item["unit"]), f"{item['rule']} {_fmt(item['limit'])}", mark)
    tables = [runs, judged]
    diff = document.get("diff")
    if diff:
        w4 = Table(title="W4: the diff copy method")
        for label in ("workers", "chain wall", "vs 1", "read/changed", "written/changed", "equal"):
            w4.add_column(label, justify="right")
        one = diff["runs"][0]
        for run in diff["runs"]:
            w4.add_row(
                str(run["workers"]),
                f"{run['wall_seconds']:.2f} s",
                f"{run['wall_seconds'] / one['wall_seconds']:.2f}",
                f"{run['bytes_read'] / run['bytes_changed']:.2f}",
                f"{run['bytes_written'] / run['bytes_changed']:.2f}",
                "yes" if run["equal_to_source"] else "NO",
            )
        tables.append(w4)
    return tables


def markdown(document: dict[str, Any]) -> str:
    """The figures section of docs/benchmarks.md."""
    names, rows = run_rows(document)
    lines = [
        FIGURES_START,
        f"Measured {document['generated_at']} on {document['cpus']} CPUs, {document['wall_seconds']:.0f} s in all:",
        "",
        "```bash",
        document["command"],
        "```",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    history = document.get("history")
    if history:
        medians = history["tick_seconds_median"]
        lines += [
            "",
            f"W3 history scale ({history['in_flight_per_deployment']} copies in flight per deployment, "
            f"{history['rounds']} ticks each, the baseline's {history.get('rounds_naive', history['rounds'])}, "
            "alternated):",
            "",
            "| | snapcopy | naive |",
            "|---|---:|---:|",
        ]
        for size in ("small", "large"):
            rows_text = (
                f"{history['history_rows'][f'snapcopy/{size}']:,} / {history['history_rows'][f'naive/{size}']:,}"
            )
            lines.append(
                f"| tick median, {size} history ({rows_text} rows) | {medians[f'snapcopy/{size}'] * 1000:.0f} ms | "
                f"{medians[f'naive/{size}'] * 1000:.0f} ms |"
            )
        lines.append(f"| ratio large / small | {history['ratio_snapcopy']:.2f} | {history['ratio_naive']:.2f} |")
        requests = history.get("table_operations_per_tick")
        if requests:
            for size in ("small", "large"):
                lines.append(
                    f"| Table requests per tick, {size} history | {requests[f'snapcopy/{size}']:g} | "
                    f"{requests[f'naive/{size}']:g} |"
                )
    lines += diff_lines(document.get("diff"))
    imports = document.get("import")
    if imports:
        runs_text = ", ".join(f"{value:.2f}" for value in imports["runs"])
        lines += ["", f"Cold import of `function_app`: median {imports['median_seconds']:.2f} s ({runs_text})."]
    lines += ["", "| target | measured | limit | met |", "|---|---:|---:|:---:|"]
    for item in document["targets"]:
        met = {True: "yes", False: "**no**", None: "?"}[item["met"]]
        lines.append(
            f"| {item['name']} | {_fmt(item['value'], item['unit'])} | {item['rule']} {_fmt(item['limit'])} | {met} |"
        )
    lines += ["", "![in flight and queued over simulated time](../bench/results/latest.png)", FIGURES_END]
    return "\n".join(lines)


def diff_lines(diff: dict[str, Any] | None) -> list[str]:
    """W4, the diff copy method (local/bench/diff.py), as markdown."""
    if not diff:
        return []
    shape = diff["shape"]
    lines = [
        "",
        f"W4 diff copy method: a {shape['disk_gib']} GiB disk, a first snapshot of {shape['first_mib']} MiB and "
        f"{shape['increments']} increments of {shape['changed_mib']} MiB each, through SAS URLs onto Azurite "
        "page blobs:",
        "",
        "| workers | chain wall time | vs 1 worker | first increment | bytes read / changed | "
        "bytes written / changed | equal to source |",
        "|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    one = diff["runs"][0]
    for run in diff["runs"]:
        lines.append(
            f"| {run['workers']} | {run['wall_seconds']:.2f} s | {run['wall_seconds'] / one['wall_seconds']:.2f} | "
            f"{run['first_increment_mib']:.0f} MiB in {run['first_increment_seconds']:.2f} s | "
            f"{run['bytes_read'] / run['bytes_changed']:.2f} | {run['bytes_written'] / run['bytes_changed']:.2f} | "
            f"{'yes' if run['equal_to_source'] else '**no**'} |"
        )
    lines += [
        "",
        f"One worker: {diff['one_worker_mib_per_second']:.1f} MiB/s. Snapshots of the family with a SAS at once: "
        f"at most {diff['access']['most_at_once']}; grants refused: {diff['access']['refused']}.",
    ]
    return lines


def update_docs(path: Path, document: dict[str, Any]) -> None:
    """Replace the figures section of docs/benchmarks.md (the prose around it is kept)."""
    text = path.read_text()
    start, end = text.index(FIGURES_START), text.index(FIGURES_END) + len(FIGURES_END)
    path.write_text(text[:start] + markdown(document) + text[end:])


def plot(document: dict[str, Any], path: Path) -> None:
    """In-flight copies and queued snapshots over simulated time, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({name.split("/")[0] for name in document["runs"]})
    figure, axes = plt.subplots(len(workloads), 1, figsize=(10, 3.6 * len(workloads)), squeeze=False)
    for axis, workload in zip(axes[:, 0], workloads, strict=True):
        for system, style in (("snapcopy", "-"), ("naive", ":")):
            run = document["runs"].get(f"{workload}/{system}")
            if run is None:
                continue
            series = run["timeline"]
            axis.plot(series["t_hours"], series["in_flight"], style, color="tab:blue", label=f"in flight ({system})")
            axis.plot(series["t_hours"], series["queued"], style, color="tab:orange", label=f"queued ({system})")
        cap = document["workloads"][workload]["params"].get("cap")
        if cap:
            axis.axhline(cap, color="grey", linewidth=0.8, linestyle="--", label=f"cap {cap}")
        axis.set_title(document["workloads"][workload]["title"])
        axis.set_xlabel("simulated hours")
        axis.set_ylabel("copies")
        axis.legend(loc="upper right", fontsize="small")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def dumps(document: dict[str, Any]) -> str:
    """JSON with the timelines kept on one line each (readable diffs)."""
    compact = json.loads(json.dumps(document))
    for run in compact.get("runs", {}).values():
        run["timeline"] = {key: json.dumps(values) for key, values in run.get("timeline", {}).items()}
    text = json.dumps(compact, indent=2)
    for run in compact.get("runs", {}).values():
        for encoded in run["timeline"].values():
            text = text.replace(json.dumps(encoded), encoded)
    return text + "\n"
