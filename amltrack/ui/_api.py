"""The UI's JSON API: runs, a run's metadata, metrics, chart series, artifacts, and assets.

Every route reads the store through ``amltrack.Store`` and the series cache (``_cache``); nothing
here writes a run. Every error has the one shape of ``amltrack._web._errors``, codes from its registry::

    {"error": {"code": "run_not_found", "message": "..."}}

``docs/ui.md`` lists the routes and their answers.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import numpy as np
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import __version__, _assets, _kinds, _query
from .. import _format as fmt
from .._errors import (
    AmbiguousRunError,
    ArtifactNotFoundError,
    AssetNotFoundError,
    InvalidAssetNameError,
    InvalidPathError,
    QueryError,
    RunNotFoundError,
)
from .._store import Run, RunRow, Store, open_beneath, short_id
from .._web._errors import API_VERSION, ApiError, error_response
from . import _preview, _series
from ._cache import Caches, SeriesCache, Warmer
from ._pages import SECURITY_HEADERS, error_page, wants_html
from ._static import plotly_available

WAIT = 0.8  # seconds a request spends bringing a cache up to date before it answers with progress
MAX_STRINGS = 1000
MAX_MEDIA_RECORDS = 10_000
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".table.json": "application/json"}
ROW_METRICS = 6  # last values per run in the runs list
XAXES = ("step", "wall", "relative")  # a chart's x: the step, the time, or the time since the run began

DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "no-store",
}


# An error is never cached, and carries the security headers itself: a crash's is sent from
# outside every middleware.
ERROR_HEADERS = {"Cache-Control": "no-store", **SECURITY_HEADERS}


def json_error(status: int, code: str, message: str) -> Response:
    return error_response(ApiError(status, code, message), ERROR_HEADERS)


def error_answer(request: Request, status: int, code: str, message: str, title: str, text: str) -> Response:
    """The error as JSON for a program, or as a page (``title``, ``text``) for a browser's navigation."""
    if wants_html(request):
        return error_page(request, status, title, text)
    return json_error(status, code, message)


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_answer(request, exc.status, exc.code, exc.message, "Bad request", exc.message)


async def on_amltrack_error(request: Request, exc: Exception) -> Response:
    # A run ref's messages are the UI's own: the store's name a CLI command and the store's path.
    if isinstance(exc, AmbiguousRunError):
        return error_answer(
            request,
            404,
            "run_not_found",
            f"{exc.ref!r} names {len(exc.matches)} runs; give more of the run's id",
            "Run not found",
            f"More than one run answers to “{exc.ref}”. Give more of the run's id.",
        )
    if isinstance(exc, RunNotFoundError):
        return error_answer(
            request,
            404,
            "run_not_found",
            f"no run matches {exc.ref!r} in this store",
            "Run not found",
            f"There is no run “{exc.ref}” in this store.",
        )
    if isinstance(exc, AssetNotFoundError):
        return json_error(404, "asset_not_found", str(exc))
    if isinstance(exc, ArtifactNotFoundError):
        return json_error(404, "artifact_not_found", str(exc))
    if isinstance(exc, (InvalidPathError, InvalidAssetNameError)):
        return json_error(400, "invalid_path", str(exc))
    print(f"amltrack ui: {request.url.path}: {exc}", file=sys.stderr)
    return error_answer(
        request, 500, "store_error", str(exc), "The store could not be read", "The UI's log says why."
    )


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {404: "no such URL", 405: "this URL does not take that method"}
    text = {
        404: f"There is no page at {request.url.path}.",
        405: f"The page at {request.url.path} cannot be asked for with {request.method}.",
    }
    title = {404: "Page not found", 405: "Not allowed"}
    return error_answer(
        request,
        exc.status_code,
        codes.get(exc.status_code, "invalid_request"),
        message.get(exc.status_code, str(exc.detail)),
        title.get(exc.status_code, "Bad request"),
        text.get(exc.status_code, str(exc.detail)),
    )


async def on_internal_error(request: Request, exc: Exception) -> Response:
    traceback.print_exception(exc, file=sys.stderr)
    return error_answer(
        request,
        500,
        "internal_error",
        f"the UI failed: {type(exc).__name__}: {exc}",
        "Something went wrong",
        "The UI failed while answering; its log says why.",
    )


