"""``amltrack history list|last|info|promote``: runs as the Azure ML Workbench CLI showed them."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _output as out
from ._output import CliError, add_json_arg, add_store_arg, command_parser, guarded

if TYPE_CHECKING:
    from .._store import Run, RunRow, RunSource

# The library's amltrack._format.STATUSES, repeated so that building the parser does not import the
# library (tests/test_cli.py checks that the two agree).
STATUSES = ("running", "completed", "failed", "killed", "crashed")

__all__ = ["add_parser", "add_store_arg", "run_details", "show"]


def add_parser(sub: Any) -> None:
    history = sub.add_parser(
        "history",
        help="list, inspect and promote runs",
        description="List, inspect and promote runs.",
        epilog="example:\n  amltrack history list --experiment mnist --limit 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hsub = history.add_subparsers(dest="history_command", metavar="COMMAND", required=True)

    p = command_parser(
        hsub,
        "list",
        "runs, newest first",
        "amltrack history list --status crashed --json\n  amltrack history list --remote team -n 5\n"
        "  amltrack history list --filter 'params.bs = 32 and metrics.acc > 0.9' --sort -metrics.acc "
        "--columns params.lr,metrics.acc",
    )
    add_source_args(p)
    p.add_argument("--experiment", "-e", metavar="E", default=None, help="only this experiment's runs")
    p.add_argument("--status", "-s", default=None, choices=STATUSES, help="only runs with this status")
    p.add_argument("--limit", "-n", type=int, default=20, help="at most N runs (default 20; 0 for all)")
    p.add_argument(
        "--filter",
        "-f",
        metavar="EXPR",
        default=None,
        help="only runs that match EXPR (docs/query.md), e.g. \"params.bs = 32 and status = 'completed'\"; "
        "plain text such as 'resnet' matches names, ids, tags and users",
    )
    p.add_argument(
        "--sort",
        metavar="KEY",
        action="append",
        default=None,
        help="sort by KEY, e.g. metrics.acc, 'metrics.acc desc' or -metrics.acc (descending); repeatable, "
        "the first the most significant; runs without KEY come last",
    )
    p.add_argument(
        "--columns",
        "-c",
        metavar="KEYS",
        default=None,
        help="add a column per key, comma-separated, e.g. params.lr,metrics.loss.min (with --json: "
        'each run\'s "columns")',
    )
    add_json_arg(p)
    p.set_defaults(handler=cmd_list)

    p = command_parser(hsub, "last", "the newest run, as info shows it", "amltrack history last --json")
    add_source_args(p)
    add_json_arg(p)
    p.set_defaults(handler=cmd_last)

    p = command_parser(
        hsub,
        "info",
        "a run's metadata, metrics and artifacts, or one artifact's bytes",
        "amltrack history info -r 7f3a9c --json\n"
        "  amltrack history info -r last --remote team -a plots/loss.png -o loss.png",
    )
    add_source_args(p)
    p.add_argument("-r", "--run", required=True, metavar="RUN", help=out.RUN_HELP)
    p.add_argument(
        "-a", "--artifact", metavar="PATH", default=None, help="print this artifact's exact bytes instead"
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", default=None, help="with -a: write the bytes to FILE, not stdout"
    )
    add_json_arg(p)
    p.set_defaults(handler=cmd_info)

    p = command_parser(
        hsub,
        "promote",
        "copy a run's artifacts under a prefix into a named, versioned asset",
        "amltrack history promote -r last -ap model -n mnist-cnn",
        description=(
            "Copy every stored artifact of RUN at or under PREFIX into a new version of asset NAME "
            "and print NAME:VERSION. Content identical to the latest version gives that version."
        ),
    )
    add_store_arg(p)
    p.add_argument("-r", "--run", required=True, metavar="RUN", help=out.RUN_HELP)
    p.add_argument(
        "-ap",
        "--artifact-prefix",
        required=True,
        metavar="PREFIX",
        help="an artifact path or folder, e.g. 'model' or 'model/weights.pt'",
    )
    p.add_argument("-n", "--name", required=True, metavar="NAME", help="the asset's name, e.g. 'mnist-cnn'")
    add_json_arg(p)
    p.set_defaults(handler=cmd_promote)


def add_source_args(p: argparse.ArgumentParser, what: str = "runs") -> None:
    """--store DIR, or --remote NAME|URL: a local store, or the finalised runs (or ``what``) of an
    amltrack server."""
    group = p.add_mutually_exclusive_group()
    add_store_arg(group)  # type: ignore[arg-type]  # a group takes arguments as a parser does
    group.add_argument(
        "--remote",
        metavar="NAME|URL",
        default=None,
        help=f"read the {what} of this amltrack server instead: a remote's name ('amltrack remote list') "
        "or its URL; the token is $AMLTRACK_TOKEN, else the remote's",
    )


@contextlib.contextmanager
def _source(args: argparse.Namespace) -> Iterator[RunSource]:
    """The store the command reads: the local one, or with --remote a reader of the server's runs:
    each a ``RunSource``, so one code renders both."""
    if args.remote is None:
        yield out.open_store(args.store)
        return
    from ..sync._reader import RemoteReader  # httpx is imported only when a command runs

    with RemoteReader.open(args.remote) as reader:
        yield reader


def _query_rows(
    source: RunSource,
    args: argparse.Namespace,
    expr: str | None,
    order: list[str] | None,
    columns: list[Any] | None,
) -> list[dict[str, Any]]:
    """The rows of a filtered or sorted list, each with its ``columns`` when asked for."""
    from .. import _query
    from .._store import Store, row_of

    if isinstance(source, Store):  # through the store's index: every figure a query reads at once
        selected = source.select(args.experiment, args.status, filter=expr, order_by=order)
        found = selected[: args.limit] if args.limit else selected
    else:
        runs = source.runs(args.experiment, args.status, args.limit, filter=expr, order_by=order)
        found = [row_of(r) for r in runs]
    rows = []
    for r in found:
        row = _listed_row(r)
        if columns is not None:
            row["columns"] = {str(k): _query.getter(k)(r) for k in columns}
        rows.append(row)
    if isinstance(source, Store):
        source.save_index()
    return rows


def _listed_row(r: RunRow) -> dict[str, Any]:
    """``_row(r.run)``, read from the row: an ended run's from the store's index, with no Run."""
    return _fields(
        r.id,
        r.attr("experiment"),
        r.attr("name"),
        r.status,
        r.attr("created"),
        r.attr("duration"),
        r.listing(),
    )


def _row(run: Run) -> dict[str, Any]:
    return _fields(
        run.id, run.experiment, run.name, run.status, run.created, run.duration(), run.listing_summary()
    )


def _fields(
    run_id: str,
    experiment: str,
    name: str | None,
    status: str,
    created: str | None,
    duration: float | None,
    listing: dict[str, Any],
) -> dict[str, Any]:
    cached = _dict(listing.get("metrics"))
    shown = [(k, v) for k, v in cached.items() if isinstance(v, dict)][:3]
    return {
        "id": run_id,
        "experiment": experiment,
        "name": name,
        "status": status,
        "created": created,
        "duration_s": duration,
        "metrics": len(cached),
        "last": {k: v.get("last") for k, v in shown},
        "kinds": {k: v.get("kind", "number") for k, v in shown},
        "lengths": {k: v["length"] for k, v in shown if type(v.get("length")) is int},
    }


def _shown(row: dict[str, Any], name: str, last: Any) -> str:
    """A metric's latest value in the runs list, as its kind (amltrack/_kinds.py) briefs it."""
    from .._kinds import BY_NAME  # small: it imports only the error classes

    kind = BY_NAME.get(row["kinds"].get(name))
    brief = kind.brief(row["lengths"].get(name)) if kind is not None else None
    return out.value(last) if brief is None else brief


