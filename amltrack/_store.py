"""The store: where runs live, how to find one, and the read API over a run's plain files."""

from __future__ import annotations

import errno
import functools
import gc
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, Protocol, overload

import orjson

from . import _env, _kinds, _records
from . import _format as fmt
from ._columns import Columns, read_segments
from ._errors import (
    AmbiguousRunError,
    ArtifactNotFoundError,
    MetricNotFoundError,
    MissingExtraError,
    RefusedFileError,
    RunNotFoundError,
    StoreError,
)
from ._metadata import pid_alive
from ._summary import describe, number_range

if TYPE_CHECKING:
    # Imported where a listing filters or sorts: its parser costs every training process's
    # get_logger() several milliseconds of import for nothing.
    from . import _query


def short_id(run_id: str) -> str:
    """The id tables show: the first 8 hex digits of the random part, which ``Store.run`` accepts.

    short_id("20261206T101010123-0123456789abcdef") == "01234567"
    """
    _, sep, random_part = run_id.partition("-")
    return random_part[:8] if sep and len(random_part) >= 8 else run_id


class AmbiguousRunNameError(AmbiguousRunError):
    """Several runs bear the run name given as a reference; the message lists their short ids."""

    def __init__(self, ref: str, matches: list[str]) -> None:
        super().__init__(ref, matches)
        shown = ", ".join(short_id(m) for m in matches[:5]) + (" ..." if len(matches) > 5 else "")
        self.args = (f"run name {ref!r} is shared by {len(matches)} runs ({shown}); give one of their ids",)


# A running run whose heartbeat is older than this, and whose process cannot be checked (another
# host), reads as crashed. Live writers beat every 10 s.
CRASH_AFTER = 120.0
KEPT_REPAIRS = 100  # crashed runs' repaired summaries a runs list writes back (Store._may_keep_repair)