def safe(v: Any) -> Any:
    """NaN and infinities as the strings the metrics files use, so the answer is standard JSON."""
    if type(v) is float and not math.isfinite(v):
        return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    if type(v) is list:
        return [safe(x) for x in v]
    if type(v) is dict:
        return {k: safe(x) for k, x in v.items()}
    return v


def answer(request: Request, obj: Any, *, etag: str | bool | None = None, status: int = 200) -> Response:
    """A JSON answer; with ``etag`` (True: a digest of the body), a 304 when the client holds it."""
    headers = {"Cache-Control": "no-cache"}
    body = b""
    if etag is True:
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        etag = hashlib.blake2b(body, digest_size=12).hexdigest()
    if etag:
        etag = f'"{etag}"'
        headers["ETag"] = etag
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
    if not body:
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", f"query parameter {name}={raw!r} is not an integer") from None
    if not lo <= v <= hi:
        raise ApiError(400, "invalid_request", f"query parameter {name}={v} is not between {lo} and {hi}")
    return v


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise ApiError(400, "invalid_request", f"query parameter {name}={raw!r} is not a finite number")
    return v


def _required(request: Request, name: str) -> str:
    v = request.query_params.get(name)
    if not v:
        raise ApiError(400, "invalid_request", f"query parameter {name} is required")
    return v


def _building(progress: Any) -> dict[str, Any] | None:
    return None if progress.done else {"offset": progress.offset, "size": progress.size}


def parse_columns(text: str | None) -> list[_query.Key] | None:
    """``columns=params.lr,metrics.loss``: the keys named, or None when not given."""
    if text is None:
        return None
    return [_query.parse_order(part).key for part in text.split(",") if part.strip()]


def runs_query(request: Request) -> tuple[_query.Node | None, list[str], list[_query.Key] | None]:
    """``q`` (an expression or plain text), ``sort`` (repeatable) and ``columns``, parsed; a 400
    ``invalid_query`` with the parser's one line if one does not parse."""
    try:
        tree = _query.parse_search(request.query_params.get("q") or "")
        sort = request.query_params.getlist("sort")
        _query.parse_orders(sort)
        columns = parse_columns(request.query_params.get("columns"))
    except QueryError as e:
        raise ApiError(400, "invalid_query", str(e)) from None
    return tree, sort, columns


def _differ(rows: list[RunRow], name: str) -> bool:
    first: Any = _ABSENT
    for r in rows:
        v = r.params().get(name, _ABSENT)
        # 32 and "32" are one value, as the query language compares them.
        n = _query.as_number(v)
        key = v if v is _ABSENT else n if n is not None else (type(v).__name__, repr(v))
        if first is _ABSENT:
            first = key
        elif key != first:
            return True
    return False


_ABSENT = object()