def _query_args(args: argparse.Namespace) -> tuple[str | None, list[str] | None, list[Any] | None]:
    """--filter, --sort and --columns parsed: the filter as the expression that means it (plain text
    included), the sort keys, and the column keys. A bad one is a usage error: one line, exit 2."""
    from .. import _query

    which = "--filter"
    try:
        tree = _query.parse_search(args.filter) if args.filter is not None else None
        which = "--sort"
        _query.parse_orders(args.sort)
        which = "--columns"
        columns = None
        if args.columns is not None:
            columns = [_query.parse_order(c).key for c in args.columns.split(",") if c.strip()]
    except _query.QueryError as e:
        raise UsageError(f"{which} {e.expression!r}: {e}") from None
    return (None if tree is None else str(tree)), args.sort, columns


class UsageError(CliError):
    """A command line that cannot mean anything: the one-line message, and exit 2 as argparse's."""

    exit_code = 2


@guarded
def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise CliError(f"--limit {args.limit} is negative; give a number of runs, or 0 for all")
    expr, order, columns = _query_args(args)
    with _source(args) as source:
        if expr is None and order is None and columns is None:
            runs = source.runs(experiment=args.experiment, status=args.status, limit=args.limit)
            rows = [_row(r) for r in runs]
        else:
            rows = _query_rows(source, args, expr, order, columns)
    where = f"in {source}" if args.remote is None else f"on {source}"
    if args.json:
        out.print_json([{**r, "columns": out.json_safe(r["columns"])} if "columns" in r else r for r in rows])
        return 0
    if not rows:
        which = " and ".join(
            f
            for f in (
                args.experiment and f"of experiment {args.experiment!r}",
                args.status and f"with status {args.status}",
                expr is not None and f"matching {args.filter!r}",
            )
            if f
        )
        print(f"no runs {which + ' ' if which else ''}{where}", file=sys.stderr)
        return 0
    coloured = out.colour()
    extra = [] if columns is None else [str(k) for k in columns]
    headers = ["ID", "EXPERIMENT", "NAME", "STATUS", "STARTED", "DURATION", "METRICS", "LAST VALUES"]
    print(
        out.table(
            [*headers[:4], *extra, *headers[4:]],
            [
                [
                    out.short_id(r["id"]),
                    r["experiment"],
                    r["name"] or "-",
                    out.status(r["status"], coloured),
                    *(out.value(r["columns"][h]) for h in extra),
                    (r["created"] or "-")[:19].replace("T", " "),
                    out.duration(r["duration_s"]),
                    str(r["metrics"]),
                    ", ".join(f"{k}={_shown(r, k, v)}" for k, v in r["last"].items()),
                ]
                for r in rows
            ],
            flex={"LAST VALUES": 16, "NAME": 10, "EXPERIMENT": 10},
            drop=["METRICS", "DURATION", "STARTED", "LAST VALUES"],
        )
    )
    return 0


