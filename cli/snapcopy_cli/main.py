"""`snapcopy`: the operator's command line over snapcopy's HTTP API.

Thin on purpose: the API decides everything; this module sends requests and shows the
answers (rich tables, one progress bar per copy with `--wait`). It needs `requests` and `rich`
(this distribution's dependencies), never the app's code or settings.

    export SNAPCOPY_URL=https://<app>.azurewebsites.net SNAPCOPY_KEY=<function key>
    snapcopy copy /subscriptions/.../snapshots/vm0-data0-s0 --wait
    snapcopy status --disk /subscriptions/.../disks/vm0-data0 --state failed

Exit codes: 0 done (with `--wait`: every copy succeeded or was skipped), 1 a waited-for
copy failed or was cancelled, 2 a usage error or an HTTP error (the problem's title and
detail go to stderr). The key is sent as `x-functions-key` and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from snapcopy_cli.client import ApiError, Client
from snapcopy_cli.views import (
    chains_table,
    copies_table,
    copy_detail,
    evaluation_table,
    name_of,
    policies_table,
    state_text,
)

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "skipped"})
GOOD_STATES = frozenset({"succeeded", "skipped"})
EXIT_OK, EXIT_COPY_FAILED, EXIT_ERROR = 0, 1, 2

Sleep = Callable[[float], None]


class Cli:
    """One run: the parsed arguments, the client, the consoles and the injected sleep."""

    def __init__(self, args: argparse.Namespace, client: Client, sleep: Sleep) -> None:
        self.args = args
        self.client = client
        self.sleep = sleep
        self.out = Console()
        self.err = Console(stderr=True)

    def emit(self, document: Any) -> None:
        print(json.dumps(document, indent=2))

    def request(self, field: str, source: str) -> int:
        answer = self.client.request_copies(field, source, self.args.region)
        copies = list(answer.get("copies", []))
        if self.args.wait:
            finished = {copy["copyId"]: copy for copy in self.wait(copies)}
            answer["copies"] = [{**finished[copy["copyId"]], "created": copy.get("created")} for copy in copies]
        if self.args.json:
            self.emit(answer)
        else:
            self.out.print(copies_table(answer["copies"], title="copies requested", wide=self.args.wide))
            for ignored in answer.get("ignored", []):
                name = escape(name_of(ignored.get("sourceSnapshotId")))
                self.out.print(f"[yellow]ignored[/yellow] {name}: {escape(str(ignored.get('reason')))}")
        return self.outcome(answer["copies"]) if self.args.wait else EXIT_OK

    def wait(self, copies: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Poll each unfinished copy every --interval seconds until all are final."""
        latest = {copy["copyId"]: copy for copy in copies}
        pending = [copy_id for copy_id, copy in latest.items() if copy.get("state") not in FINAL_STATES]
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[state]}"),
        )
        with Progress(
            *columns, console=self.err, auto_refresh=False, disable=self.args.json or not pending
        ) as progress:
            tasks: dict[str, TaskID] = {}
            for copy_id, copy in latest.items():
                label = f"{escape(name_of(copy.get('sourceSnapshotId')))} → {copy.get('targetRegion')}"
                tasks[copy_id] = progress.add_task(label, total=100.0, state="")
                self._show(progress, tasks[copy_id], copy)
            progress.refresh()
            while pending:
                self.sleep(self.args.interval)
                for copy_id in list(pending):
                    copy = latest[copy_id] = self.client.copy(copy_id)
                    self._show(progress, tasks[copy_id], copy)
                    if copy.get("state") in FINAL_STATES:
                        pending.remove(copy_id)
                progress.refresh()
        return list(latest.values())

    @staticmethod
    def _show(progress: Progress, task: TaskID, copy: Mapping[str, Any]) -> None:
        state = copy.get("state", "?")
        done = 100.0 if state in FINAL_STATES else float(copy.get("percent") or 0)
        progress.update(task, completed=done, state=state_text(state))

    @staticmethod
    def outcome(copies: Iterable[Mapping[str, Any]]) -> int:
        return EXIT_OK if all(copy.get("state") in GOOD_STATES for copy in copies) else EXIT_COPY_FAILED

    def one(self, copy: Any) -> int:
        if self.args.json:
            self.emit(copy)
        else:
            self.out.print(copy_detail(copy))
        return EXIT_OK

    def status(self) -> int:
        args = self.args
        if args.copy_id:
            if args.disk or args.region or args.state:
                raise UsageError("status takes a copy id or filters (--disk, --region, --state), not both")
            return self.one(self.client.copy(args.copy_id))
        filters = {"sourceDiskId": args.disk, "targetRegion": args.region, "state": args.state}
        copies, more = self.client.copies(filters, limit=args.limit, page_size=args.page_size)
        if args.json:
            self.emit({"value": copies})
            return EXIT_OK
        self.out.print(copies_table(copies, title=f"{len(copies)} copies", wide=args.wide))
        if more:
            self.err.print(f"showing the first {args.limit}; raise --limit to see more")
        return EXIT_OK

    def chains(self) -> int:
        answer = self.client.chains()
        if self.args.json:
            self.emit(answer)
        else:
            self.out.print(chains_table(answer.get("value", [])))
        return EXIT_OK

    def policies(self) -> int:
        answer = self.client.policies()
        if self.args.json:
            self.emit(answer)
        else:
            self.out.print(policies_table(answer.get("value", [])))
        return EXIT_OK

    def evaluate(self) -> int:
        answer = self.client.evaluate(self.args.snapshot)
        if self.args.json:
            self.emit(answer)
        else:
            self.out.print(evaluation_table(answer))
        return EXIT_OK

    def retry(self) -> int:
        copy = self.client.retry(self.args.copy_id)
        if self.args.wait:
            (copy,) = self.wait([copy])
            self.one(copy)
            return self.outcome([copy])
        return self.one(copy)

    def run(self) -> int:
        command = self.args.command
        if command == "copy":
            return self.request("sourceSnapshotId", self.args.source)
        if command == "backfill":
            return self.request("sourceDiskId", self.args.source)
        if command == "status":
            return self.status()
        if command == "chains":
            return self.chains()
        if command == "policies":
            return self.policies()
        if command == "evaluate":
            return self.evaluate()
        if command == "retry":
            return self.retry()
        return self.one(self.client.cancel(self.args.copy_id))


