"""``amltrack history list|last|info``: runs as the Azure ML Workbench CLI showed them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._store import Run, Store
from . import _format as out


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help="the store (default: $AMLTRACK_STORE, else the nearest .amltrack/)",
    )


def add_parser(sub: Any) -> None:
    history = sub.add_parser(
        "history",
        help="list and inspect runs",
        description="List and inspect runs.",
        epilog="example:\n  amltrack history list --experiment mnist --limit 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hsub = history.add_subparsers(dest="history_command", metavar="COMMAND", required=True)

    p = hsub.add_parser(
        "list",
        help="runs, newest first",
        epilog="example:\n  amltrack history list --status crashed --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_arg(p)
    p.add_argument("--experiment", "-e", default=None, help="only this experiment's runs")
    p.add_argument(
        "--status", "-s", default=None, choices=["running", "completed", "failed", "killed", "crashed"]
    )
    p.add_argument("--limit", "-n", type=int, default=20, help="at most N runs (default 20; 0 for all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_list)

    p = hsub.add_parser(
        "last",
        help="the newest run, as info shows it",
        epilog="example:\n  amltrack history last --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_last)

    p = hsub.add_parser(
        "info",
        help="a run's metadata, metrics and artifacts",
        epilog="example:\n  amltrack history info -r 2026 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_arg(p)
    p.add_argument("-r", "--run", required=True, metavar="RUN", help="a run id, a unique prefix, or 'last'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_info)


def _row(run: Run) -> dict[str, Any]:
    cached = run.cached_summary().get("metrics") or {}
    return {
        "id": run.id,
        "experiment": run.experiment,
        "name": run.name,
        "status": run.status,
        "created": run.created,
        "duration_s": run.duration(),
        "metrics": len(cached),
        "last": {k: v.get("last") for k, v in list(cached.items())[:3] if isinstance(v, dict)},
    }


def cmd_list(args: argparse.Namespace) -> int:
    store = Store(args.store)
    runs = store.runs(experiment=args.experiment, status=args.status)
    if args.limit:
        runs = runs[: args.limit]
    rows = [_row(r) for r in runs]
    if args.json:
        out.print_json(rows)
        return 0
    if not rows:
        print(f"no runs in {store}", file=sys.stderr)
        return 0
    print(
        out.table(
            ["ID", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION", "METRICS", "LAST VALUES"],
            [
                [
                    r["id"],
                    r["experiment"],
                    r["name"] or "-",
                    r["status"],
                    (r["created"] or "-")[:19].replace("T", " "),
                    out.duration(r["duration_s"]),
                    str(r["metrics"]),
                    ", ".join(f"{k}={out.value(v)}" for k, v in r["last"].items()),
                ]
                for r in rows
            ],
        )
    )
    return 0


def run_details(run: Run) -> dict[str, Any]:
    metrics = run.metrics()
    details: dict[str, Any] = {
        "id": run.id,
        "experiment": run.experiment,
        "name": run.name,
        "status": run.status,
        "duration_s": run.duration(),
        "info": run.info,
        "metrics": {},
        "artifacts": run.artifacts(),
        "skipped_lines": run.skipped,
    }
    for name, points in metrics.items():
        vals = [p.value for p in points]
        last = vals[-1]
        series = last if isinstance(last, list) else vals
        nums = [v for v in series if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
        details["metrics"][name] = {
            "count": len(points),
            "last": last,
            "min": min(nums) if nums else None,
            "max": max(nums) if nums else None,
            "sparkline": out.sparkline(series),
        }
    return details


def show(run: Run, as_json: bool) -> int:
    d = run_details(run)
    if as_json:
        out.print_json(out.json_safe(d))
        return 0
    info = d["info"]
    print(f"run         {d['id']}")
    print(f"experiment  {d['experiment']}")
    if d["name"]:
        print(f"name        {d['name']}")
    print(f"status      {d['status']}")
    print(f"started     {info.get('created')}   duration {out.duration(d['duration_s'])}")
    print(f"host        {info.get('user')}@{info.get('hostname')} pid {info.get('pid')}")
    git = info.get("git") or {}
    if git.get("commit"):
        print(
            f"git         {git.get('branch') or '-'} {git['commit'][:12]}{' (dirty)' if git.get('dirty') else ''}"
        )
    for key in ("params", "tags"):
        if info.get(key):
            print(f"{key:<11} " + ", ".join(f"{k}={v}" for k, v in info[key].items()))
    if info.get("error"):
        print(f"error       {info['error'].get('type')}: {info['error'].get('message')}")
    if d["metrics"]:
        print()
        print(
            out.table(
                ["METRIC", "COUNT", "LAST", "MIN", "MAX", "SERIES"],
                [
                    [
                        n,
                        str(m["count"]),
                        out.value(m["last"]),
                        out.value(m["min"]),
                        out.value(m["max"]),
                        m["sparkline"],
                    ]
                    for n, m in d["metrics"].items()
                ],
            )
        )
    if d["artifacts"]:
        print()
        print(
            out.table(
                ["ARTIFACT", "SIZE", "STATUS", "NOTE"],
                [
                    [a["path"], str(a.get("size", "-")), str(a.get("status")), str(a.get("reason") or "")]
                    for a in d["artifacts"]
                ],
            )
        )
    return 0


def cmd_last(args: argparse.Namespace) -> int:
    return show(Store(args.store).last(), args.json)


def cmd_info(args: argparse.Namespace) -> int:
    return show(Store(args.store).run(args.run), args.json)