def metric_details(overview: dict[str, Any]) -> dict[str, Any]:
    """A metric's ``_summary.describe()`` overview with its points drawn as a sparkline.

    min and max are over every number logged (a list metric's elements included, NaN left out); the
    sparkline is of the series, or for a list metric of its latest list.
    """
    details = {k: overview[k] for k in ("kind", "count", "last", "min", "max")}
    details["sparkline"] = out.sparkline(overview["points"])
    return details


def run_details(run: Run) -> dict[str, Any]:
    """Everything ``history info`` shows, as the dict its --json prints (before NaN becomes "NaN").

    A run on a server is summarised by the server, so this costs the same whatever the run's size.
    """
    metrics = run._overview()
    skipped = run.skipped
    artifacts = run.artifacts()
    return {
        "id": run.id,
        "experiment": run.experiment,
        "name": run.name,
        "status": run.status,
        "duration_s": run.duration(),
        "info": run.info,
        "metrics": {name: metric_details(m) for name, m in metrics.items()},
        "artifacts": artifacts,
        "skipped_lines": skipped + run.skipped,
    }


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
    print(f"status      {out.status(d['status'], out.colour())}")
    # run.json is a plain file: show what is there, and never fail on a field of the wrong type.
    print(f"started     {run.created or '-'}   duration {out.duration(d['duration_s'])}")
    print(f"host        {info.get('user')}@{info.get('hostname')} pid {info.get('pid')}")
    git = _dict(info.get("git"))
    if isinstance(git.get("commit"), str):
        dirty = " (dirty)" if git.get("dirty") else ""
        print(f"git         {git.get('branch') or '-'} {git['commit'][:12]}{dirty}")
    for key, values in (("params", run.params), ("tags", run.tags)):
        if values:
            print(f"{key:<11} " + ", ".join(f"{k}={v}" for k, v in values.items()))
    error = _dict(info.get("error"))
    if error:
        print(f"error       {error.get('type')}: {error.get('message')}")
    if d["metrics"]:
        print()
        print(
            out.table(
                ["METRIC", "KIND", "COUNT", "LAST", "MIN", "MAX", "SERIES"],
                [
                    [
                        n,
                        str(m["kind"]),
                        str(m["count"]),
                        out.value(m["last"]),
                        out.value(m["min"]),
                        out.value(m["max"]),
                        m["sparkline"],
                    ]
                    for n, m in d["metrics"].items()
                ],
                flex={"METRIC": 16, "LAST": 10, "MIN": 10, "MAX": 10},
                drop=["KIND", "COUNT", "MIN", "MAX", "SERIES"],
            )
        )
    if d["artifacts"]:
        print()
        print(
            out.table(
                ["ARTIFACT", "SIZE", "STATUS", "NOTE"],
                [
                    [
                        a["path"],
                        "-" if a.get("size") is None else str(a["size"]),
                        str(a.get("status")),
                        str(a.get("reason") or ""),
                    ]
                    for a in d["artifacts"]
                ],
                flex={"NOTE": 12, "ARTIFACT": 24},
                drop=["NOTE"],
            )
        )
    return 0


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


