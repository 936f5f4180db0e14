"""The store's index of its runs: each run's run.json, summary.json and metric ranges in one file.

Filtering and sorting 10,000 runs needs every run's metadata and metric figures; reading 20,000
small files costs seconds, one file and 20,000 stats about a tenth of that
(``benchmarks/bench_query.py``). The index is derived data, at ``cache/runs-index.json`` in the
store, always safe to delete:

- an entry is used only while ``run.json`` and ``summary.json`` have the inode, size and
  modification time they had when it was read (every writer replaces them by a rename, which
  makes a new inode); a file changed less than ``RACY`` seconds before it was read may change
  again within its clock tick, so its entry is read anew next time;
- metric ranges (min and max, which summary.json does not keep) cover ``metrics.jsonl`` up to a
  byte offset, and a file that grew is folded in from there, so a running run's ranges stay current
  at the cost of its new bytes only; a file that shrank or was replaced is read again whole;
- it is written atomically, without fsync (a lost write costs a rebuild), only when something
  changed, and never where the store cannot be written.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from . import _format as fmt
from . import _records
from ._errors import StoreError
from ._summary import number_range

VERSION = 2
RACY = 2.0  # seconds: a file younger than this when read is read again next time
TAIL = 1 << 20  # bytes searched back for the last whole line after a whole read

Sig = list[int]


def signature(path: str) -> Sig | None:
    """What tells a file's versions apart: inode, size and modification time (ns); None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _racy(*sigs: Sig | None) -> bool:
    now = time.time_ns()
    return any(s is not None and now - s[2] < RACY * 1e9 for s in sigs)


def _stat_text(path: str) -> str:
    # One string rather than a list of ints: fewer objects to make when the index is read, and one
    # comparison per file when it is checked, which is most of a warm query's time in a new process.
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_ino}.{st.st_size}.{st.st_mtime_ns}"


def _encode_number(v: Any) -> Any:
    # JSON has no infinities (a range leaves NaN out but keeps them): the metrics files' strings.
    if type(v) is float and not math.isfinite(v):
        return fmt.NONFINITE_TO_STR[repr(v)]
    return v


def _decode_number(v: Any) -> Any:
    return fmt.STR_TO_NONFINITE.get(v, v) if type(v) is str else v