def table_keys(rows: list[RunRow]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Every param, metric and tag name among ``rows``, sorted; and the columns a runs table shows by
    default: the params whose values differ between the rows, and the metrics every row has."""
    params: set[str] = set()
    tags: set[str] = set()
    metrics: set[str] = set()
    shared: set[str] | None = None
    for r in rows:
        params.update(r.params())
        tags.update(r.tags())
        names = set(r.metric_names())
        metrics |= names
        shared = names if shared is None else shared & names
    keys = {"params": sorted(params), "metrics": sorted(metrics), "tags": sorted(tags)}
    defaults = {
        "params": [n for n in keys["params"] if _differ(rows, n)],
        "metrics": sorted(shared or ()),
    }
    return keys, defaults


def table_row(row: RunRow, columns: list[_query.Key] | None) -> dict[str, Any]:
    """``run_row()`` with the run's ``params`` and each metric's ``summaries`` (last, min, max,
    count, kind), or only those ``columns`` names."""
    out = run_row(row)
    params = row.params()
    if columns is None:
        out["params"] = safe(params)
        out["summaries"] = safe(row.summaries())
    else:
        wanted = {k.name for k in columns if k.scope == "params"}
        out["params"] = safe({n: v for n, v in params.items() if n in wanted})
        out["summaries"] = safe(
            row.summaries(list(dict.fromkeys(k.name for k in columns if k.scope == "metrics")))
        )
    return out


def run_row(row: RunRow) -> dict[str, Any]:
    """A run as the runs list shows it: cheap, from the store's index of run.json and
    ``Run.listing_summary()``, so that an ended run's row makes no ``Run``."""
    cached = row.listing().get("metrics") or {}
    metrics = {}
    for name, s in list(cached.items())[:ROW_METRICS]:
        if isinstance(s, dict):
            kind = _kinds.BY_NAME.get(s.get("kind"))  # type: ignore[arg-type]
            brief = kind.brief(s.get("length")) if kind is not None else None
            metrics[name] = safe(s.get("last")) if brief is None else brief
    info = row.info
    return {
        "id": row.id,
        "short_id": short_id(row.id),
        "experiment": row.attr("experiment"),
        "name": row.attr("name"),
        "status": row.status,
        "created": row.attr("created"),
        "ended": row.attr("ended"),
        "duration_s": row.attr("duration"),
        "user": info.get("user"),
        "hostname": info.get("hostname"),
        "tags": safe(row.tags()),
        "metric_count": len(cached),
        "metrics": metrics,
    }


class Api:
    """The route handlers over one store. Handlers are plain functions: Starlette runs them in its
    thread pool, so file reads never block the event loop."""

    def __init__(self, store: Store, *, show_store: bool = True) -> None:
        self.store = store
        self.show_store = show_store  # the store's path in /api/health, which needs no auth
        self.caches = Caches()
        self.warmer = Warmer(store, self.caches)  # started by the serving process, not by tests' apps
        self._ordered: dict[tuple[str, str, int, int, bool], bool] = {}

    def _run(self, ref: str) -> Run:
        return self.store.run(ref)

    def _cache(self, run: Run) -> SeriesCache:
        return self.caches.get(run.dir)

    # ------------------------------------------------------------------ runs

    def health(self, request: Request) -> Response:
        return answer(
            request,
            {
                "ui": API_VERSION,
                "version": __version__,
                "store": str(self.store.path) if self.show_store else None,
                "charts": plotly_available(),
            },
        )

    def runs(self, request: Request) -> Response:
        """The runs list: filtered by ``experiment``, ``status`` and ``q`` (an expression of
        docs/query.md, or plain text), sorted by ``sort`` (repeatable), cut to ``offset`` and
        ``limit`` (0: all), each row with its params and metric summaries (only ``columns``'s if
        given), and the names and default columns of the table over every run that matched."""
        experiment = request.query_params.get("experiment") or None
        status = request.query_params.get("status") or None
        if status is not None and status not in fmt.STATUSES:
            raise ApiError(
                400, "invalid_request", f"status {status!r} is not one of {', '.join(fmt.STATUSES)}"
            )
        tree, sort, columns = runs_query(request)
        offset = _int(request, "offset", 0, 0, 2**31)
        limit = _int(request, "limit", 0, 0, 2**31)
        listed = self.store.select(experiment=experiment, status=status)
        test = _query.matcher(tree)
        matched = [r for r in listed if test(r)]
        if sort:
            matched = _query.sort(matched, _query.parse_orders(sort), lambda r: r)
        page = matched[offset : offset + limit] if limit else matched[offset:]
        rows = [table_row(r, columns) for r in page]
        self.store.save_index()  # the metric ranges the rows just read
        keys, defaults = table_keys(matched)
        body = {
            "runs": rows,
            "experiments": sorted({r.attr("experiment") for r in listed}),
            "statuses": list(fmt.STATUSES),
            "total": len(matched),
            "offset": offset,
            "limit": limit,
            "keys": keys,
            "defaults": defaults,
        }
        return answer(request, body, etag=True)

    def run(self, request: Request) -> Response:
        run = self._run(request.path_params["ref"])
        info = dict(run.info)
        info["status"] = run.status
        info["duration_s"] = run.duration()
        info["id"] = run.id
        info["short_id"] = short_id(run.id)
        artifacts = [
            {k: a.get(k) for k in ("path", "size", "status", "reason", "source", "time", "sha256", "kept")}
            for a in run.artifacts()
        ]
        body = {
            "run": safe(info),
            "artifacts": artifacts,
            "cursor": self._cursor(run, self._cache(run).index()),
        }
        return answer(request, body)

    # ------------------------------------------------------------------ metrics

    def metrics(self, request: Request) -> Response:
        """Every metric of the run with its counts by kind; ``building`` while the cache catches up."""
        run = self._run(request.path_params["ref"])
        cache = self._cache(run)
        progress = cache.update(time.monotonic() + WAIT)
        idx = cache.index()
        metrics = [
            {
                "name": name,
                **{
                    k: m[k]
                    for k in ("numbers", "bools", "nonfinite", "strings", "lists", "media", "last_step")
                },
            }
            for name, m in sorted(idx["metrics"].items(), key=lambda kv: kv[1]["id"])
        ]
        body = {
            "run": run.id,
            "metrics": metrics,
            "building": _building(progress),
            "skipped": idx["skipped"],
            "cursor": self._cursor(run, idx),
        }
        return answer(request, body, status=200 if progress.done else 202)

    def series(self, request: Request) -> Response:
        """One metric's numbers, downsampled to ``width`` and cut to steps ``x0``..``x1`` if given.

        While the cache is still catching up (a first view of a large run, or a run that logs faster
        than the cache reads), the answer holds what it has so far and says how far it got.
        """
        run = self._run(request.path_params["ref"])
        name = _required(request, "name")
        width = _int(request, "width", 800, 1, 100_000)
        x0, x1 = _float(request, "x0"), _float(request, "x1")
        xaxis = request.query_params.get("xaxis") or "step"
        if xaxis not in XAXES:
            raise ApiError(
                400, "invalid_request", f"query parameter xaxis={xaxis!r} is not one of {', '.join(XAXES)}"
            )
        cache = self._cache(run)
        progress = cache.update(time.monotonic() + WAIT)
        idx = cache.index()
        m = idx["metrics"].get(name)
        if m is None:
            if not progress.done:
                return answer(request, {"name": name, "building": _building(progress)}, status=202)
            raise ApiError(404, "metric_not_found", f"run {run.id} has no metric {name!r}")
        width = _series.clamp_width(width)
        etag = f"{idx['gen']}-{m['id']}-{m['numbers']}-{width}-{x0}-{x1}-{xaxis}-{int(progress.done)}"
        if request.headers.get("if-none-match") == f'"{etag}"':
            return answer(request, None, etag=etag)
        nums = cache.numbers(name, idx)
        if nums is None:
            body: dict[str, Any] = {"name": name, "count": 0, "x": [], "y": [], "downsampled": False}
            return answer(request, body, etag=etag)
        extra: dict[str, Any] = {"xaxis": xaxis}
        if xaxis == "step":
            where = _series.window(nums.steps, x0, x1, ordered=nums.ordered)
            steps, values = nums.steps[where], nums.values[where]
            keep = _series.pick(values, width, all_finite=nums.all_finite)
            xs = np.asarray(steps[keep])
        else:
            # Over time the x column is the timestamps (relative: less the run's start), and the
            # steps ride along for the hover. The same min/max points, the same window search.
            t0 = self._start(run, nums) if xaxis == "relative" else 0.0
            lo, hi = (None if v is None else v + t0 for v in (x0, x1))
            ordered = x0 is None and x1 is None or self._stamps_ordered(run, idx, m, nums)
            where = _series.window(nums.timestamps, lo, hi, ordered=ordered)
            steps, values = nums.steps[where], nums.values[where]
            keep = _series.pick(values, width, all_finite=nums.all_finite)
            xs = np.asarray(nums.timestamps[where][keep]) - t0
            extra["steps"] = np.asarray(steps[keep])
            extra["t0"] = t0 if xaxis == "relative" else None
        ys = np.asarray(values[keep])
        body = {
            "name": name,
            "count": len(nums.steps),
            "in_range": len(steps),
            "shown": len(xs),
            "downsampled": len(steps) > 2 * width,
            "bools": nums.all_bool,
            "nonfinite": m["nonfinite"],
            "first_step": int(nums.steps[0]),
            "last_step": int(nums.steps[-1]),
            "last": safe(float(nums.values[-1])),
            "building": _building(progress),
            **extra,
            "x": xs,
            "y": ys,
        }
        return answer(request, body, etag=etag)

    @staticmethod
    def _start(run: Run, nums: Any) -> float:
        """The run's start in seconds since the epoch (``created_ts``), else its metric's first time."""
        start = run.info.get("created_ts")
        if isinstance(start, (int, float)) and math.isfinite(start):
            return float(start)
        return float(nums.timestamps[0])

    def _stamps_ordered(self, run: Run, idx: dict[str, Any], m: dict[str, Any], nums: Any) -> bool:
        """Whether a metric's timestamps never decrease (a clock set back breaks it): one pass over
        the column per count, remembered, so a zoom over time stays a binary search."""
        key = (str(run.dir), idx["gen"], m["id"], m["numbers"], bool(idx["multi"]))
        known = self._ordered.get(key)
        if known is None:
            ts = nums.timestamps
            known = bool(np.all(ts[1:] >= ts[:-1]))
            if len(self._ordered) > 1000:
                self._ordered.clear()
            self._ordered[key] = known
        return known

    def lists(self, request: Request) -> Response:
        """One record of a list metric (``index``, negative from the end), downsampled by position."""
        run = self._run(request.path_params["ref"])
        name = _required(request, "name")
        index = _int(request, "index", -1, -(2**62), 2**62)
        width = _int(request, "width", 800, 1, 100_000)
        cache = self._cache(run)
        cache.update(time.monotonic() + WAIT)
        idx = cache.index()
        m = idx["metrics"].get(name)
        count = m["lists"] if m else 0
        if not count:
            raise ApiError(404, "metric_not_found", f"run {run.id} has no list metric {name!r}")
        i = index + count if index < 0 else index
        if not 0 <= i < count:
            raise ApiError(
                400, "invalid_request", f"index {index} is outside the {count} records of {name!r}"
            )
        ((step, value, ts),) = cache.records(name, "list", i, i + 1)
        y = np.asarray(value, dtype=np.float64)
        xs, ys = _series.downsample(np.arange(len(y)), y, width)
        body = {
            "name": name,
            "count": count,
            "index": i,
            "step": step,
            "ts": ts,
            "length": len(y),
            "downsampled": len(xs) < len(y),
            "x": xs,
            "y": ys,
        }
        return answer(request, body, etag=f"{idx['gen']}-{m['id']}-{count}-{i}-{width}")

    def media(self, request: Request) -> Response:
        """Records ``start:stop`` (slice bounds, negative from the end) of an image, table,
        histogram or confusion matrix metric: each one's step, time and value as in metrics.jsonl."""
        run = self._run(request.path_params["ref"])
        name = _required(request, "name")
        start = _int(request, "start", 0, -(2**62), 2**62)
        stop = _int(request, "stop", 2**62, -(2**62), 2**62)
        cache = self._cache(run)
        cache.update(time.monotonic() + WAIT)
        idx = cache.index()
        m = idx["metrics"].get(name)
        count = m["media"] if m else 0
        if not count:
            raise ApiError(
                404, "metric_not_found", f"run {run.id} has no image, table or histogram metric {name!r}"
            )
        a, b, _ = slice(start, stop).indices(count)
        if b - a > MAX_MEDIA_RECORDS:
            raise ApiError(
                400,
                "invalid_request",
                f"{b - a} records asked for; ask for {MAX_MEDIA_RECORDS} at most at a time",
            )
        records = [
            {"step": st, "ts": ts, "value": safe(v)} for st, v, ts in cache.records(name, "media", a, b)
        ]
        body = {"name": name, "count": count, "start": a, "records": records}
        return answer(request, body, etag=f"{idx['gen']}-{m['id']}-{count}-{a}-{b}")

    def media_file(self, request: Request) -> Response:
        """An image or table file of ``log_image`` or ``log_table`` (under ``media/``), shown inline
        with its own type: a PNG, a JPEG or JSON, which a page may show but never run."""
        run = self._run(request.path_params["ref"])
        path = fmt.check_artifact_path(request.path_params["path"])
        kind = next((t for suffix, t in MEDIA_TYPES.items() if path.endswith(suffix)), None)
        if not path.startswith(fmt.MEDIA_DIR + "/") or kind is None:
            raise ArtifactNotFoundError(path, run.id)
        try:
            f = open_beneath(run.dir, f"{fmt.ARTIFACTS_DIR}/{path}")
        except OSError:
            raise ArtifactNotFoundError(path, run.id) from None
        with f:
            data = f.read()
        # A media file's path is never reused (it holds the record's seq): a browser may keep it.
        headers = {**DOWNLOAD_HEADERS, "Cache-Control": "private, max-age=86400"}
        return Response(data, media_type=kind, headers=headers)

    def strings(self, request: Request) -> Response:
        """The last ``limit`` records of each string metric."""
        run = self._run(request.path_params["ref"])
        limit = _int(request, "limit", 100, 1, MAX_STRINGS)
        cache = self._cache(run)
        cache.update(time.monotonic() + WAIT)
        idx = cache.index()
        out = []
        for name, m in sorted(idx["metrics"].items(), key=lambda kv: kv[1]["id"]):
            if m["strings"]:
                rows = cache.records(name, "str", max(0, m["strings"] - limit), m["strings"])
                out.append(
                    {
                        "name": name,
                        "count": m["strings"],
                        "rows": [{"step": s, "value": v, "ts": t} for s, v, t in rows],
                    }
                )
        return answer(request, {"strings": out})

    def poll(self, request: Request) -> Response:
        """What changed since ``cursor``: the live view's one request a second."""
        run = self._run(request.path_params["ref"])
        cache = self._cache(run)
        before = request.query_params.get("cursor")
        quick = self._cursor(run, cache.index())
        if quick == before and not self._has_new_bytes(run, cache):
            return answer(request, {**self._live(run), "changed": False, "cursor": before})
        progress = cache.update(time.monotonic() + WAIT)
        run.reload()
        idx = cache.index()
        cursor = self._cursor(run, idx)
        counts = {
            name: {k: m[k] for k in ("numbers", "strings", "lists", "media")}
            for name, m in idx["metrics"].items()
        }
        return answer(
            request,
            {
                **self._live(run),
                "changed": cursor != before,
                "cursor": cursor,
                "counts": counts,
                "building": _building(progress),
            },
        )

    @staticmethod
    def _live(run: Run) -> dict[str, Any]:
        return {"status": run.status, "ended": run.ended, "duration_s": run.duration()}

    @staticmethod
    def _has_new_bytes(run: Run, cache: SeriesCache) -> bool:
        try:
            size = (run.dir / fmt.METRICS_FILE).stat().st_size
        except FileNotFoundError:
            size = 0
        return size > cache.index()["offset"]

    @staticmethod
    def _cursor(run: Run, idx: dict[str, Any]) -> str:
        """Changes whenever new metrics are consumed, run.json is replaced or the manifest grows."""
        stamps = []
        for name in (fmt.RUN_FILE, fmt.MANIFEST_FILE):
            try:
                st = (run.dir / name).stat()
                stamps.append(f"{st.st_mtime_ns:x}-{st.st_size:x}")
            except FileNotFoundError:
                stamps.append("0")
        return f"{idx['gen'] or '0'}.{idx['offset']:x}.{stamps[0]}.{stamps[1]}"

    # ------------------------------------------------------------------ files

    def _artifact(self, request: Request) -> tuple[Run, str]:
        """The run and the checked path of an artifact that may be sent (``ArtifactNotFoundError``)."""
        run = self._run(request.path_params["ref"])
        path = fmt.check_artifact_path(request.path_params["path"])
        entry = next((a for a in run.artifacts() if a.get("path") == path), None)
        # A file deleted from outputs/ whose last copy the mirror kept is still there to download.
        if entry is None or not (entry.get("status") == "stored" or entry.get("kept") is True):
            raise ArtifactNotFoundError(path, run.id)
        return run, path

    def artifact(self, request: Request) -> Response:
        """An artifact's bytes, always as a download."""
        run, path = self._artifact(request)
        return download(run.dir, f"{fmt.ARTIFACTS_DIR}/{path}", lambda: ArtifactNotFoundError(path, run.id))

    def preview(self, request: Request) -> Response:
        """What the run page shows of an artifact: its text, pretty JSON, CSV rows, or that it is an
        image (drawn from the image route); ``kind`` ``none`` when it can only be downloaded."""
        run, path = self._artifact(request)
        with open_artifact(run.dir, path, lambda: ArtifactNotFoundError(path, run.id)) as f:
            body = _preview.preview(path, f, os.fstat(f.fileno()).st_size)
        return answer(request, {"path": path, **body})

    def image(self, request: Request) -> Response:
        """An image artifact's bytes typed as the image its first bytes show, for ``<img>``: still
        an attachment (a browser that navigates to it saves it) under a sandbox policy."""
        run, path = self._artifact(request)
        f = open_artifact(run.dir, path, lambda: ArtifactNotFoundError(path, run.id))
        kind, media = _preview.sniff(path, f.read(_preview.SNIFF_BYTES))
        if kind != "image" or media is None:
            f.close()
            raise ApiError(
                400, "invalid_request", f"artifact {path!r} is not an image the UI shows; download it instead"
            )
        f.seek(0)
        return send_file(f, path, media)

    def assets(self, request: Request) -> Response:
        by_name: dict[str, list[dict[str, Any]]] = {}
        for a in _assets.list_assets(self.store):
            info = a.to_json()
            by_name.setdefault(a.name, []).append(
                {
                    "version": a.version,
                    "ref": a.ref,
                    "source_run": info.get("source_run"),
                    "experiment": info.get("experiment"),
                    "prefix": info.get("prefix"),
                    "created": info.get("created"),
                    "size": a.size,
                    "files": [
                        {"path": f.get("path"), "size": f.get("size"), "sha256": f.get("sha256")}
                        for f in a.files
                    ],
                }
            )
        body = {"assets": [{"name": n, "versions": v} for n, v in sorted(by_name.items())]}
        return answer(request, body)

    def asset_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        version = request.path_params["version"]
        asset = _assets.get(self.store, f"{name}:{version}")
        path = fmt.check_artifact_path(request.path_params["path"])
        if not any(f.get("path") == path for f in asset.files):
            raise AssetNotFoundError(asset.ref, self.store.path, path)
        return download(
            asset.dir,
            f"{_assets.FILES_DIR}/{path}",
            lambda: AssetNotFoundError(asset.ref, self.store.path, path),
        )


def open_artifact(run_dir: Path, path: str, missing: Any) -> BinaryIO:
    return open_file(run_dir, f"{fmt.ARTIFACTS_DIR}/{path}", missing)


def open_file(base: Path, rel: str, missing: Any) -> BinaryIO:
    """``base/rel`` open, if it is a plain file reached through no symlink (the one opener of
    artifacts, ``open_beneath``: ``artifacts/`` itself may not be a link either)."""
    try:
        return open_beneath(base, rel)
    except OSError:  # missing, a folder, a link, a FIFO: nothing this route serves
        raise missing() from None


def download(base: Path, rel: str, missing: Any) -> Response:
    """``base/rel`` as an attachment (``open_file``'s rules)."""
    return send_file(open_file(base, rel, missing), rel, "application/octet-stream")


def send_file(f: BinaryIO, rel: str, media: str) -> Response:
    """The open file ``f`` from where it stands, as an attachment named as ``rel``'s last part,
    typed ``media`` (octet-stream but for an image the image route has sniffed)."""
    size = os.fstat(f.fileno()).st_size - f.tell()
    name = os.path.basename(rel)
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    headers = {
        **DOWNLOAD_HEADERS,
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}",
    }
    headers["Content-Length"] = str(size)

    def blocks() -> Iterator[bytes]:
        with f:  # the bytes of the file opened, whatever its name points to meanwhile
            left = size
            while left > 0 and (block := f.read(min(left, 1 << 20))):
                left -= len(block)
                yield block

    return StreamingResponse(blocks(), media_type=media, headers=headers)