def find_store(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$AMLTRACK_STORE``, else the nearest ``.amltrack/`` upwards, else ``./.amltrack``."""
    if path is not None:
        return Path(path).expanduser().absolute()
    env = os.environ.get(_env.STORE)
    if env:
        return Path(env).expanduser().absolute()
    cwd = Path.cwd()
    for d in (cwd, *cwd.parents):
        candidate = d / fmt.STORE_DIRNAME
        if candidate.is_dir():
            return candidate
    return cwd / fmt.STORE_DIRNAME


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_WALK_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (it is refused after).
_LEAF_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_DIR_FD = bool(_NOFOLLOW) and os.open in os.supports_dir_fd


def open_beneath(base: Path, rel: str) -> BinaryIO:
    """``base/rel`` open for reading, reached without following a symlink anywhere in ``rel``.

    The one way amltrack opens a run's artifact or an asset's file (``base`` is the run's or the
    asset's folder, ``rel`` e.g. ``artifacts/plots/loss.png``). Each part of ``rel`` is opened inside
    the folder opened before it with O_NOFOLLOW, so a link in any part - to a file or to a folder,
    pointing out of the run or inside it - raises RefusedFileError, and no link swapped in between a
    check and the open can slip through, as the open is the check. A FIFO, a device or a socket is
    refused too. ``base`` itself is opened as it is: a store may live behind a link.
    FileNotFoundError if a part is missing or a file stands where a folder should be;
    IsADirectoryError if ``rel`` names a folder.

        with open_beneath(run.dir, "artifacts/model.bin") as f:
            head = f.read(16)
    """
    parts = rel.split("/")
    if not _DIR_FD:  # pragma: no cover - no openat() (Windows): check each part, then open
        return _open_checked(base, parts)
    fd = os.open(base, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    try:
        for i, name in enumerate(parts):
            leaf = i == len(parts) - 1
            try:
                child = os.open(name, _LEAF_FLAGS if leaf else _WALK_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
                    raise
                _refuse(base.joinpath(*parts[: i + 1]), os.stat(name, dir_fd=fd, follow_symlinks=False), leaf)
                raise
            os.close(fd)
            fd = child
        st = os.fstat(fd)
        _refuse(base.joinpath(*parts), st, leaf=True)
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
        fd = -1
        return f
    finally:
        if fd >= 0:
            os.close(fd)


def _refuse(where: Path, st: os.stat_result, leaf: bool) -> None:
    """Raise what a part of a path that is not a plain folder (or, at the end, a plain file) means."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise RefusedFileError(where, "it is a symlink")
    if stat.S_ISDIR(mode):
        if leaf:
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(where))
        return
    if not leaf:
        raise FileNotFoundError(errno.ENOTDIR, "a file stands where a folder should be", str(where))
    if not stat.S_ISREG(mode):
        raise RefusedFileError(where, "it is not a regular file (a FIFO, a device or a socket)")


def _open_checked(base: Path, parts: list[str]) -> BinaryIO:  # pragma: no cover - Windows
    path = base
    for i, name in enumerate(parts):
        path = path / name
        _refuse(path, os.lstat(path), leaf=i == len(parts) - 1)
    return open(path, "rb")


def _check_schema(root: Path) -> None:
    try:
        meta = fmt.read_json(root / fmt.STORE_FILE)
    except FileNotFoundError:
        return
    schema = meta.get("schema")
    if isinstance(schema, int) and schema > fmt.SCHEMA_VERSION:
        raise StoreError(
            f"store {root} has schema version {schema}, newer than this amltrack reads "
            f"({fmt.SCHEMA_VERSION}); upgrade amltrack"
        )


def create_store(root: Path) -> None:
    (root / fmt.RUNS_DIR).mkdir(parents=True, exist_ok=True)
    if not (root / fmt.STORE_FILE).exists():
        fmt.write_json_atomic(
            root / fmt.STORE_FILE, {"schema": fmt.SCHEMA_VERSION, "created": fmt.utc_iso(time.time())}
        )
    else:
        _check_schema(root)


class Point(NamedTuple):
    """One logged value: ``step``, ``value`` and ``timestamp`` (Unix seconds)."""

    step: int
    value: Any
    timestamp: float


_point = tuple.__new__
_make_point = functools.partial(tuple.__new__, Point)


class Metric(_records.Series, Sequence[Point]):
    """A metric's points in call order, kept as columns; indexing and iterating give Points.

        loss = run.metric("loss")
        loss[-1].value, loss.values[:3], loss.to_pandas().tail()

    ``steps``, ``values`` and ``timestamps`` are plain lists: the cheap way through a long series.
    It is the decoder's ``Series`` (amltrack/_records.py) with the read API around it.
    """

    __slots__ = ()

    @overload
    def __getitem__(self, i: int) -> Point: ...
    @overload
    def __getitem__(self, i: slice) -> Metric: ...

    def __getitem__(self, i: int | slice) -> Point | Metric:
        if isinstance(i, slice):
            return Metric(self.name, self.steps[i], self.values[i], self.timestamps[i])
        return _point(Point, (self.steps[i], self.values[i], self.timestamps[i]))

    def __iter__(self) -> Iterator[Point]:
        return map(_make_point, zip(self.steps, self.values, self.timestamps))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metric):
            return (self.name, self.steps, self.values, self.timestamps) == (
                other.name,
                other.steps,
                other.values,
                other.timestamps,
            )
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def append(self, point: Point | tuple[int, Any, float]) -> None:
        step, value, ts = point
        self.steps.append(step)
        self.values.append(value)
        self.timestamps.append(ts)

    def to_pandas(self) -> Any:
        """A pandas DataFrame with columns step, value and timestamp (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("Metric.to_pandas() needs pandas: pip install pandas") from e
        return pd.DataFrame(
            {
                "step": self.steps,
                "value": self.values,
                "timestamp": pd.to_datetime(self.timestamps, unit="s", utc=True),
            }
        )

    def __repr__(self) -> str:
        return f"Metric({self.name!r}, {len(self)} points)"


class Run:
    """A run in a store, read from its files. Get one from ``Store.run()``, ``Store.runs()`` or ``last()``."""

    def __init__(self, store: Store, run_dir: Path, info: dict[str, Any] | None = None) -> None:
        self.store = store
        self.dir = run_dir
        self.id = run_dir.name
        self._info = info
        self._listed: dict[str, Any] | None = None  # listing_summary(), once per reload()
        self.skipped = 0  # lines skipped by the last read of metrics or manifest

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.experiment!r} {self.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    @property
    def info(self) -> dict[str, Any]:
        """The run's metadata (``run.json``) as a dict."""
        if self._info is None:
            self._info = self._read_info()
        return self._info

    def _read_info(self) -> dict[str, Any]:
        try:
            return fmt.read_run_info(self.dir)[1]
        except FileNotFoundError:
            raise StoreError(
                f"run directory {self.dir} has no {fmt.RUN_FILE}; it is not a run, or it was cut "
                "short while being created: delete it"
            ) from None

    def reload(self) -> Run:
        """Re-read ``run.json`` (status and end time change while a run is live)."""
        self._info = None
        self._listed = None
        return self

    def _field(self, key: str, kind: type, default: Any) -> Any:
        v = self.info.get(key)
        return v if isinstance(v, kind) else default

    @property
    def experiment(self) -> str:
        return self._field("experiment", str, None) or "default"

    @property
    def name(self) -> str | None:
        return self._field("name", str, None)

    @property
    def tags(self) -> dict[str, Any]:
        return dict(self._field("tags", dict, {}))

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._field("params", dict, {}))

    @property
    def status(self) -> str:
        """running, completed, failed, killed, or crashed: running on file but its process is gone."""
        info = self.info
        status = info.get("status")
        if not isinstance(status, str) or status not in fmt.STATUSES:
            return "unknown"  # a damaged run.json: say so rather than guess
        if status != "running":
            return status
        return "running" if self._owner_alive(info) else "crashed"

    def _owner_alive(self, info: dict[str, Any]) -> bool:
        return owner_alive(info, lambda: self.cached_summary().get("heartbeat"))

    @property
    def segments(self) -> list[dict[str, Any]]:
        """Each attempt of the run, oldest first: ``start``, ``end`` (and ``start_ts``, ``end_ts``),
        ``host``, ``pid`` and ``status``. A run resumed after a crash has several; the last one's
        status is the run's. A run never resumed reads as the one attempt its own fields describe.

            [s["status"] for s in run.segments]     # ['crashed', 'completed']
        """
        info = self.info
        segments = info.get("segments")
        if isinstance(segments, list) and segments and all(isinstance(s, dict) for s in segments):
            out = [dict(s) for s in segments]
        else:
            out = [
                {
                    "start": info.get("created"),
                    "start_ts": info.get("created_ts"),
                    "end": info.get("ended"),
                    "end_ts": info.get("ended_ts"),
                    "host": info.get("hostname"),
                    "pid": info.get("pid"),
                    "status": info.get("status"),
                }
            ]
        out[-1]["status"] = self.status  # "crashed" is a reader's verdict, never on file
        return out

    @property
    def created(self) -> str | None:
        return self._field("created", str, None)

    @property
    def ended(self) -> str | None:
        return self._field("ended", str, None)

    def duration(self) -> float | None:
        """Seconds from creation to end, or to now (running), or for a crashed run to its last sign
        of life: its last heartbeat or its last record, whichever is later."""
        start = self.info.get("created_ts")
        if not isinstance(start, (int, float)):
            return None
        end = self.info.get("ended_ts")
        if not isinstance(end, (int, float)):
            if self.status == "running":
                end = time.time()
            else:
                summary = self.listing_summary()
                signs = [summary.get("heartbeat")]
                signs += [m.get("ts") for m in summary.get("metrics", {}).values()]
                ends = [t for t in signs if isinstance(t, (int, float))]
                if not ends:
                    return None
                end = max(ends)
        return max(0.0, end - start)

    # ----------------------------------------------------------------- metrics

    def cached_summary(self) -> dict[str, Any]:
        """The small ``summary.json`` kept up to date while the run logs: cheap, for listings.

        Only what has the documented shape: a damaged cache costs the run these figures, which
        ``summary()`` computes from metrics.jsonl anyway, never the listing it is read for."""
        try:
            return fmt.clean_summary(fmt.read_json(self.dir / fmt.SUMMARY_FILE))
        except (FileNotFoundError, StoreError):
            return {}

    def listing_summary(self) -> dict[str, Any]:
        """The figures a runs list shows: ``cached_summary()``, brought up to date for a crashed run.

        The one source of a run's row in ``amltrack history list``, the web UI's runs list and the
        server's history. A writer rewrites summary.json at most once a second, so a crash can
        leave it behind metrics.jsonl; summary.json's ``offsets`` say where each process's
        uncounted records start, so only the records after them are read, never the whole file.
        The repair is written back once no process of the run has beaten for CRASH_AFTER seconds,
        where the store may be written; otherwise it is made again at each listing, in memory.

            for run in store.runs(status="crashed"):
                print(run.id, run.listing_summary().get("metrics"))
        """
        if self._listed is None:
            self._listed = self._listing_summary()
        return self._listed

    def _listing_summary(self) -> dict[str, Any]:
        summary = self.cached_summary()
        if self.status != "crashed":
            return summary  # a live writer keeps it, and an ended one wrote its last figures
        path = self.dir / fmt.METRICS_FILE
        try:
            st = path.stat()
        except OSError:
            return summary
        offsets = summary.get("offsets")
        if isinstance(offsets, dict) and fmt.OWN_WRITER in offsets:
            base = summary
            start = min(offsets.values())
            if st.st_size <= start:
                return summary
        else:
            # Written by an amltrack that kept no offsets: its figures are behind if the metrics
            # changed after its last heartbeat, and then all of the file is counted anew, once.
            beat = summary.get("heartbeat")
            if isinstance(beat, (int, float)) and st.st_mtime <= beat:
                return summary
            base = {k: v for k, v in summary.items() if k not in ("metrics", "records", "offsets")}
            offsets, start = {}, 0
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(st.st_size - start)  # what a writer adds meanwhile waits for the next look
        except OSError:
            return summary
        delta, points, writers, end = _count_tail(data, start, offsets, str(path))
        covered = dict.fromkeys([*offsets, fmt.OWN_WRITER, *writers], end)
        repaired = fmt.merge_summary(base, delta, points, covered, None)
        repaired["metrics"] = dict(sorted(repaired["metrics"].items()))  # by name, as written
        self._keep_repair(summary, repaired)
        return fmt.clean_summary(repaired)

    def _keep_repair(self, seen: dict[str, Any], repaired: dict[str, Any]) -> None:
        """Write ``repaired`` over summary.json, which held ``seen``, if no writer of the run may be
        live and the store may be written; a repair that cannot be kept is only not kept."""
        beat = seen.get("heartbeat")
        if isinstance(beat, (int, float)) and time.time() - beat < CRASH_AFTER:
            # Another process may have joined the run and still hold records it wrote but has not
            # merged: counting them here too would count them twice. Live writers beat every 10 s.
            return
        if not os.access(self.dir, os.W_OK):
            return  # a read-only store (or file system): spare the attempt
        if not self.store._may_keep_repair():
            return
        from filelock import FileLock  # only for a repair kept, once per crashed run

        try:
            with FileLock(str(self.dir / fmt.SUMMARY_LOCK), timeout=1):
                if self.cached_summary() != seen:
                    return  # a writer or another reader got there first
                # No fsync: a repair lost to a power cut is made again by the next listing, and
                # a thousand fsyncs were most of the first listing of a store of crashed runs.
                fmt.write_json_atomic(self.dir / fmt.SUMMARY_FILE, repaired, fsync=False)
        except OSError:  # a permission, a full disk, the lock's Timeout: the repair stays in memory
            pass

    def _read_metrics(self) -> dict[str, Metric]:
        path = self.dir / fmt.METRICS_FILE
        enabled = gc.isenabled()
        # Millions of small containers make the cyclic collector rescan everything again and again.
        gc.disable()
        try:
            parts: list[dict[str, _records.Series]] = []
            skipped = bad = 0
            try:
                with open(path, "rb") as f:
                    # The writer's index covers the file from its start: columns to copy, and
                    # ranges of rows (log_metrics) to parse. The JSON Lines after it are parsed.
                    segments = read_segments(self.dir, f) or []
                    end = 0
                    for seg in segments:
                        if isinstance(seg, Columns):
                            parts.append(
                                {n: _records.Series(n, *series) for n, series in seg.grouped().items()}
                            )
                            end = seg.end
                        else:
                            f.seek(seg[0])
                            decoded, sk, b = _records.decode(f.read(seg[1] - seg[0]), str(path))
                            parts.append(decoded)
                            skipped, bad, end = skipped + sk, bad + b, seg[1]
                    f.seek(end)
                    data = f.read()
                    if segments and b'"w":' in data:
                        # Another process logged too: merge everything by time, from the JSON Lines.
                        parts, skipped, bad = [], 0, 0
                        f.seek(0)
                        data = f.read()
            except FileNotFoundError:
                self.skipped = 0
                return {}
            except OSError as e:
                raise StoreError(e.errno, f"cannot read {path}: {e.strerror}") from e
            tail, sk, b = _records.decode(data, str(path))
            del data
            series = _records.concat([*parts, tail]) if parts else tail
            out = {n: Metric(n, s.steps, s.values, s.timestamps) for n, s in series.items()}
            for n, s in series.items():
                if s.media:  # images, tables, ...: values that know this run's folder, for their files
                    artifacts = self.dir / fmt.ARTIFACTS_DIR
                    out[n].values = [_kinds.read_value(v, artifacts) for v in s.values]
                    out[n].media = True
        finally:
            if enabled:
                gc.enable()
        skipped, bad = skipped + sk, bad + b
        _records.warn_bad(str(path), bad)
        self.skipped = skipped + bad
        return out

    def metrics(self) -> dict[str, Metric]:
        """Every metric of the run: name to its points (step, value, timestamp) in call order."""
        return self._read_metrics()

    def metric(self, name: str) -> Metric:
        """One metric's points in call order; ``.to_pandas()`` for a DataFrame."""
        m = self._read_metrics().get(name)
        if m is None:
            raise MetricNotFoundError(name, self.id)
        return m

    def _overview(self) -> dict[str, dict[str, Any]]:
        """What ``history info`` shows of each metric (``_summary.describe``); sets ``skipped``."""
        metrics = self._read_metrics()
        return {name: describe(metrics[name]) for name in sorted(metrics)}

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per metric: count, last, and min and max over its numbers (list metrics: over the elements)."""
        out: dict[str, dict[str, Any]] = {}
        for name, metric in self._read_metrics().items():
            lo, hi = number_range(metric.values)
            out[name] = {"count": len(metric), "last": metric.values[-1], "min": lo, "max": hi}
        return out

    # ----------------------------------------------------------------- artifacts

    def artifacts(self) -> list[dict[str, Any]]:
        """The manifest: one entry per artifact path (its latest state), sorted by path."""
        path = self.dir / fmt.MANIFEST_FILE
        records, skipped = fmt.read_jsonl(path)
        latest: dict[str, dict[str, Any]] = {}
        bad = 0
        for r in records:
            if type(r) is not dict or type(r.get("path")) is not str or "status" not in r:
                bad += 1
                continue
            latest[r["path"]] = r
        if bad:
            fmt.warn_once(
                f"{path}:types",
                f"amltrack skipped {bad} entry(ies) with missing or wrong-typed fields in {path} and read "
                "the rest; the file was damaged or edited by hand",
            )
        self.skipped = skipped + bad
        return [latest[p] for p in sorted(latest)]

    def open_artifact(self, path: str) -> BinaryIO:
        """Artifact ``path``'s file, open for reading; RefusedFileError if a symlink is on its way.

        with run.open_artifact("model.bin") as f:
            head = f.read(16)
        """
        fmt.check_artifact_path(path)
        try:
            return open_beneath(self.dir, f"{fmt.ARTIFACTS_DIR}/{path}")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFoundError(path, self.id) from None

    def read_artifact(self, path: str) -> bytes:
        """The stored bytes of artifact ``path``; RefusedFileError if it is reached through a symlink.

        run.read_artifact("notes/config.txt")
        """
        with self.open_artifact(path) as f:
            return f.read()


def _count_tail(
    data: bytes, start: int, offsets: dict[str, int], where: str
) -> tuple[dict[str, fmt.MetricSummary], int, set[str], int]:
    """What the JSON Lines ``data``, read from byte ``start`` of metrics.jsonl, add to a summary
    whose writers have counted their records up to ``offsets`` (a writer not named: none of them).

    Returns the per-metric delta, its number of points, the joined writers seen, and the byte up to
    which every record is now counted. Bytes after the last newline count only if they are a whole
    record: otherwise they are a line torn by the crash, or one still being written.
    """
    cut = data.rfind(b"\n") + 1
    if cut < len(data):
        try:
            whole = type(orjson.loads(data[cut:])) is dict
        except orjson.JSONDecodeError:
            whole = False
        if not whole:
            data = data[:cut]
    if len(set(offsets.values())) <= 1:
        # The common case, one process: every record after its offset is new.
        records, _ = fmt.parse_jsonl(data, where)
    else:
        # Each record is new only after its own writer's offset, which needs its place in the file.
        records = []
        at = start
        for line in data.split(b"\n"):
            here, at = at, at + len(line) + 1
            for r in fmt.parse_jsonl(line, where)[0]:
                w = r.get("w", fmt.OWN_WRITER) if type(r) is dict else None
                if type(w) is not str or here >= offsets.get(w, 0):
                    records.append(r)
    writers = {w for r in records if type(r) is dict and type(w := r.get("w")) is str}
    grouped, bad = _records.group(records, where)
    _records.warn_bad(where, bad)
    delta = {}
    for name, m in grouped.items():
        s = delta[name] = fmt.MetricSummary()
        s.count = len(m)
        ts = m.timestamps
        i = len(ts) - 1 - ts[::-1].index(max(ts))  # the latest by time, the last of equals
        s.latest(m.steps[i], ts[i], m.values[i])
    return delta, sum(map(len, grouped.values())), writers, start + len(data)


def _holds_files(run_dir: Path) -> bool:
    """Whether a run folder holds anything but the hidden temporary file of a run.json being written."""
    try:
        return any(not name.startswith(".") for name in os.listdir(run_dir))
    except OSError:
        return False


class RunSource(Protocol):
    """Where runs are read from: a local ``Store``, or a server's runs (``sync._reader.RemoteReader``).

    The CLI's history commands render either through these three, so a run reads the same wherever
    it is.
    """

    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int = 0,
        *,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
    ) -> Sequence[Run]: ...

    def run(self, ref: str) -> Run: ...

    def last(self) -> Run: ...


class Store:
    """A directory of runs.

    store = amltrack.Store()          # $AMLTRACK_STORE, or the nearest .amltrack/
    for run in store.runs(status="completed"):
        print(run.id, run.summary())
    store.run("2026").metric("loss").to_pandas()
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = find_store(path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store path {self.path} is a file, not a directory; pass a directory")
        _check_schema(self.path)
        self._repairs_left = KEPT_REPAIRS
        self._served: bool | None = None
        self._index: Any = None  # _runindex.RunIndex, made at the first filtered or sorted listing

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _may_keep_repair(self) -> bool:
        """Whether a runs list may write one more crashed run's repaired summary.json.

        Never on a server's store: its summary.json files are what clients pushed, which
        ``sync --verify`` compares byte for byte. Elsewhere at most KEPT_REPAIRS a listing (about
        2.5 ms each, under the summary's lock), so that a first listing of thousands of crashed runs
        stays quick; the rest are repaired in memory, and kept by the listings after it.
        """
        if self._served is None:
            self._served = (self.path / fmt.SERVER_DIR).is_dir()
        if self._served or self._repairs_left <= 0:
            return False
        self._repairs_left -= 1
        return True

    def __str__(self) -> str:
        return str(self.path)

    @property
    def runs_dir(self) -> Path:
        return self.path / fmt.RUNS_DIR

    def run_ids(self) -> list[str]:
        """Every run id in the store, newest first, without reading any run."""
        try:
            names = os.listdir(self.runs_dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted((n for n in names if fmt.is_valid_run_id(n)), reverse=True)

    def _iter_runs(self) -> Iterator[Run]:
        for rid in self.run_ids():
            d = self.runs_dir / rid
            info = self._listed_info(d)
            if info is not None:
                yield Run(self, d, info)

    def _listed_info_of(self, rid: str) -> dict[str, Any] | None:
        return self._listed_info(self.runs_dir / rid)

    def _listed_info(self, d: Path) -> dict[str, Any] | None:
        """Run folder ``d``'s run.json for a listing, or None (with a warning if a run is lost)."""
        lost = False
        try:
            try:
                return fmt.read_run_info(d)[1]
            except FileNotFoundError:
                # An empty folder is a run being created (run.json is its first file); a folder
                # that holds files but no run.json lost it, and its records would vanish unsaid.
                # Files but a run.json on a second look: it landed in between, a run just made.
                lost = _holds_files(d)
                return fmt.read_run_info(d)[1]
        except NotADirectoryError:
            return None  # a stray file, not a run
        except FileNotFoundError:
            if lost:
                fmt.warn_once(
                    str(d),
                    f"amltrack skipped run {d.name}: {d} holds files but no {fmt.RUN_FILE}; "
                    f"restore {fmt.RUN_FILE} from a backup, or delete the folder",
                )
            return None
        except StoreError as e:
            fmt.warn_once(str(d), f"amltrack skipped run {d.name}: {e}")
            return None

    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int = 0,
        *,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
    ) -> list[Run]:
        """Runs newest first, optionally only one experiment's or one status's (crashed included), and
        only the first ``limit`` of them unless it is 0.

        ``filter`` is an expression of the query language (docs/query.md) and ``order_by`` a sort key
        or a list of them, each ``KEY``, ``KEY asc``, ``KEY desc`` or ``-KEY``; runs that lack a key
        sort last, and ties stay newest first. A bad expression raises QueryError naming the column.

            store.runs(filter="params.bs = 32 and status = 'completed'", order_by=["metrics.acc desc"])
        """
        _check_status(status)
        if filter is None and order_by is None:
            return self._plain_runs(experiment, status, limit)
        rows = self.select(experiment, status, filter=filter, order_by=order_by)
        return [r.run for r in (rows[:limit] if limit else rows)]

    def _plain_runs(self, experiment: str | None, status: str | None, limit: int) -> list[Run]:
        out = []
        self._repairs_left = KEPT_REPAIRS
        for run in self._iter_runs():
            if _wanted(run, run.info, experiment, status):
                out.append(run)
                if len(out) == limit:
                    break
        return out

    def select(
        self,
        experiment: str | None = None,
        status: str | None = None,
        *,
        filter: str | _query.Node | None = None,
        order_by: str | Sequence[str] | None = None,
        ranges: bool = False,
    ) -> list[RunRow]:
        """The runs ``runs()`` lists, as ``RunRow``s: each run with its params, tags and metric
        figures (last, min, max, count), read through the store's index (amltrack/_runindex.py).
        ``ranges`` reads every metric's min and max now (else only those the query uses, or when
        asked for).

            for row in store.select(filter="metrics.loss.min < 0.1"):
                print(row.run.id, row.summaries()["loss"]["min"])
        """
        from . import _query

        _check_status(status)
        tree = _query.as_tree(filter)
        orders = _query.parse_orders(order_by)
        used = [*_query.keys_of(tree), *(o.key for o in orders)]
        ranges = ranges or any(k.field in ("min", "max") for k in used)
        from ._runindex import RunIndex

        if self._index is None:
            self._index = RunIndex(self.path)
        index = self._index
        self._repairs_left = KEPT_REPAIRS
        runs_path = self.runs_dir
        runs_dir = str(runs_path)
        with index.lock:
            index.load()
            ids = self.run_ids()
            rows = []
            for rid in ids:
                entry = index.entry(runs_dir, rid, functools.partial(self._listed_info_of, rid))
                if entry is None:
                    continue
                row = RunRow(self, rid, entry, index, runs_path)
                if experiment is not None and row.attr("experiment") != experiment:
                    continue
                if status is not None and row.status != status:
                    continue
                if ranges:
                    row.ranges()
                rows.append(row)
            index.retain(set(ids))
            index.save()
        test = _query.matcher(tree)
        rows = [r for r in rows if test(r)]
        return _query.sort(rows, orders, _identity) if orders else rows

    def save_index(self) -> None:
        """Write the runs index if reading rows changed it (``Store.select()`` writes it itself;
        ``RunRow.summaries()`` read after it may bring metric ranges up to date)."""
        index = self._index
        if index is not None:
            with index.lock:
                index.save()

    def runs_frame(
        self,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> Any:
        """The runs as a pandas DataFrame, one row per run, as ``mlflow.search_runs`` gives them:
        ``run_id``, ``name``, ``experiment``, ``status``, ``user``, ``host``, ``created``, ``ended``,
        ``duration``, ``git.commit``, ``git.branch``, then ``params.X``, ``tags.X``, ``metrics.X``
        (last values) and ``metrics.X.min``/``.max``/``.count``. ``columns`` keeps only the keys
        named (``["params.lr", "metrics.loss.min"]``), after ``run_id``; pandas must be installed.

            df = store.runs_frame(filter="params.bs = 32", order_by="-metrics.acc")
            df[["run_id", "params.lr", "metrics.acc"]].head()
        """
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - depends on the environment
            raise MissingExtraError("Store.runs_frame()", "pandas", "pandas") from None
        from . import _query

        keys = None if columns is None else [_query.parse_order(c).key for c in _as_list(columns)]
        ranges = keys is None or any(k.field in ("min", "max") for k in keys)
        rows = self.select(filter=filter, order_by=order_by, ranges=ranges)
        if keys is None:
            params = sorted({n for r in rows for n in r.params()})
            tags = sorted({n for r in rows for n in r.tags()})
            metrics = sorted({n for r in rows for n in r.summaries()})
            keys = [_query.Key("attributes", a) for a in _query.ATTRIBUTES if a != "id"]
            keys += [_query.Key("params", n) for n in params] + [_query.Key("tags", n) for n in tags]
            keys += [_query.Key("metrics", n, f) for n in metrics for f in _query.FIELDS]
        data: dict[str, list[Any]] = {"run_id": [r.run.id for r in rows]}
        for key in keys:
            get = _query.getter(key)
            data[frame_column(key)] = [get(r) for r in rows]
        frame = pd.DataFrame(data)
        for name in ("created", "ended"):
            if name in frame.columns:
                frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        return frame

    def run(self, ref: str) -> Run:
        """The run that ``ref`` names: ``last``, a run id, a unique prefix of one, a unique prefix of
        its random part (the 16 hex digits after the ``-``; a table's short id is its first 8), or a
        unique run name. Ids and prefixes take precedence over names; a name that several runs bear
        raises AmbiguousRunError listing them.

            store.run("last"); store.run("7f3a9c0d"); store.run("lr=0.05")
        """
        if not isinstance(ref, str) or not ref:
            raise RunNotFoundError(str(ref), self.path)
        if ref == "last":
            return self.last()
        if fmt.is_valid_run_id(ref) and (self.runs_dir / ref / fmt.RUN_FILE).exists():
            return Run(self, self.runs_dir / ref)
        ids = self.run_ids()
        matches = [i for i in ids if i.startswith(ref)]
        if not matches:
            matches = [i for i in ids if "-" in i and i.split("-", 1)[1].startswith(ref)]
        if len(matches) > 1:
            raise AmbiguousRunError(ref, matches)
        if matches:
            return Run(self, self.runs_dir / matches[0])
        # No id starts so: a name, read from each run.json only now, so ids cost no reads.
        named = [run for run in self._iter_runs() if run.name == ref]
        if len(named) > 1:
            raise AmbiguousRunNameError(ref, [r.id for r in named])
        if named:
            return named[0]
        raise RunNotFoundError(ref, self.path)

    def last(self) -> Run:
        """The newest run."""
        for run in self._iter_runs():
            return run
        raise RunNotFoundError("last", self.path)


def owner_alive(info: dict[str, Any], heartbeat: Callable[[], Any]) -> bool:
    """Whether a run on file as running still runs: its process, if it ran on this host, else its
    last heartbeat (summary.json's, asked for only then) or its start, under CRASH_AFTER seconds ago.
    The one rule of "crashed", for the store and the team server alike."""
    host = info.get("hostname")
    pid = info.get("pid")
    if host == socket.gethostname() and isinstance(pid, int):
        start, created = info.get("pid_start"), info.get("pid_created")
        return pid_alive(
            pid,
            start if type(start) is int else None,
            created if type(created) in (int, float) else None,
        )
    beat = heartbeat()
    if not isinstance(beat, (int, float)):
        beat = info.get("created_ts")
    return isinstance(beat, (int, float)) and time.time() - beat < CRASH_AFTER


def row_of(run: Run) -> RunRow:
    """``run`` as a RunRow without the store's index (a server's run, say): its metric ranges are
    read from its metrics when asked for."""
    row = RunRow(run.store, run.id, {"info": run.info}, None)
    row._run = run
    return row


def _check_status(status: str | None) -> None:
    if status is not None and status not in fmt.STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(fmt.STATUSES)}")


def _wanted(run: Run, info: dict[str, Any], experiment: str | None, status: str | None) -> bool:
    if experiment is not None and run.experiment != experiment:
        return False
    if status is not None:
        # Only a run on file as running can be crashed; skip the liveness check otherwise.
        if status in fmt.ENDED_STATUSES and info.get("status") != status:
            return False
        if run.status != status:
            return False
    return True


def _identity(row: RunRow) -> RunRow:
    return row


def _as_list(keys: str | Sequence[str]) -> list[str]:
    return [keys] if isinstance(keys, str) else list(keys)


def frame_column(key: _query.Key) -> str:
    """A key's column name in ``runs_frame()``: ``params.lr``, ``metrics.loss``, ``metrics.loss.min``,
    ``status``; names are not quoted, as in ``mlflow.search_runs``."""
    if key.scope == "attributes":
        return key.name
    field = "" if key.field in (None, "last") else f".{key.field}"
    return f"{key.scope}.{key.name}{field}"


_NONFINITE = fmt.STR_TO_NONFINITE


class RunRow:
    """A run with the figures a runs table and a query read: what ``Store.select()`` gives.

    Implements the query language's ``Row``: ``attr(name)``, ``param(name)``, ``tag(name)``,
    ``metric(name, field)`` (field ``last``, ``min``, ``max`` or ``count``), None when absent.
    An ended run's row is answered from the store's index alone; ``run`` (a ``Run``) is made
    when first asked for, and a run on file as running asks it (is it crashed? its figures?).
    """

    __slots__ = (
        "store",
        "id",
        "entry",
        "info",
        "_index",
        "_run",
        "_status",
        "_ranges",
        "_ended",
        "_runs_dir",
    )

    def __init__(
        self, store: Store, run_id: str, entry: dict[str, Any], index: Any, runs_dir: Path | None = None
    ) -> None:
        self.store = store
        self._runs_dir = runs_dir
        self.id = run_id
        self.entry = entry
        self.info: dict[str, Any] = entry["info"]
        self._index = index
        self._run: Run | None = None
        self._status: str | None = None
        self._ranges: dict[str, tuple[Any, Any]] | None = None
        on_file = self.info.get("status")
        self._ended = on_file in fmt.ENDED_STATUSES and "summary" in entry

    def __repr__(self) -> str:
        return f"<RunRow {self.id}>"

    @property
    def run(self) -> Run:
        if self._run is None:
            run = self._run = Run(self.store, (self._runs_dir or self.store.runs_dir) / self.id, self.info)
            if self._ended:
                run._listed = self.entry["summary"]  # an ended run's summary.json is its listing's
        return self._run

    @property
    def status(self) -> str:
        if self._status is None:
            self._status = self.info["status"] if self._ended else self.run.status
        return self._status

    def params(self) -> dict[str, Any]:
        p = self.info.get("params")
        return p if isinstance(p, dict) else {}

    def tags(self) -> dict[str, Any]:
        t = self.info.get("tags")
        return t if isinstance(t, dict) else {}

    def ranges(self) -> dict[str, tuple[Any, Any]]:
        """Each metric's (min, max) over its numbers, from the index, brought up to date."""
        if self._ranges is None and self._index is None:
            self._ranges = {
                n: (s["min"], s["max"]) for n, s in self.run.summary().items() if s["min"] is not None
            }
        if self._ranges is None:
            index = self._index

            def read_all() -> dict[str, list[Any]]:
                return {name: m.values for name, m in self.run._read_metrics().items()}

            run_dir = f"{self._runs_dir or self.store.runs_dir}{os.sep}{self.id}"
            with index.lock:  # reentrant: Store.select() holds it when it asks
                self._ranges = index.ranges(self.entry, run_dir, read_all)
        return self._ranges

    def listing(self) -> dict[str, Any]:
        """``Run.listing_summary()``, from the index for an ended run."""
        return self.entry["summary"] if self._ended else self.run.listing_summary()

    def _metrics(self) -> dict[str, Any]:
        m = self.listing().get("metrics")
        return m if isinstance(m, dict) else {}

    def metric_names(self) -> list[str]:
        return list(self._metrics())

    def summaries(self, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per metric: ``last``, ``min``, ``max``, ``count`` and ``kind`` (NaN and infinities as
        floats); only those of ``names`` if given."""
        metrics = self._metrics()
        ranges = self.ranges()
        out = {}
        for name in metrics if names is None else names:
            s = metrics.get(name)
            if not isinstance(s, dict):
                continue
            lo, hi = ranges.get(name, (None, None))
            out[name] = {
                "last": _last(s),
                "min": lo,
                "max": hi,
                "count": s.get("count"),
                "kind": s.get("kind"),
            }
        return out

    # The query language's Row.
    def attr(self, name: str) -> Any:
        info = self.info
        if name == "id":
            return self.id
        if name == "experiment":
            v = info.get("experiment")
            return v if isinstance(v, str) and v else "default"  # as Run.experiment
        if name == "status":
            return self.status
        if name == "duration":
            start, end = info.get("created_ts"), info.get("ended_ts")
            if self._ended and isinstance(start, (int, float)) and isinstance(end, (int, float)):
                return max(0.0, end - start)  # as Run.duration() has it for an ended run
            return self.run.duration()
        if name.startswith("git."):
            git = info.get("git")
            v = git.get(name[4:]) if isinstance(git, dict) else None
            return v if isinstance(v, str) else None
        v = info.get("hostname" if name == "host" else name)
        return v if isinstance(v, str) else None

    def param(self, name: str) -> Any:
        p = self.info.get("params")
        return p.get(name) if type(p) is dict else None

    def tag(self, name: str) -> Any:
        t = self.info.get("tags")
        return t.get(name) if type(t) is dict else None

    def metric(self, name: str, field: str) -> Any:
        if field in ("min", "max"):
            r = self.ranges().get(name)
            return None if r is None else r[field == "max"]
        s = self._metrics().get(name)
        if not isinstance(s, dict):
            return None
        return s.get("count") if field == "count" else _last(s)

    def text(self) -> list[Any]:
        info = self.info
        return [self.id, info.get("name"), info.get("user"), *self.tags().values()]


def _last(s: dict[str, Any]) -> Any:
    last = s.get("last")
    if type(last) is str and s.get("kind") in ("number", "list"):
        return _NONFINITE.get(last, last)
    return last
