"""`make bench`: schedule quality and cost of snapcopy in simulated time, side by side
with a naive baseline, against Azurite and the ARM emulator on a virtual clock.

    python -m local.bench            # W1 1,000 disks x 3, W2 50 x 20, W3 1k vs 100k rows
    python -m local.bench --quick    # CI-sized: the same code paths, small fleets

W1 and W2 run in two worker processes at once (each with its own Azurite and emulator:
their figures are counts and simulated times, which load does not change) while a third
seeds W3's history at a low priority; W3's ticks are timed once the other two are done,
then the cold import, with nothing else running. Writes bench/results/<time>.json,
latest.json and latest.png, and (full runs) the figures in docs/benchmarks.md. See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
RUNS = ("W1/snapcopy", "W1/naive", "W2/snapcopy", "W2/naive")
# two workers, balanced: snapcopy's W1 is the longest run (W3 seeds in a third meanwhile)
PARTS = (("W1/snapcopy",), ("W1/naive", "W2/snapcopy", "W2/naive"))
SEEDING_NICE = 10

console = Console(width=None if sys.stdout.isatty() else 140, stderr=False)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI-sized workloads (well under a minute)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--w1-disks", type=int)
    p.add_argument("--w1-snapshots", type=int)
    p.add_argument("--w2-disks", type=int)
    p.add_argument("--w2-snapshots", type=int)
    p.add_argument("--w2-every", type=float, default=180.0, help="seconds between a W2 disk's snapshots")
    p.add_argument("--cap", type=int, default=100, help="copies in flight per subscription per region")
    p.add_argument("--history-small", type=int)
    p.add_argument("--history-large", type=int)
    p.add_argument("--in-flight", type=int, help="W3: copies in flight per deployment")
    p.add_argument("--rounds", type=int, help="W3: timed ticks per deployment")
    p.add_argument("--import-runs", type=int, help="fresh interpreters timed importing function_app")
    p.add_argument("--serial", action="store_true", help="run W1 and W2 in this process, one after another")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG go")
    p.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md alone")
    p.add_argument("--part", help=argparse.SUPPRESS)  # internal: run these runs, write JSON to --part-out
    p.add_argument("--part-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--go-file", type=Path, help=argparse.SUPPRESS)  # internal: W3 times once it exists
    p.add_argument("--nice", type=int, default=0, help=argparse.SUPPRESS)  # internal: a worker's priority
    return p


def settings(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    return {
        "w1": {
            "disks": args.w1_disks or (60 if quick else 1000),
            "snapshots": args.w1_snapshots or 3,
            "cap": args.cap if not quick else min(args.cap, 20),
        },
        "w2": {
            "disks": args.w2_disks or (8 if quick else 50),
            "snapshots": args.w2_snapshots or (6 if quick else 20),
            "every_seconds": args.w2_every,
            "cap": args.cap,
        },
        "w3": {
            "small": args.history_small or (300 if quick else 1_000),
            "large": args.history_large or (3_000 if quick else 100_000),
            "in_flight": args.in_flight or (20 if quick else 100),
            "rounds": args.rounds or (4 if quick else 6),
        },
        "import_runs": args.import_runs or (3 if quick else 7),
    }


def workloads(args: argparse.Namespace) -> dict[str, Any]:
    from local.bench.workload import w1, w2

    config = settings(args)
    return {"W1": w1(args.seed, **config["w1"]), "W2": w2(args.seed, **config["w2"])}


class Progress:
    """A line every 20 s of wall time: which run, how far (the workers share the console)."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total, self.last = name, total, time.monotonic()

    def __call__(self, ticks: int, started: int) -> None:
        if time.monotonic() - self.last >= 20:
            self.last = time.monotonic()
            print(f"  {self.name}: {started:,}/{self.total:,} copies started, {ticks / 60:.1f} simulated h", flush=True)


