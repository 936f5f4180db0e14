"""``amltrack metrics``: a run's full metric series as CSV, JSON Lines or JSON."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING, Any

from .._errors import MetricNotFoundError
from . import _output as out
from ._output import CliError, add_store_arg, command_parser, guarded

if TYPE_CHECKING:
    from .._store import Metric

__all__ = ["add_parser", "select"]

FORMATS = ("csv", "jsonl", "json")
CHUNK_ROWS = 10_000


def add_parser(sub: Any) -> None:
    p = command_parser(
        sub,
        "metrics",
        "a run's full metric series, for spreadsheets and scripts",
        "amltrack metrics -r last loss acc --format csv > curves.csv",
        description=(
            "Print every point of a run's metrics (all of them, or the NAMEs given) in call order: "
            "name, step, value and timestamp (Unix seconds). RUN defaults to the newest run. One NAME "
            "of a table, histogram or confusion matrix with --format csv or json prints its contents: "
            "a table's rows, a histogram's bins, a matrix's cells, each with its step."
        ),
    )
    add_store_arg(p)
    p.add_argument("-r", "--run", default="last", metavar="RUN", help=out.RUN_HELP + " (default: last)")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these metrics, in this order")
    p.add_argument("--format", "-f", choices=FORMATS, default=None, help="the output format (default csv)")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.set_defaults(handler=cmd_metrics)


def select(metrics: dict[str, Metric], names: list[str], run_id: str) -> list[Metric]:
    """The metrics named, in the order given (each once), or all of them in the run's order."""
    if not names:
        return list(metrics.values())
    picked = []
    for name in dict.fromkeys(names):
        if name not in metrics:
            raise MetricNotFoundError(name, run_id)
        picked.append(metrics[name])
    return picked


def _nonfinite(v: float) -> str:
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _csv_cell(v: Any) -> str:
    t = type(v)
    if t is float:
        return repr(v) if math.isfinite(v) else _nonfinite(v)
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is list or isinstance(v, dict):  # a list metric's array, an image's or a table's record
        import orjson

        return orjson.dumps(out.json_safe(v)).decode()
    if v is None:
        return ""
    return str(v)


def contents(m: Metric) -> tuple[str, list[str], list[list[Any]]] | None:
    """What a table, histogram or confusion matrix metric holds, as a kind, a header and rows, each
    row led by its point's step: every table's rows (``log_row``'s build one table; the columns are
    those of every record, in order of first appearance, a cell a record lacks empty), every
    histogram's bins (``lo``, ``hi``, ``count``; NaN and infinities as rows of their own), every
    matrix's cells. None for a metric of other kinds, or of several."""
    kinds = {v.get("kind") if isinstance(v, dict) else None for v in m.values}
    if len(kinds) != 1:
        return None
    (kind,) = kinds
    rows: list[list[Any]] = []
    if kind == "table":
        columns: dict[str, int] = {}
        for v in m.values:
            for c in v.columns:
                columns.setdefault(c, len(columns))
        for step, v in zip(m.steps, m.values):
            at = [columns[c] for c in v.columns]
            for r in v.data:
                row: list[Any] = [None] * len(columns)
                for i, x in zip(at, r):
                    row[i] = x
                rows.append([step, *row])
        return kind, ["step", *columns], rows
    if kind == "histogram":
        for step, v in zip(m.steps, m.values):
            edges = v.edges
            rows += [[step, edges[i], edges[i + 1], n] for i, n in enumerate(v.counts)]
            for key, mark in (("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf)):
                if v.get(key):
                    rows.append([step, mark, mark, v[key]])
        return kind, ["step", "lo", "hi", "count"], rows
    if kind == "confusion_matrix":
        for step, v in zip(m.steps, m.values):
            labels = v.labels
            rows += [[step, t, p, n] for t, r in zip(labels, v.matrix) for p, n in zip(labels, r)]
        return kind, ["step", "true", "predicted", "count"], rows
    return None


def _write_csv(metrics: list[Metric]) -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "step", "value", "timestamp"])
    for m in metrics:
        for i in range(0, len(m), CHUNK_ROWS):
            writer.writerows(
                (m.name, step, _csv_cell(v), repr(ts))
                for step, v, ts in zip(
                    m.steps[i : i + CHUNK_ROWS],
                    m.values[i : i + CHUNK_ROWS],
                    m.timestamps[i : i + CHUNK_ROWS],
                )
            )
            sys.stdout.write(buf.getvalue())
            buf.seek(0)
            buf.truncate()
    sys.stdout.write(buf.getvalue())


def _jsonl_line(name: str, step: int, v: Any, ts: float) -> bytes:
    import orjson  # a dictionary lookup once loaded; loading it at import time would slow --help

    t = type(v)
    if (t is float and not math.isfinite(v)) or (t is list and not all(map(math.isfinite, v))):
        # As in metrics.jsonl: the strings stand for numbers, and the flag says so.
        return orjson.dumps(
            {"name": name, "step": step, "value": out.json_safe(v), "timestamp": ts, "nonfinite": True}
        )
    return orjson.dumps({"name": name, "step": step, "value": v, "timestamp": ts})


def _write_jsonl(metrics: list[Metric]) -> None:
    write = sys.stdout.buffer.write
    for m in metrics:
        name = m.name
        for i in range(0, len(m), CHUNK_ROWS):
            write(
                b"".join(
                    _jsonl_line(name, s, v, ts) + b"\n"
                    for s, v, ts in zip(
                        m.steps[i : i + CHUNK_ROWS],
                        m.values[i : i + CHUNK_ROWS],
                        m.timestamps[i : i + CHUNK_ROWS],
                    )
                )
            )


def to_json(run_id: str, metrics: list[Metric]) -> dict[str, Any]:
    """The ``--format json`` object: the run id and each metric's columns."""
    return {
        "run": run_id,
        "metrics": {
            m.name: {"steps": m.steps, "values": out.json_safe(m.values), "timestamps": m.timestamps}
            for m in metrics
        },
    }


def _write_contents(
    run_id: str, name: str, fmt: str, kind: str, header: list[str], rows: list[list[Any]]
) -> None:
    if fmt == "json":
        import orjson

        body = {"run": run_id, "metric": name, "kind": kind, "columns": header, "data": out.json_safe(rows)}
        sys.stdout.buffer.write(orjson.dumps(body) + b"\n")
        return
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_csv_cell(x) for x in r] for r in rows)


@guarded
def cmd_metrics(args: argparse.Namespace) -> int:
    if args.json and args.format not in (None, "json"):
        raise CliError(f"--json and --format {args.format} disagree; give one of them")
    fmt = "json" if args.json else args.format or "csv"
    run = out.open_store(args.store).run(args.run)
    metrics = select(run.metrics(), args.names, run.id)
    sys.stdout.flush()
    rich = contents(metrics[0]) if len(args.names) == 1 and fmt != "jsonl" else None
    if rich is not None:
        _write_contents(run.id, metrics[0].name, fmt, *rich)
    elif fmt == "json":
        import orjson

        sys.stdout.buffer.write(orjson.dumps(to_json(run.id, metrics)) + b"\n")
    elif fmt == "jsonl":
        _write_jsonl(metrics)
    else:
        _write_csv(metrics)
    sys.stdout.flush()
    return 0
