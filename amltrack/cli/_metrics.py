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
            "name, step, value and timestamp (Unix seconds). RUN defaults to the newest run."
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
    if t is list:
        import orjson

        return orjson.dumps(out.json_safe(v)).decode()
    return str(v)


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


@guarded
def cmd_metrics(args: argparse.Namespace) -> int:
    if args.json and args.format not in (None, "json"):
        raise CliError(f"--json and --format {args.format} disagree; give one of them")
    fmt = "json" if args.json else args.format or "csv"
    run = out.open_store(args.store).run(args.run)
    metrics = select(run.metrics(), args.names, run.id)
    sys.stdout.flush()
    if fmt == "json":
        import orjson

        sys.stdout.buffer.write(orjson.dumps(to_json(run.id, metrics)) + b"\n")
    elif fmt == "jsonl":
        _write_jsonl(metrics)
    else:
        _write_csv(metrics)
    sys.stdout.flush()
    return 0