def run_part(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """Run some of the four runs in this process, on one backend."""
    from local.bench import run
    from local.chaos import _quiet_logs, local_backend

    chosen = workloads(args)
    results: dict[str, Any] = {}
    with local_backend() as backend:
        _quiet_logs(None)
        for name in names:
            workload_name, system = name.split("/")
            workload = chosen[workload_name]
            make = run.make_snapcopy if system == "snapcopy" else run.make_naive
            result = run.simulate(workload, backend, make, on_tick=Progress(name, workload.copies))
            item = asdict(result)
            item.update(
                arm_per_copy=result.arm_per_copy,
                table_per_copy=result.table_per_copy,
                makespan_ratio=round(result.makespan_ratio, 4) if result.makespan_ratio is not None else None,
            )
            results[name] = item
            print(f"  {name}: done in {result.wall_seconds:.0f} s", flush=True)
    return results


def run_parallel(args: argparse.Namespace, argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The four runs in two worker processes (this script again, with --part), and W3 in a
    third: it seeds meanwhile, and times its ticks once the other two have finished."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        go = Path(scratch) / "go"

        def start(names: str, index: int, *extra: str) -> tuple[subprocess.Popen[bytes], Path, str]:
            out = Path(scratch) / f"part{index}.json"
            command = [sys.executable, "-m", "local.bench", *argv, "--part", names, "--part-out", str(out), *extra]
            return subprocess.Popen(command, cwd=ROOT), out, names

        children = [start(",".join(names), index) for index, names in enumerate(PARTS)]
        # W3 seeds at a low priority: the W1/W2 runs are chains of requests that leave the
        # CPU idle between answers, and its seeding fills those gaps instead of slowing them
        history_child = start("W3", len(PARTS), "--go-file", str(go), "--nice", str(SEEDING_NICE))
        failed = []
        for child, out, names in children:
            if child.wait() != 0 or not out.exists():
                failed.append(names)
                continue
            results.update(json.loads(out.read_text()))
        go.touch()
        child, out, _ = history_child
        if child.wait() != 0 or not out.exists():
            failed.append("W3")
        if failed:
            raise SystemExit(f"benchmark worker failed: {failed}")
        scale = json.loads(out.read_text())
    return {name: results[name] for name in RUNS if name in results}, scale


def history(args: argparse.Namespace, go: Path | None = None) -> dict[str, Any]:
    from local.bench.history import history_scale
    from local.chaos import _quiet_logs, local_backend

    def wait_for_go() -> None:
        print("  W3: history seeded; timing once W1 and W2 are done", flush=True)
        while go is not None and not go.exists():
            time.sleep(1)

    config = settings(args)["w3"]
    with local_backend() as backend:
        _quiet_logs(None)
        return history_scale(backend, **config, seeded=wait_for_go if go is not None else None)


def cold_import(runs: int) -> dict[str, Any]:
    """Seconds to import function_app in a fresh interpreter (the worker's cold start)."""
    code = "import time; t = time.perf_counter(); import function_app; print(time.perf_counter() - t)"
    times = []
    for _ in range(runs):
        output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        times.append(round(float(output.stdout.strip().splitlines()[-1]), 3))
    return {"runs": times, "median_seconds": round(statistics.median(times), 3)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.part:
        if args.nice:
            os.nice(args.nice)  # its Azurite inherits it
        part = history(args, args.go_file) if args.part == "W3" else run_part(args, args.part.split(","))
        args.part_out.write_text(json.dumps(part))
        return 0

    from local.bench import report

    began = time.monotonic()
    chosen = workloads(args)
    console.print(f"[bold]snapcopy benchmark[/bold] (seed {args.seed}{', quick' if args.quick else ''})")
    for workload in chosen.values():
        bound = workload.lower_bound()
        console.print(f"  {workload.title}: {workload.copies:,} copies, lower bound {bound.seconds / 3600:.2f} h")
    if args.serial:
        runs = run_part(args, list(RUNS))
        console.print("  W3: history scale (timed ticks, nothing else running)")
        scale = history(args)
    else:
        runs, scale = run_parallel(args, argv)
    console.print("  cold import of function_app")
    imports = cold_import(settings(args)["import_runs"])
    console.print("  W4: the diff copy method (alone on the machine)")
    from local.bench.diff import diff_workload

    diff = diff_workload(args.quick, args.seed)
    command = "python -m local.bench " + " ".join(argv) if argv else "make bench"
    document: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command.strip(),
        "seed": args.seed,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "poll_seconds": 60,
        "settings": settings(args),
        "workloads": {
            name: {
                "title": workload.title,
                "params": workload.params,
                "copies": workload.copies,
                "lower_bound_seconds": round(workload.lower_bound().seconds, 1),
            }
            for name, workload in chosen.items()
        },
        "runs": runs,
        "history": scale,
        "import": imports,
        "diff": diff,
    }
    document["wall_seconds"] = round(time.monotonic() - began, 1)
    document["targets"] = [target.to_json() for target in report.targets(document)]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}{'-quick' if args.quick else ''}.json"
    text = report.dumps(document)
    (args.out / name).write_text(text)
    (args.out / ("latest-quick.json" if args.quick else "latest.json")).write_text(text)
    report.plot(document, args.out / ("latest-quick.png" if args.quick else "latest.png"))
    for table in report.console_tables(document):
        console.print(table)
    if not args.quick and not args.no_docs:
        report.update_docs(DOCS, document)
        console.print(f"figures written to {DOCS.relative_to(ROOT)}")
    console.print(f"results in {args.out}/{name}; {document['wall_seconds']:.0f} s in all")
    incomplete = [name for name, run in runs.items() if run["copies_completed"] != run["copies_expected"]]
    refused = [name for name, run in runs.items() if run["refusals"]]
    if not all(run["equal_to_source"] for run in diff["runs"]):
        console.print("[red]✗ the diff copy method's blob differs from its source[/red]")
        return 1
    if incomplete or refused:
        console.print(
            f"[red]✗ runs that did not copy everything: {incomplete}; refused by Azure's rules: {refused}[/red]"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
