"""The UI's per-run cache of metric series: binary columns kept in step with ``metrics.jsonl``.

Reading 10,000,000 records back through JSON takes tens of seconds; a chart needs the numbers as
arrays. This cache parses each byte of ``metrics.jsonl`` once, appends what it found to plain
binary column files, and remembers how many bytes it has consumed, so a growing run costs only its
new lines and a finished one costs nothing after its first view::

    <run>/cache/ui/index.json           what has been consumed, and per metric its counts
    <run>/cache/ui/<gen>/<k>.step       int64    the steps of metric k's numbers and bools
    <run>/cache/ui/<gen>/<k>.value      float64  their values (bools as 0 and 1, NaN and ±inf kept)
    <run>/cache/ui/<gen>/<k>.ts         float64  their timestamps
    <run>/cache/ui/<gen>/<k>.str        int64    byte offsets in metrics.jsonl of its string records
    <run>/cache/ui/<gen>/<k>.list       int64    byte offsets of its list records

The store's readers never look in ``cache/ui/``, and deleting it is always safe: it is rebuilt on
the next view. Column files are appended first and ``index.json`` replaced atomically after, so a
crash leaves bytes beyond the counts in the index, which the next update cuts off. A
``metrics.jsonl`` that shrank or whose first bytes changed (replaced, not appended to) starts a new
generation ``<gen>``. A run directory the UI may not write to gets its cache under the system's
temporary directory instead.

Records are decoded by ``amltrack/_records.py``, the reader's own grammar; malformed ones are
skipped and counted, and those of a kind this amltrack does not know are left out. A row
(``log_metrics()``: several metrics at one step in one line) counts as one point per entry, as if
``log()`` had been called once per entry. Only complete lines are consumed; a line still
being written is read on the next update.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from filelock import FileLock, Timeout

from .. import _format as fmt
from .. import _kinds, _records
from .._columns import Block, read_blocks
from .._errors import StoreError
from .._records import Part as _Part

CACHE_DIR = fmt.CACHE_DIR
UI_DIR = fmt.UI_CACHE_DIR
INDEX_FILE = "index.json"
VERSION = 2  # 2: a "media" offsets column, for the tagged kinds (images, tables, ...)
CHUNK = 8 << 20  # bytes of metrics.jsonl parsed per step; about 90,000 records
INDEX_STEP = 1_000_000  # records taken per step from the writer's column index
HEAD = 4096  # the leading bytes whose hash tells a replaced file from a grown one
NICE = 10  # the background warmer's nice value, where threads have their own
# The offsets columns are the kinds' (amltrack/_kinds.py): one per kind not kept as numbers.
KINDS = ("step", "value", "ts", *_kinds.BY_OFFSETS_COLUMN)
_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")
_DTYPES = {"step": _I8, "value": _F8, "ts": _F8, **dict.fromkeys(_kinds.BY_OFFSETS_COLUMN, _I8)}
_MAX_STEP = 2**63


class _Corrupt(Exception):
    """A column file shorter than the index says: start a new generation."""


@dataclass
class CacheProgress:
    """How far the cache has read ``metrics.jsonl``: ``done`` once no complete line is left."""

    offset: int
    size: int
    done: bool


@dataclass
class Numbers:
    """A metric's numbers in the order the reader gives them; the arrays may be memory maps."""

    steps: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray
    ordered: bool  # steps never decrease
    all_finite: bool
    all_bool: bool


