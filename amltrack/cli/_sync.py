"""``amltrack sync``: push ended runs to a remote, exactly once, and say what happened."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from . import _output as out
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
        help="only these runs (ids, unique prefixes, unique run names, or 'last')",
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
    p.add_argument(
        "--allow-secrets",
        action="store_true",
        help="send runs whose run.json holds values that look like secrets (by default such a run "
        "fails and is not sent; see docs/redaction.md)",
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
    """Transient rich progress bars on stderr: one for the whole sync (runs done, metric records and
    bytes sent) and one for the run being pushed (its bytes and records of their totals, and speed)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class Detail(ProgressColumn):
            def render(self, task: Any) -> Text:
                f = task.fields
                if f["kind"] == "overall":
                    text = (
                        f"{int(task.completed)}/{int(task.total or 0)} runs, "
                        f"{f['records']:,} records, {human_bytes(f['bytes'])} sent"
                    )
                else:
                    speed = f", {human_bytes(int(task.speed))}/s" if task.speed else ""
                    text = (
                        f"{human_bytes(int(task.completed))}/{human_bytes(int(task.total or 0))}, "
                        f"{f['records']:,}/{f['records_total']:,} records{speed}"
                    )
                return Text(text, style="progress.download")

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            Detail(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._overall: Any = None
        self._task: Any = None
        self._bytes = 0
        self._records = 0
        self._run_records = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def begin(self, runs: int) -> None:
        self._overall = self._progress.add_task("overall", total=runs, kind="overall", records=0, bytes=0)

    def start(self, run_id: str, total: int, records: int = 0) -> None:
        self._run_records = 0
        self._task = self._progress.add_task(
            run_id, total=total, kind="run", records=0, records_total=records
        )

    def advance(self, n: int, records: int = 0) -> None:
        self._bytes += n
        self._records += records
        self._run_records += records
        if self._overall is not None:
            self._progress.update(self._overall, records=self._records, bytes=self._bytes)
        if self._task is not None:
            self._progress.update(self._task, advance=n, records=self._run_records)

    def finish(self) -> None:
        if self._overall is not None:
            self._progress.advance(self._overall, 1)
        if self._task is not None:
            self._progress.refresh()  # draw the run's last state, however short its push was
            self._progress.remove_task(self._task)
            self._task = None


def say(message: str) -> None:
    """A note for the person at the terminal, on stderr (above the progress bars, if any)."""
    print(f"amltrack: {message}", file=sys.stderr, flush=True)


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
        allow_secrets=args.allow_secrets,
    )
    if progress is not None:
        with progress:
            report = sync(args.store, progress=progress, on_wait=say, **kwargs)
    else:
        report = sync(args.store, progress=NullProgress(), on_wait=say, **kwargs)
    if args.json:
        out.print_json(report.to_dict())
    else:
        print_report(report)
    return 0 if report.ok else 1


def print_report(report: Any) -> None:
    from ..sync._sync import NOT_TRIED

    shown = {"pushed": "pushed", "would_push": "would push", "skipped": "skipped", "failed": "FAILED"}
    rows = []
    width = out.terminal_width()
    not_tried = [r for r in report.runs if r.outcome == "failed" and (r.reason or "").startswith(NOT_TRIED)]
    skip = {r.id for r in not_tried}
    for r in report.runs:
        if r.id in skip:
            continue
        if r.outcome in shown:
            note = human_bytes(r.bytes) if r.outcome in ("pushed", "would_push") else (r.reason or "")
            rows.append(out.hanging(f"{shown[r.outcome]:<10}  {r.id}  {r.status or '-':<9}  ", note, width))
        for d in r.differences or []:
            rows.append(out.hanging(f"{'DIFFERS':<10}  {r.id}  {r.status or '-':<9}  ", d, width))
    for a in report.assets:
        if a.outcome in shown:
            where = f" (on the remote: {a.remote_ref})" if a.remote_ref and a.remote_ref != a.ref else ""
            note = human_bytes(a.bytes) if a.outcome in ("pushed", "would_push") else (a.reason or "")
            rows.append(out.hanging(f"{shown[a.outcome]:<10}  asset {a.ref}{where}  ", note, width))
    # Said when runs went (or would go) without them, not on every sync that has nothing to send.
    sending = any(r.outcome in ("pushed", "would_push") for r in report.runs)
    if report.assets_skipped and sending and not report.assets_skipped.startswith(NOT_TRIED):
        rows.append(out.hanging(f"{'skipped':<10}  assets  ", report.assets_skipped, width))
    if not_tried:  # one line, not one per run: the FAILED line above says why and what to do
        why = (not_tried[0].reason or "")[len(NOT_TRIED) + 2 :]
        runs = "run" if len(not_tried) == 1 else "runs"
        rows.append(out.hanging(f"{NOT_TRIED:<10}  ", f"{len(not_tried)} more {runs}: {why}", width))
    for line in rows:
        print(line)
    c = report.counts()
    a = report.to_dict()["asset_counts"]
    if report.dry_run:
        head = f"dry run, nothing sent: {c['would_push']} to push ({human_bytes(report.bytes)})"
    elif c["pushed"] == 0 and c["failed"] == 0 and a["pushed"] == 0 and a["failed"] == 0:
        head = "nothing to send"
    else:
        head = f"{c['pushed']} pushed ({human_bytes(report.bytes)})"
    tail = f"{c['up_to_date']} up to date, {c['skipped']} skipped, {c['failed']} failed"
    verified = [r for r in report.runs if r.differences is not None]
    if verified:
        tail += f", {len(verified) - len(report.differing)} verified, {len(report.differing)} differ"
    if report.assets:
        tail += (
            f"; assets: {a['would_push'] if report.dry_run else a['pushed']} "
            f"{'to push' if report.dry_run else 'pushed'}, {a['up_to_date']} up to date, {a['failed']} failed"
        )
    print(f"{head}; {tail} on {report.remote}")  # one line, whatever the width: scripts read it