class UsageError(Exception):
    """The command line asks for something the CLI cannot send."""


def _positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> argparse.ArgumentParser:
    """Global options, accepted before or after the command. A command's copy has no defaults,
    so it keeps what was given before the command (argparse lets a subparser's defaults win)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url", default=default(os.environ.get("SNAPCOPY_URL")), help="function app address (SNAPCOPY_URL)"
    )
    parser.add_argument(
        "--key", default=default(os.environ.get("SNAPCOPY_KEY")), help="function key; prefer the SNAPCOPY_KEY variable"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print the API's JSON instead of tables"
    )
    parser.add_argument("--wide", action="store_true", default=default(False), help="show full copy ids in tables")
    return parser


def parser() -> argparse.ArgumentParser:
    common = _global_options(argparse.ArgumentParser(add_help=False), defaults=False)
    root = argparse.ArgumentParser(prog="snapcopy", description=__doc__.split("\n\n")[0])
    _global_options(root, defaults=True)
    commands = root.add_subparsers(dest="command", required=True, metavar="command")

    def waits(command: argparse.ArgumentParser) -> None:
        command.add_argument("--wait", action="store_true", help="show progress until every copy is final")
        command.add_argument(
            "--interval", type=_positive(float), default=15.0, help="seconds between polls (default: 15)"
        )

    for name, field, doc in (
        ("copy", "sourceSnapshotId", "copy one snapshot now"),
        ("backfill", "sourceDiskId", "copy every existing snapshot of a disk, oldest first"),
    ):
        command = commands.add_parser(name, help=doc, description=doc, parents=[common])
        command.add_argument("source", metavar=field, help="ARM id")
        command.add_argument("--region", action="append", help="target region (repeat; default: every configured one)")
        waits(command)

    status = commands.add_parser("status", help="one copy, or a filtered list", parents=[common])
    status.add_argument("copy_id", nargs="?", metavar="copyId")
    status.add_argument("--disk", help="source disk ARM id")
    status.add_argument("--region", help="target region")
    status.add_argument("--state", help="queued, copying, succeeded, failed, cancelled or skipped")
    status.add_argument("--limit", type=_positive(int), default=100, help="most copies to show (default: 100)")
    status.add_argument("--page-size", type=_positive(int), default=100, help="copies per request (the API's top)")

    commands.add_parser("chains", help="every chain with its queue and RPO", parents=[common])
    commands.add_parser("policies", help="the replication policies in effect", parents=[common])
    evaluate = commands.add_parser(
        "evaluate", help="which policies would copy a snapshot, and why not the others", parents=[common]
    )
    evaluate.add_argument("snapshot", metavar="sourceSnapshotId", help="ARM id")
    retry = commands.add_parser("retry", help="queue a failed or cancelled copy again", parents=[common])
    retry.add_argument("copy_id", metavar="copyId")
    waits(retry)
    cancel = commands.add_parser("cancel", help="cancel a queued copy", parents=[common])
    cancel.add_argument("copy_id", metavar="copyId")
    return root


def main(argv: Sequence[str] | None = None, *, sleep: Sleep = time.sleep) -> int:
    """Run one command; `sleep` waits between polls (tests pass one that moves their world on)."""
    err = Console(stderr=True)
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage and the problem
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    if not args.url:
        err.print("error: no API address: pass --url or set SNAPCOPY_URL (https://<app>.azurewebsites.net)")
        return EXIT_ERROR
    if not args.url.startswith(("http://", "https://")):
        err.print(f"error: --url must start with https:// (or http:// for a local host), not {escape(args.url)!r}")
        return EXIT_ERROR
    client = Client(args.url, args.key)
    try:
        return Cli(args, client, sleep).run()
    except UsageError as error:
        err.print(f"error: {escape(str(error))}")
        return EXIT_ERROR
    except ApiError as error:
        err.print(f"[red]error[/red]: {escape(str(error))}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("stopped waiting; the copies go on (see `status`)")
        return 130
    finally:
        client.close()