class RunIndex:
    """The index of one store's runs, kept in memory and in ``cache/runs-index.json``."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.path = store_path / fmt.CACHE_DIR / fmt.RUNS_INDEX_FILE
        self.entries: dict[str, dict[str, Any]] = {}
        self.loaded = False
        self.dirty = False
        # One reader of the entries at a time (the UI answers from several threads); reentrant, as
        # Store.select() holds it while rows bring their ranges up to date.
        self.lock = threading.RLock()

    def load(self) -> None:
        """Read the file once; anything but an index of this version is an empty index."""
        if self.loaded:
            return
        self.loaded = True
        try:
            obj = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return
        if type(obj) is dict and obj.get("version") == VERSION and type(obj.get("runs")) is dict:
            self.entries = {k: v for k, v in obj["runs"].items() if type(v) is dict}

    def save(self) -> None:
        """Write the index if it changed and the store may be written; a failure only costs speed."""
        if not self.dirty:
            return
        self.dirty = False
        if not os.access(self.store_path, os.W_OK):
            return
        try:
            self.path.parent.mkdir(exist_ok=True)
            data = orjson.dumps({"version": VERSION, "runs": self.entries})
            fmt.write_bytes_atomic(self.path, data, fsync=False)
        except OSError:
            pass

    def retain(self, ids: set[str]) -> None:
        """Forget the entries of runs no longer in the store."""
        gone = [k for k in self.entries if k not in ids]
        for k in gone:
            del self.entries[k]
        if gone:
            self.dirty = True

    def entry(
        self, runs_dir: str, rid: str, read_info: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Run ``rid``'s entry (``info``: run.json, ``summary``: summary.json cleaned), read anew if
        stale.

        ``read_info`` reads run.json as the store does (warnings and all); None skips the run.
        Paths are strings here: a pathlib join per run was a third of a warm query's time.
        """
        base = f"{runs_dir}{os.sep}{rid}{os.sep}"
        sig = f"{_stat_text(base + fmt.RUN_FILE)}|{_stat_text(base + fmt.SUMMARY_FILE)}"
        e = self.entries.get(rid)
        if e is not None and e.get("sig") == sig and not e.get("racy"):
            return e
        info = read_info()
        if info is None:
            self.entries.pop(rid, None)
            return None
        try:
            summary = fmt.clean_summary(fmt.read_json(Path(base + fmt.SUMMARY_FILE)))
        except (FileNotFoundError, StoreError):
            summary = {}
        new: dict[str, Any] = {"sig": sig, "info": info, "summary": summary}
        if _racy(signature(base + fmt.RUN_FILE), signature(base + fmt.SUMMARY_FILE)):
            new["racy"] = True
        if e is not None:  # the ranges depend on metrics.jsonl alone, which ranges() checks
            for k in ("ranges", "msig", "end"):
                if k in e:
                    new[k] = e[k]
        self.entries[rid] = new
        self.dirty = True
        return new

    def ranges(
        self, e: dict[str, Any], run_dir: str, read_all: Callable[[], dict[str, list[Any]]]
    ) -> dict[str, tuple[Any, Any]]:
        """Each metric's least and greatest number (NaN left out, a list's elements included), from
        the entry if metrics.jsonl has not changed, else brought up to date and kept in it.

        ``read_all`` reads every metric's values (the store's reader, which uses the column index).
        """
        sig = signature(f"{run_dir}{os.sep}{fmt.METRICS_FILE}")
        if e.get("msig") == sig and "ranges" in e and not e.get("mracy"):
            return _decode_ranges(e["ranges"])
        path = Path(run_dir, fmt.METRICS_FILE)
        if sig is None:
            ranges: dict[str, tuple[Any, Any]] = {}
            end = 0
        else:
            old, done = e.get("msig"), e.get("end")
            if (
                "ranges" in e
                and type(old) is list
                and type(done) is int
                and old[0] == sig[0]
                and 0 <= done <= sig[1]
                and old[1] <= sig[1]
            ):
                ranges = _decode_ranges(e["ranges"])
                end = self._fold(path, done, sig[1], ranges)
            else:
                end = _whole_lines_end(path, sig[1])
                ranges = {}
                for name, values in read_all().items():
                    lo, hi = number_range(values)
                    if lo is not None:
                        ranges[name] = (lo, hi)
        e["ranges"] = {n: [_encode_number(lo), _encode_number(hi)] for n, (lo, hi) in ranges.items()}
        e["msig"], e["end"] = sig, end
        if _racy(sig):
            e["mracy"] = True
        else:
            e.pop("mracy", None)
        self.dirty = True
        return ranges

    @staticmethod
    def _fold(path: Path, start: int, size: int, ranges: dict[str, tuple[Any, Any]]) -> int:
        """Fold the whole lines of ``path`` from ``start`` into ``ranges``; the byte they end at."""
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(size - start)
        except OSError:
            return start
        cut = data.rfind(b"\n") + 1
        series, _, _ = _records.decode(data[:cut], str(path))
        for name, s in series.items():
            lo, hi = number_range(s.values)
            if lo is None:
                continue
            old = ranges.get(name)
            ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        return start + cut


def _whole_lines_end(path: Path, size: int) -> int:
    """The byte after the last newline within ``size``: what a whole read from now on surely saw.

    Folding from there again later counts some values twice, which a minimum and maximum do not
    mind. With no newline in the last TAIL bytes, 0: the next look reads the file whole again.
    """
    try:
        with open(path, "rb") as f:
            at = max(0, size - TAIL)
            f.seek(at)
            data = f.read(size - at)
    except OSError:
        return 0
    i = data.rfind(b"\n")
    return at + i + 1 if i >= 0 else 0


def _decode_ranges(raw: Any) -> dict[str, tuple[Any, Any]]:
    if type(raw) is not dict:
        return {}
    out = {}
    for name, pair in raw.items():
        if type(pair) is list and len(pair) == 2:
            out[name] = (_decode_number(pair[0]), _decode_number(pair[1]))
    return out