def _fallback_dir(run_dir: Path) -> Path:
    key = hashlib.sha256(str(run_dir.absolute()).encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"amltrack-ui-{os.getuid()}" / key


# The record grammar, and the chunk decoder that keeps line offsets, are amltrack/_records.py's.
parse_chunk = _records.decode_chunk


def _append(path: Path, at: int, data: bytes) -> None:
    """Write ``data`` at byte ``at`` of ``path`` and cut anything after it (a crashed update's tail)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        if os.fstat(fd).st_size < at:
            raise _Corrupt(path)
        view = memoryview(data)
        pos = at
        while view:
            n = os.pwrite(fd, view, pos)
            pos += n
            view = view[n:]
        os.ftruncate(fd, pos)
    finally:
        os.close(fd)


def _column(path: Path, dtype: np.dtype, n: int) -> np.ndarray:
    if n == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


class SeriesCache:
    """The cache of one run. Thread-safe; several processes may share one cache directory.

    cache = SeriesCache(run.dir)
    cache.update()                          # parse what is new in metrics.jsonl
    cache.numbers("loss").values[-1]        # the last loss, from a memory map
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.source = run_dir / fmt.METRICS_FILE
        self.dir = run_dir / CACHE_DIR / UI_DIR
        self._lock = threading.Lock()
        self._writable: bool | None = None

    # ------------------------------------------------------------------ reading

    def index(self) -> dict[str, Any]:
        """The current index: ``gen``, ``offset``, ``skipped``, ``multi`` and per metric its counts."""
        try:
            idx = fmt.read_json(self.dir / INDEX_FILE)
        except (FileNotFoundError, NotADirectoryError, StoreError):
            return _empty_index("")
        if idx.get("version") != VERSION or not isinstance(idx.get("metrics"), dict):
            return _empty_index("")
        return idx

    def numbers(self, name: str, idx: dict[str, Any] | None = None) -> Numbers | None:
        """Metric ``name``'s numbers (and bools), or None if it has none."""
        for attempt in range(2):
            idx = idx if idx is not None and attempt == 0 else self.index()
            m = idx["metrics"].get(name)
            if m is None or not m["numbers"]:
                return None
            n = m["numbers"]
            gen_dir = self.dir / idx["gen"]
            try:
                steps = _column(gen_dir / f"{m['id']}.step", _I8, n)
                values = _column(gen_dir / f"{m['id']}.value", _F8, n)
                stamps = _column(gen_dir / f"{m['id']}.ts", _F8, n)
            except (FileNotFoundError, ValueError):
                if attempt:  # a new generation replaced this one while we read: read it instead
                    raise
                continue
            ordered = bool(m["sorted"])
            if idx["multi"]:
                # Joined processes: the reader merges each process's records by time.
                order = np.argsort(stamps, kind="stable")
                steps, values, stamps = steps[order], values[order], stamps[order]
                ordered = bool(np.all(steps[1:] >= steps[:-1]))
            return Numbers(steps, values, stamps, ordered, m["nonfinite"] == 0, m["bools"] == n)
        return None  # pragma: no cover - the loop returns or raises

    def records(self, name: str, kind: str, start: int, stop: int) -> list[tuple[int, Any, float]]:
        """Records ``start:stop`` (Python slice bounds) of metric ``name``'s strings or lists."""
        assert kind in _kinds.BY_OFFSETS_COLUMN
        idx = self.index()
        m = idx["metrics"].get(name)
        count = m[_kinds.BY_OFFSETS_COLUMN[kind].counter] if m else 0
        if not count:
            return []
        offsets = _column(self.dir / idx["gen"] / f"{m['id']}.{kind}", _I8, count)[start:stop]
        out = []
        with open(self.source, "rb") as f:
            for off in offsets.tolist():
                f.seek(off)
                try:
                    rec = orjson.loads(f.readline())
                    # A row holds numbers and bools, but one edited by hand may hold a string too.
                    value = rec["values"][name] if _records.is_row(rec) else rec["value"]
                    value = _records.decode_value(value, rec.get("nonfinite") is True)
                    out.append((rec["step"], value, rec["ts"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # the file was replaced since the index was read; the next update sees it
        return out

    # ------------------------------------------------------------------ updating

    def update(self, deadline: float | None = None) -> CacheProgress:
        """Consume what is new in metrics.jsonl, until done or ``time.monotonic()`` passes ``deadline``."""
        if not self.run_dir.is_dir():  # deleted while the UI was showing it: never make it again
            return CacheProgress(0, 0, True)
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=wait):
            return self._progress()
        try:
            self._choose_dir()
            try:
                with FileLock(str(self.dir / ".lock"), timeout=wait):
                    return self._update(deadline)
            except Timeout:
                return self._progress()
            except OSError as e:
                if isinstance(e, StoreError):
                    raise
                raise StoreError(
                    e.errno,
                    f"cannot update the chart cache in {self.dir}: {e.strerror or e}; free space, "
                    "or delete that folder to start it again",
                ) from e
        finally:
            self._lock.release()

    def _progress(self) -> CacheProgress:
        try:
            size = self.source.stat().st_size
        except FileNotFoundError:
            size = 0
        offset = self.index()["offset"]
        return CacheProgress(offset, size, offset >= size)

    def _choose_dir(self) -> None:
        """Make the cache directory (again, if someone deleted it); elsewhere if the run is read-only."""
        if self._writable is not False:
            try:
                self.dir.parent.mkdir(exist_ok=True)  # no parents: a vanished run directory stays gone
                self.dir.mkdir(exist_ok=True)
                if self._writable is None:
                    probe = self.dir / f".probe-{secrets.token_hex(4)}"
                    probe.touch()
                    probe.unlink()
                    self._writable = True
                return
            except OSError:
                if self._writable:
                    raise
            # A run directory we may only read (another user's, a read-only mount).
            self._writable = False
            self.dir = _fallback_dir(self.run_dir)
        private = self.dir.parent
        private.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = private.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise StoreError(
                f"cannot cache {self.run_dir}: it is read-only and {private} is not a private "
                "directory of this user; remove it or make the run directory writable"
            )
        self.dir.mkdir(exist_ok=True)

    def _update(self, deadline: float | None) -> CacheProgress:
        idx = self.index()
        try:
            f = open(self.source, "rb")
        except FileNotFoundError:
            return CacheProgress(0, 0, True)
        with f:
            size = os.fstat(f.fileno()).st_size
            if not idx["gen"] or size < idx["offset"] or not self._same_head(f, idx):
                idx = self._new_generation(idx)
            offset = idx["offset"]
            # The writer's column index (amltrack/_columns.py) holds the same records as arrays:
            # where it covers the bytes from here, take them from it instead of parsing JSON.
            # A step's worth of blocks at a time, since reading a block checks its lines: a slice
            # of work (a deadline) must not pay for checking the whole file.
            names: list[str] = []
            blocks: list[Block] = []
            at: dict[int, int] = {}
            starts: list[int] = []
            window_end, more = -1, True  # where the blocks read end; whether more may follow
            while True:
                if offset >= size:
                    return CacheProgress(offset, size, True)
                if more and offset >= window_end:
                    found = read_blocks(self.run_dir, f, offset, limit=INDEX_STEP)
                    names, blocks = found if found is not None else ([], [])
                    at = {b.start: i for i, b in enumerate(blocks)}
                    starts = [b.start for b in blocks]
                    window_end = blocks[-1].end if blocks else size
                    # Raw blocks (rows) have no records to count towards the limit: should they
                    # have ended the blocks read short of the file's end, look again after them.
                    more = sum(b.n for b in blocks) >= INDEX_STEP or (
                        window_end < size and any(b.n == 0 for b in blocks)
                    )
                limit = CHUNK
                i = at.get(offset)
                if i is not None:
                    if self._consume_blocks(idx, names, blocks, i, f):
                        offset = idx["offset"]
                        if deadline is not None and time.monotonic() >= deadline and offset < size:
                            return CacheProgress(offset, size, False)
                        continue
                    # Parse this block's lines, and those of the blocks after it that the index
                    # cannot give either (a run logging a row per step has a raw block per line),
                    # up to a chunk; the index again after.
                    j = i + 1
                    while j < len(blocks) and blocks[j].end - offset <= CHUNK and not _indexed(blocks[j]):
                        j += 1
                    limit = blocks[j - 1].end - offset
                else:
                    # Parse up to where the next block starts, so that the index can take over there.
                    k = bisect.bisect_right(starts, offset)
                    if k < len(starts):
                        limit = min(CHUNK, starts[k] - offset)
                f.seek(offset)
                data = f.read(min(limit, size - offset))
                end = data.rfind(b"\n")
                while end < 0 and offset + len(data) < size:  # a line longer than a chunk
                    rest = f.read(min(CHUNK, size - offset - len(data)))
                    if not rest:
                        break
                    data += rest
                    end = data.rfind(b"\n")
                if end < 0:  # only a line still being written (or cut short) is left
                    return CacheProgress(offset, size, True)
                data = data[: end + 1]
                try:
                    self._consume(idx, data, offset, f)
                except _Corrupt:
                    idx = self._new_generation(idx)
                    offset = 0
                    window_end, more = -1, True
                    continue
                offset = idx["offset"]
                if deadline is not None and time.monotonic() >= deadline and offset < size:
                    return CacheProgress(offset, size, False)

    def _same_head(self, f: Any, idx: dict[str, Any]) -> bool:
        n = idx.get("head_len", 0)
        if not n:
            return True
        f.seek(0)
        return hashlib.sha1(f.read(n)).hexdigest() == idx.get("head")

    def _new_generation(self, old: dict[str, Any]) -> dict[str, Any]:
        idx = _empty_index(secrets.token_hex(6))
        (self.dir / idx["gen"]).mkdir(parents=True)
        fmt.write_json_atomic(self.dir / INDEX_FILE, idx, fsync=False)
        if old["gen"]:
            shutil.rmtree(self.dir / old["gen"], ignore_errors=True)
        return idx

    def _consume(self, idx: dict[str, Any], data: bytes, offset: int, f: Any) -> None:
        parts, skipped, multi = parse_chunk(data, offset)
        self._store(idx, parts, skipped, multi, offset + len(data), f)

    def _consume_blocks(
        self, idx: dict[str, Any], names: list[str], blocks: list[Block], i: int, f: Any
    ) -> bool:
        """Take the index's blocks from ``blocks[i]`` on (read a step, INDEX_STEP records, at a time)
        while they hold only numbers and bools (strings and lists need their line offsets, which
        only the JSON gives, and a raw block's rows are only in the JSON); False if none."""
        taken: list[Block] = []
        for b in blocks[i:]:
            if not _indexed(b):
                break
            taken.append(b)
        if not taken:
            return False
        try:
            parts = _parts_from_blocks(names, taken)
        except (TypeError, ValueError, IndexError):  # extras not as the writer writes them
            parts = None
        if parts is None:
            return False
        self._store(idx, parts, 0, False, taken[-1].end, f)
        return True

    def _store(
        self, idx: dict[str, Any], parts: dict[str, _Part], skipped: int, multi: bool, end: int, f: Any
    ) -> None:
        metrics = idx["metrics"]
        gen_dir = self.dir / idx["gen"]
        for name, part in parts.items():
            m = metrics.get(name)
            if m is None:
                m = metrics[name] = {
                    "id": len(metrics),
                    "numbers": 0,
                    "bools": 0,
                    "nonfinite": 0,
                    "strings": 0,
                    "lists": 0,
                    "media": 0,
                    "sorted": True,
                    "last_step": None,
                }
            k = m["id"]
            n = len(part.steps)
            if n:
                steps = np.asarray(part.steps, dtype=_I8)
                at = m["numbers"] * 8
                _append(gen_dir / f"{k}.step", at, steps.tobytes())
                _append(gen_dir / f"{k}.value", at, np.asarray(part.values, dtype=_F8).tobytes())
                _append(gen_dir / f"{k}.ts", at, np.asarray(part.stamps, dtype=_F8).tobytes())
                last = m["last_step"]
                m["sorted"] = bool(
                    m["sorted"]
                    and (last is None or last <= steps[0])
                    and (n == 1 or bool(np.all(steps[1:] >= steps[:-1])))
                )
                m["last_step"] = int(steps[-1])
                m["numbers"] += n
                m["bools"] += part.bools
                m["nonfinite"] += part.nonfinite
            for column, kind in _kinds.BY_OFFSETS_COLUMN.items():
                offs = getattr(part, kind.counter)
                if offs:
                    at = m[kind.counter] * 8
                    _append(gen_dir / f"{k}.{column}", at, np.asarray(offs, dtype=_I8).tobytes())
                    m[kind.counter] += len(offs)
        idx["offset"] = end
        idx["skipped"] += skipped
        idx["multi"] = idx["multi"] or multi
        idx["records"] = idx.get("records", 0) + sum(
            len(p.steps) + len(p.strings) + len(p.lists) + len(p.media) for p in parts.values()
        )
        if idx["head_len"] < HEAD:
            f.seek(0)
            head = f.read(min(HEAD, idx["offset"]))
            idx["head_len"], idx["head"] = len(head), hashlib.sha1(head).hexdigest()
        fmt.write_json_atomic(self.dir / INDEX_FILE, idx, fsync=False)


def _indexed(b: Block) -> bool:
    """Whether the index gives block ``b``'s records: it has columns (it is not a raw block, whose
    rows are parsed from their lines) and its values are numbers and bools."""
    return b.n > 0 and not any(
        type(e) is not list or len(e) != 3 or type(e[1]) not in (int, bool) for e in b.extras
    )


def _parts_from_blocks(names: list[str], blocks: list[Block]) -> dict[str, _Part] | None:
    """The blocks' records per metric, as ``parse_chunk`` gives them; None if a code is unknown."""
    raw = [b"".join(parts) for parts in _records.block_columns(blocks)]
    codes = np.frombuffer(raw[0], dtype="<u4")
    steps = np.frombuffer(raw[1], dtype=_I8)
    values = np.frombuffer(raw[2], dtype=_F8).copy()
    stamps = np.frombuffer(raw[3], dtype=_F8)
    if len(codes) == 0 or int(codes.max()) >= len(names):
        return None
    is_bool = np.zeros(len(codes), dtype=bool)
    for i, value in _records.block_extras(blocks):  # ints and bools: the column holds 0 for them
        values[i] = float(value)
        is_bool[i] = type(value) is bool
    finite = np.isfinite(values)
    # Codes count up in the order names first appear in metrics.jsonl, so ascending codes give the
    # metrics in the order parse_chunk would.
    counts = np.bincount(codes)  # one pass, where np.unique would sort
    present = np.flatnonzero(counts)
    if len(present) == 1:
        groups: list[tuple[int, Any]] = [(int(present[0]), slice(None))]
    else:
        order = np.argsort(codes, kind="stable")
        counts = counts[present]
        ends = np.cumsum(counts)
        groups = [(int(c), order[z - k : z]) for c, z, k in zip(present, ends, counts)]
    out: dict[str, _Part] = {}
    for c, pick in groups:
        part = out[names[c]] = _Part()
        part.steps, part.values, part.stamps = steps[pick], values[pick], stamps[pick]
        part.bools = int(np.count_nonzero(is_bool[pick]))
        part.nonfinite = int(np.count_nonzero(~finite[pick]))
    return out


def _empty_index(gen: str) -> dict[str, Any]:
    return {
        "version": VERSION,
        "gen": gen,
        "offset": 0,
        "head_len": 0,
        "head": None,
        "skipped": 0,
        "multi": False,
        "records": 0,
        "metrics": {},
    }


class Caches:
    """One SeriesCache per run directory, shared by every request of an app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._caches: dict[Path, SeriesCache] = {}

    def get(self, run_dir: Path) -> SeriesCache:
        with self._lock:
            cache = self._caches.get(run_dir)
            if cache is None:
                cache = self._caches[run_dir] = SeriesCache(run_dir)
            return cache


class Warmer:
    """Brings the chart caches of the newest runs up to date in the background.

    A run's first view builds its cache: about 2 s for a 10,000,000-point metric with the writer's
    index, and 20 s without one, as for a run synced to a server. The warmer pays that before
    anyone opens the page, in slices of ``SLICE`` seconds so that a request for the same run never
    waits long for the cache's lock. It looks at the ``newest`` runs by id (a directory listing,
    no run is read) every ``interval`` seconds and never raises: a run it cannot cache is left to
    the request that asks for it, which reports the error.

        warmer = Warmer(store, caches)
        warmer.start()          # a daemon thread; stop() ends it
    """

    SLICE = 0.25

    def __init__(self, store: Any, caches: Caches, *, newest: int = 20, interval: float = 2.0) -> None:
        self.store = store
        self.caches = caches
        self.newest = newest
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done: dict[Path, int] = {}  # the metrics file's size when its cache was last current

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="amltrack-ui-warmer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        # Background work: on Linux a thread has its own nice value, so training on the same laptop
        # or a sync pushing to the same server goes first.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while not self._stop.is_set():
            try:
                behind = self.run_once()
            except Exception as e:  # never let a side channel end: warn, and try again later
                fmt.warn_once("ui-warmer", f"amltrack ui: preparing charts in the background failed: {e}")
                behind = False
            if not behind:
                self._stop.wait(self.interval)

    def run_once(self) -> bool:
        """One slice of work on each of the newest runs whose cache is behind its metrics file;
        True if one of them is still behind after it."""
        behind = False
        for rid in self.store.run_ids()[: self.newest]:
            if self._stop.is_set():
                break
            run_dir = self.store.runs_dir / rid
            try:
                size = os.stat(run_dir / fmt.METRICS_FILE).st_size
            except OSError:
                continue  # no metrics yet, or not a run
            if self._done.get(run_dir) == size or not (run_dir / fmt.RUN_FILE).is_file():
                continue  # current, or not finalised yet on a server
            try:
                progress = self.caches.get(run_dir).update(deadline=time.monotonic() + self.SLICE)
            except (OSError, ValueError):
                self._done[run_dir] = size  # the page's own request will say why
                continue
            if progress.done:
                # Done may leave a torn last line unread: remember the size, not the offset.
                self._done[run_dir] = size
            else:
                behind = True
        return behind