@guarded
def cmd_last(args: argparse.Namespace) -> int:
    with _source(args) as source:
        return show(source.last(), args.json)


@guarded
def cmd_info(args: argparse.Namespace) -> int:
    if args.artifact is None:
        if args.output is not None:
            raise CliError(f"-o {args.output} needs -a PATH: only an artifact's bytes go to a file")
        with _source(args) as source:
            return show(source.run(args.run), args.json)
    if args.json:
        raise CliError("--json cannot be combined with -a: -a prints the artifact's own bytes")
    from .. import _format as fmt

    fmt.check_artifact_path(args.artifact)
    with _source(args) as source:
        run = source.run(args.run)
        data = read_artifact(run, args.artifact)
    if args.output is None and sys.stdout.isatty() and not looks_like_text(data):
        # As curl does: binary bytes on a terminal are noise at best and escape sequences at worst.
        raise CliError(
            f"artifact {args.artifact!r} of run {run.id} is binary ({len(data)} bytes) and stdout is a "
            "terminal; write it with -o FILE, or -o - to print it anyway"
        )
    if args.output is None or args.output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_file(Path(args.output), data)
    return 0


TEXT_SNIFF_BYTES = 8192


def looks_like_text(data: bytes) -> bool:
    """Whether ``data``'s first 8 KiB hold no NUL byte and are valid UTF-8 (a character cut at the
    8 KiB mark counts as valid)."""
    import codecs

    head = data[:TEXT_SNIFF_BYTES]
    if b"\0" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(data) <= TEXT_SNIFF_BYTES)
    except UnicodeDecodeError:
        return False
    return True


def read_artifact(run: Run, path: str) -> bytes:
    """``run.read_artifact(path)``, with the manifest's reason when the artifact was not stored."""
    try:
        return run.read_artifact(path)
    except LookupError:
        for entry in run.artifacts():
            if entry["path"] == path and entry.get("status") != "stored":
                why = entry.get("reason") or entry.get("status")
                raise CliError(f"artifact {path!r} of run {run.id} was not stored: {why}") from None
        raise


def write_file(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` through a temporary file, so a failure leaves no half-written file.

    A symlink, a device (``/dev/stdout``) or a FIFO is written into, as a shell's ``>`` would:
    replacing it would turn ``-o /dev/null`` into a regular file.
    """
    if dest.is_dir():
        raise CliError(f"-o {dest} is a directory; give a file name")
    if not dest.parent.is_dir():
        raise CliError(f"-o {dest}: the folder {dest.parent} does not exist")
    if dest.is_symlink() or (dest.exists() and not dest.is_file()):
        with open(dest, "wb") as f:
            f.write(data)
        return
    from .. import _format as fmt

    fmt.write_bytes_atomic(dest, data, fsync=False)


@guarded
def cmd_promote(args: argparse.Namespace) -> int:
    from .. import _assets

    name = _assets.check_asset_name(args.name)
    run = out.open_store(args.store).run(args.run)
    asset = _assets.promote(run, args.artifact_prefix, name)
    if args.json:
        out.print_json(asset.to_json())
    else:
        print(asset.ref)
    if asset.reused:
        print(f"amltrack: {asset.ref} already holds this content; no new version was made", file=sys.stderr)
    return 0
