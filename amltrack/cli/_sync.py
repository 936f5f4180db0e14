"""``amltrack sync``: push ended runs to a remote, exactly once, and say what happened."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from . import _format as out
from ._history import add_store_arg


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sync",
        help="push runs to an amltrack or MLflow server",
        description=textwrap.fill(
            "Push the runs that have ended (completed, failed, killed, crashed) and are not fully on the "
            "remote. An interrupted push resumes where it stopped; syncing again sends nothing. Each run "
            "records what it sent in runs/<id>/sync/. One run failing does not stop the others; the exit "
            "code is 1 if any failed or --verify found a difference. See docs/sync.md.",
            width=90,
        ),
        epilog=(
            "examples:\n"
            "  amltrack sync --to http://127.0.0.1:8765 --dry-run\n"
            "  amltrack sync --to mlflow+http://127.0.0.1:5000\n"
            "  amltrack sync --to team --include-running --verify"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_arg(p)
    p.add_argument(
        "--to",
        metavar="URL|NAME",
        default=None,
        help="a server URL (http(s):// for amltrack's server, mlflow+http(s):// for MLflow) or a "
        "remote's name (default: the default remote)",
    )
    select = p.add_mutually_exclusive_group()
    select.add_argument(
        "--run",
        "-r",
        metavar="RUN",
        nargs="+",
        action="extend",
        default=None,
        help="only these runs (ids, unique prefixes, or 'last')",
    )
    select.add_argument(
        "--all",
        action="store_true",
        help="ask the remote about every run, even those the ledger shows unchanged since their last push",
    )
    p.add_argument("--include-running", action="store_true", help="also push the new records of running runs")
    p.add_argument(
        "--dry-run", action="store_true", help="ask the remote, send nothing, and say what would be sent"
    )
    p.add_argument(
        "--verify", action="store_true", help="afterwards, compare every run on the remote by hash"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=cmd_sync)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


class RichProgress:
    """A transient rich progress bar on stderr, one task per run being pushed."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, run_id: str, total: int) -> None:
        self._task = self._progress.add_task(run_id, total=total)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None


def cmd_sync(args: argparse.Namespace) -> int:
    from ..sync import NullProgress, sync

    show_progress = not args.json and sys.stderr.isatty()
    progress = RichProgress() if show_progress else None
    kwargs = dict(
        to=args.to,
        runs=args.run,
        all_runs=args.all,
        include_running=args.include_running,
        dry_run=args.dry_run,
        verify=args.verify,
    )
    if progress is not None:
        with progress:
            report = sync(args.store, progress=progress, **kwargs)
    else:
        report = sync(args.store, progress=NullProgress(), **kwargs)
    if args.json:
        out.print_json(report.to_dict())
    else:
        print_report(report)
    return 0 if report.ok else 1


def print_report(report: Any) -> None:
    shown = {"pushed": "pushed", "would_push": "would push", "skipped": "skipped", "failed": "FAILED"}
    rows = []
    for r in report.runs:
        if r.outcome in shown:
            note = human_bytes(r.bytes) if r.outcome in ("pushed", "would_push") else (r.reason or "")
            rows.append(f"{shown[r.outcome]:<10}  {r.id}  {r.status or '-':<9}  {note}")
        for d in r.differences or []:
            rows.append(f"{'DIFFERS':<10}  {r.id}  {r.status or '-':<9}  {d}")
    for line in rows:
        print(line)
    c = report.counts()
    if report.dry_run:
        head = f"dry run, nothing sent: {c['would_push']} to push ({human_bytes(report.bytes)})"
    elif c["pushed"] == 0 and c["failed"] == 0:
        head = "nothing to send"
    else:
        head = f"{c['pushed']} pushed ({human_bytes(report.bytes)})"
    tail = f"{c['up_to_date']} up to date, {c['skipped']} skipped, {c['failed']} failed"
    verified = [r for r in report.runs if r.differences is not None]
    if verified:
        tail += f", {len(verified) - len(report.differing)} verified, {len(report.differing)} differ"
    print(f"{head}; {tail} on {report.remote}")
