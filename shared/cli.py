"""`python -m shared.cli`: the operator's command line over snapcopy's HTTP API.

Thin on purpose: the API decides everything; this module sends requests and shows the
answers (rich tables, one progress bar per copy with `--wait`). It needs `requests` (a
dependency of azure-core) and `rich` (requirements-dev.txt), never the app's settings.

    export SNAPCOPY_URL=https://<app>.azurewebsites.net SNAPCOPY_KEY=<function key>
    python -m shared.cli copy /subscriptions/.../snapshots/vm0-data0-s0 --wait
    python -m shared.cli status --disk /subscriptions/.../disks/vm0-data0 --state failed

Exit codes: 0 done (with `--wait`: every copy succeeded or was skipped), 1 a waited-for
copy failed or was cancelled, 2 a usage error or an HTTP error (the problem's title and
detail go to stderr). The key is sent as `x-functions-key` and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import requests

try:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
    from rich.table import Table
except ImportError:  # pragma: no cover - rich is a dev dependency, not deployed with the app
    raise SystemExit("python -m shared.cli needs the 'rich' package: pip install -r requirements-dev.txt") from None

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "skipped"})
GOOD_STATES = frozenset({"succeeded", "skipped"})
EXIT_OK, EXIT_COPY_FAILED, EXIT_ERROR = 0, 1, 2
TIMEOUT = (10.0, 120.0)  # connect, read (seconds); a backfill lists a whole subscription
STATE_STYLES = {"succeeded": "green", "failed": "red", "cancelled": "red", "skipped": "yellow", "copying": "cyan"}

Sleep = Callable[[float], None]


class ApiError(Exception):
    """An HTTP error (or no answer at all), told as its problem document's title and detail."""

    def __init__(self, status: int | None, title: str, detail: str) -> None:
        super().__init__(f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail

    def __str__(self) -> str:
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.title}: {self.detail}"


class Client:
    """snapcopy's HTTP API at `url` (the function app's address, with or without `/api`)."""

    def __init__(self, url: str, key: str | None, *, timeout: tuple[float, float] = TIMEOUT) -> None:
        base = url.rstrip("/")
        self.base = base[: -len("/api")] if base.endswith("/api") else base
        self.timeout = timeout
        self.has_key = bool(key)
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json, application/problem+json"
        if key:
            self.session.headers["x-functions-key"] = key

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        """The JSON answer to one request; `path` is `/api/...` or an absolute link."""
        url = self.base + path if path.startswith("/") else path
        try:
            response = self.session.request(method, url, params=params, json=body, timeout=self.timeout)
        except requests.RequestException as error:
            raise ApiError(
                None, "No answer", f"{method} {url.split('?')[0]} failed: {error.__class__.__name__}"
            ) from None
        if response.status_code >= 400:
            raise self._problem(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "Unexpected answer", f"{method} {path} did not answer JSON") from None

    def _problem(self, response: requests.Response) -> ApiError:
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict) and (doc.get("title") or doc.get("detail")):
            return ApiError(response.status_code, str(doc.get("title") or response.reason), str(doc.get("detail", "")))
        if response.status_code == 401:
            detail = "the function key was refused" if self.has_key else "no function key: pass --key or set it"
            return ApiError(401, "Unauthorized", f"{detail} (SNAPCOPY_KEY)")
        if response.status_code == 404:
            return ApiError(404, "Not found", f"{self.base} has no such route; is --url the function app's address?")
        return ApiError(response.status_code, response.reason or "HTTP error", "the answer has no problem details")

    # --- the API ------------------------------------------------------------------------

    def request_copies(self, field: str, source: str, regions: Sequence[str] | None) -> Any:
        body: dict[str, Any] = {field: source}
        if regions:
            body["targetRegions"] = list(regions)
        return self.call("POST", "/api/copies", body=body)

    def copy(self, copy_id: str) -> Any:
        return self.call("GET", f"/api/copies/{quote(copy_id, safe='')}")

    def cancel(self, copy_id: str) -> Any:
        return self.call("DELETE", f"/api/copies/{quote(copy_id, safe='')}")

    def retry(self, copy_id: str) -> Any:
        return self.call("POST", f"/api/copies/{quote(copy_id, safe='')}/retry")

    def chains(self) -> Any:
        return self.call("GET", "/api/chains")

    def copies(self, filters: Mapping[str, str | None], *, limit: int, page_size: int) -> tuple[list[Any], bool]:
        """Up to `limit` copies, following nextLink; and whether more were left."""
        params = {name: value for name, value in filters.items() if value}
        params["top"] = str(min(page_size, limit))
        page = self.call("GET", "/api/copies", params=params)
        found = list(page.get("value", []))
        while page.get("nextLink") and len(found) < limit:
            page = self.call("GET", page["nextLink"])
            found.extend(page.get("value", []))
        return found[:limit], len(found) > limit or bool(page.get("nextLink"))


# --- presentation -------------------------------------------------------------------------


def _short(copy_id: str, wide: bool) -> str:
    """A copy id is long and opaque; its head and tail are enough to tell rows apart."""
    return copy_id if wide or len(copy_id) <= 20 else f"{copy_id[:6]}…{copy_id[-10:]}"


def _name(resource_id: str | None) -> str:
    return resource_id.rsplit("/", 1)[-1] if resource_id else "-"


def _state(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def _why(copy: Mapping[str, Any]) -> str:
    error = copy.get("error")
    if error:
        return f"[red]{escape(str(error.get('code')))}[/red]: {escape(str(error.get('message')))}"
    return escape(str(copy.get("reason") or ""))


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
            escape(_name(copy.get("sourceSnapshotId"))),
            copy.get("targetRegion", "-"),
            _state(copy.get("state", "?")),
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
        ("state", _state(copy.get("state", "?"))),
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
        now = f"{escape(_name(copying['sourceSnapshotId']))} {float(copying['percent'] or 0):.0f}%" if copying else "-"
        table.add_row(
            escape(_name(chain.get("sourceDiskId")) if chain.get("sourceDiskId") else str(chain.get("familyId"))),
            chain.get("targetRegion", "-"),
            now,
            str(chain.get("queued", 0)),
            escape(_name(chain.get("lastCompletedSnapshotId"))),
            _age(chain.get("lastCompletedAgeSeconds")),
        )
    return table


# --- commands -----------------------------------------------------------------------------


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
                name = escape(_name(ignored.get("sourceSnapshotId")))
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
                label = f"{escape(_name(copy.get('sourceSnapshotId')))} → {copy.get('targetRegion')}"
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
        progress.update(task, completed=done, state=_state(state))

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
    root = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__.split("\n\n")[0])
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


if __name__ == "__main__":
    sys.exit(main())
