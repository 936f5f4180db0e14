"""Resuming a run: a restarted job (a preempted machine, a crash) takes its run back and goes on.

``get_logger(resume=...)`` and ``start_run(resume=...)`` come here to find the run, to refuse it when
a live process holds it, and to record the attempt in run.json's ``segments``:

    [{"start": ..., "start_ts": ..., "end": ..., "end_ts": ..., "host": ..., "pid": ..., "status": ...}]

one entry per attempt, the last one the attempt running now. A run that was never resumed has no
``segments`` in run.json; ``Run.segments`` reads it as one.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from . import _format as fmt
from . import _redact
from ._errors import RunHeldError, short_repr
from ._metadata import process_info
from ._store import Run, Store

AUTO = "auto"


def holder(info: dict[str, Any]) -> str:
    """How an error names the process that holds a run: its pid and host."""
    return f"pid {info.get('pid')} on {info.get('hostname')}"


def find(root: Path, resume: Any, run_id: str | None) -> Path | None:
    """The folder of the run that ``resume=`` names, or None for ``"auto"`` when no run exists yet
    (it is then created, with ``run_id`` when one is given)."""
    if not isinstance(resume, str) or not resume:
        raise TypeError(
            f"resume= takes a run id, a prefix of one, 'last' or 'auto', not {short_repr(resume)}"
        )
    if resume == AUTO:
        if run_id is None or not (root / fmt.RUNS_DIR / run_id / fmt.RUN_FILE).exists():
            return None
        return root / fmt.RUNS_DIR / run_id
    run = Store(root).run(resume)  # RunNotFoundError, AmbiguousRunError
    if run_id is not None and run_id != run.id:
        raise ValueError(
            f"resume={resume!r} names run {run.id} but run_id={run_id!r} names another; pass one of them"
        )
    return run.dir


def held_by_ancestor(info: dict[str, Any]) -> bool:
    """Whether the live process holding the run is this process's parent, grandparent, ...: a
    launcher's child (a data-parallel rank) that inherited the run joins it rather than resume it."""
    if info.get("hostname") != socket.gethostname():
        return False
    import psutil

    try:
        return info.get("pid") in {p.pid for p in psutil.Process().parents()}
    except psutil.Error:
        return False


def check_free(run: Run) -> None:
    """Raise RunHeldError when a live process holds ``run``."""
    if run.reload().status == "running":
        raise RunHeldError(run.id, holder(run.info))


def prepare(run: Run) -> tuple[dict[str, Any], dict[str, int]]:
    """What resuming ``run`` reads first, without its lock: its summary, brought up to date from
    metrics.jsonl if the last attempt crashed, and the highest step recorded of each metric, from
    which the default steps go on."""
    summary = run.listing_summary()
    return summary, {name: max(m.steps) for name, m in run.metrics().items() if len(m)}


def take(
    run: Run,
    summary: dict[str, Any],
    tags: dict[str, Any],
    params: dict[str, Any],
    rules: _redact.Rules | None = None,
) -> None:
    """Make ``run`` this process's again: the summary ``prepare()`` made kept, the last attempt's
    segment closed, a new one opened, the run back to ``running``, ``tags`` and ``params`` added
    to its own. Called with the run's summary lock held, after ``check_free()``. ``rules`` redact
    what this attempt adds (its command line, tags and params); None records them as given."""
    if summary != run.cached_summary():
        fmt.write_json_atomic(run.dir / fmt.SUMMARY_FILE, summary)
    info = dict(run.info)
    segments = [dict(s) for s in run.segments]
    last = segments[-1]
    if last.get("end_ts") is None:
        # The attempt died without a word (SIGKILL, power loss): it ended at its last sign of life.
        signs = [summary.get("heartbeat"), *(m.get("ts") for m in summary.get("metrics", {}).values())]
        ends = [t for t in signs if isinstance(t, (int, float))]
        end = max(ends) if ends else None
        last.update(status="crashed", end=fmt.utc_iso(end) if end else None, end_ts=end)
    now = time.time()
    proc = process_info()
    segments.append(
        {
            "start": fmt.utc_iso(now),
            "start_ts": now,
            "end": None,
            "end_ts": None,
            "host": proc["hostname"],
            "pid": proc["pid"],
            "status": "running",
        }
    )
    info.update(proc)
    info.update(status="running", ended=None, ended_ts=None, error=None, segments=segments)
    info.pop("write_error", None)
    if tags:
        info["tags"] = {**(info.get("tags") or {}), **tags}
    if params:
        info["params"] = {**(info.get("params") or {}), **params}
    if rules is None:
        info["redacted"] = False
    else:  # what the earlier attempts recorded is redacted already, and counts nothing again
        recorded = info.get("redacted")
        info, counts = rules.run_info(info)
        info["redacted"] = {**(recorded if isinstance(recorded, dict) else {})}
        for field, n in counts.items():
            info["redacted"][field] = info["redacted"].get(field, 0) + n
    fmt.write_json_atomic(run.dir / fmt.RUN_FILE, info)


def end_segment(info: dict[str, Any]) -> None:
    """Close the last segment of a resumed run's ``info`` as the run itself was just ended."""
    segments = info.get("segments")
    if isinstance(segments, list) and segments and isinstance(segments[-1], dict):
        segments[-1].update(status=info.get("status"), end=info.get("ended"), end_ts=info.get("ended_ts"))


def summary_lock(run_dir: Path) -> Any:
    from filelock import FileLock

    return FileLock(str(run_dir / fmt.SUMMARY_LOCK), timeout=30)
