"""The on-disk format: file names, run ids, record encoding, and tolerant JSON Lines reading.

Everything that knows how bytes are laid out lives here, so the writer, the reader and the tools
built on them agree. ``docs/format.md`` is the human description of the same thing.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from . import _kinds, _platform
from ._errors import InvalidPathError, StoreError, short_repr

SCHEMA_VERSION = 1

# Every file and folder of a store and of a run, named here and nowhere else (docs/format.md draws
# the tree). A store:
STORE_DIRNAME = ".amltrack"  # the folder get_logger() makes, and Store() looks for upwards
STORE_FILE = "store.json"
RUNS_DIR = "runs"
ASSETS_DIR = "assets"  # assets/NAME/VERSION/
ASSET_FILE = "asset.json"  # a version's record
ASSET_FILES_DIR = "files"  # a version's files, at their artifact paths
ASSET_LOCK = ".lock"  # assets/NAME/.lock, held while a version is numbered
SERVER_DIR = ".server"  # in a server's store: what only the server keeps
SERVER_INCOMING = "incoming"  # .server/incoming/RUN: a run's first push, until it is finalised
SERVER_BLOBS = "blobs"  # .server/blobs/RUN/SHA256[.part]: uploads of artifacts
SERVER_ASSET_BLOBS = "asset-blobs"  # .server/asset-blobs/NAME/SHA256[.part]: uploads of asset files
SERVER_LOCK = "server.lock"  # held by the one server process serving the store
# A run's folder (runs/RUN_ID/):
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
SUMMARY_LOCK = "summary.json.lock"  # held while a process merges its figures into summary.json
METRICS_FILE = "metrics.jsonl"
MANIFEST_FILE = "artifacts.jsonl"
ARTIFACTS_DIR = "artifacts"
# artifacts/media/NAME/STEP-SEQ[-WRITER].png|.jpg|.table.json: the files of image and table metrics
# (log_image, log_table), which are artifacts of the run like any other, so that sync, the CLI and
# the UI reach them as they reach uploads; their records in metrics.jsonl point at them by this path.
MEDIA_DIR = "media"
LEDGER_DIR = "sync"  # sync/REMOTE_KEY.json: what was pushed where (also in an asset version's folder)
CACHE_DIR = "cache"  # derived data, always safe to delete:
COLUMNS_FILE = "columns.bin"  # cache/columns.bin: the writer's column index
UI_CACHE_DIR = "ui"  # cache/ui/: the web UI's series cache
FOLD_FILE = "metrics-summary.json"  # cache/metrics-summary.json: a server's summary of the metrics
RUNS_INDEX_FILE = "runs-index.json"  # cache/runs-index.json in a store: its runs' index (_runindex)

ENDED_STATUSES = ("completed", "failed", "killed")
STATUSES = ("running", *ENDED_STATUSES, "crashed")

# NaN and infinities are not JSON; they are written as these strings and the record is flagged
# with "nonfinite": true, so a string metric whose value happens to be "NaN" stays a string.
NONFINITE_TO_STR = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
STR_TO_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

_RUN_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
MAX_PATH_BYTES = 1024  # in UTF-8: with the store's own path it stays well under PATH_MAX (4096)
# File systems allow 255 bytes a name; the rest is room for the temporary file written beside it
# (".NAME.<pid>.<thread>.tmp"), so a part that is accepted can always be stored.
MAX_PART_BYTES = 200
_MEDIA_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._+ -]")
MEDIA_PART_CHARS = 100
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What a Windows file system cannot hold in a name (docs/format.md, "Paths"): these characters, a
# device name with or without an extension (NUL.txt is NUL; Windows drops the spaces before the dot),
# and a trailing dot or space, which Windows strips, so the file would get another name.
WINDOWS_CHARS = '<>:"|?*'
_WINDOWS_CHARS_RE = re.compile('[<>:"|?*]')
WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{kind}{n}" for kind in ("COM", "LPT") for n in (*"0123456789", "\u00b9", "\u00b2", "\u00b3")]
)


def new_run_id(now: float | None = None) -> str:
    """A run id that sorts by creation time (ms) and carries 64 random bits: ``20261127T005321123-<16 hex>``."""
    now = time.time() if now is None else now
    ms = int(now * 1000) % 1000
    # os.urandom is what secrets.token_hex reads; importing secrets costs a reader 7 ms
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{ms:03d}-{os.urandom(8).hex()}"


def is_valid_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and bool(_RUN_ID_RE.match(run_id)) and ".." not in run_id


def utc_iso(ts: float) -> str:
    """UTC ISO 8601 with microseconds and a Z, for run metadata."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 1000000:06d}Z"


def check_artifact_path(path: object) -> str:
    """Return ``path`` if it is a safe relative POSIX path that can be stored, else raise InvalidPathError."""
    if not isinstance(path, str):
        raise InvalidPathError(path, f"it is a {type(path).__name__}, not a str")
    if not path:
        raise InvalidPathError(path, "it is empty")
    if "\x00" in path:
        raise InvalidPathError(path, "it contains NUL")
    if "\\" in path:
        raise InvalidPathError(path, "it contains a backslash")
    if path.startswith("/"):
        raise InvalidPathError(path, "it is absolute")
    if _CONTROL_RE.search(path):
        raise InvalidPathError(path, "it contains a control character")
    ascii_only = path.isascii()
    if not ascii_only:
        try:
            size = len(path.encode("utf-8"))
        except UnicodeEncodeError:
            # A lone surrogate (os.fsdecode of undecodable bytes, say) has no UTF-8 form, so no
            # file name or manifest line can hold it.
            raise InvalidPathError(path, "it is not valid Unicode (a lone surrogate)") from None
    else:
        size = len(path)
    if size > MAX_PATH_BYTES:
        raise InvalidPathError(path, f"it is longer than {MAX_PATH_BYTES} bytes in UTF-8")
    parts = path.split("/")
    if re.match(r"^[A-Za-z]:", parts[0]):
        raise InvalidPathError(path, "it starts with a drive letter")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidPathError(path, f"it has an empty, '.' or '..' part ({part!r})")
        if (len(part) if ascii_only else len(part.encode("utf-8"))) > MAX_PART_BYTES:
            raise InvalidPathError(path, f"a part is longer than {MAX_PART_BYTES} bytes in UTF-8")
    if _platform.current().windows_names:
        problem = windows_name_problem(parts)
        if problem is not None:
            raise InvalidPathError(path, f"{problem}, which a Windows file system cannot hold")
    return path


def media_folder(name: str) -> str:
    """The artifact folder of metric ``name``'s files: ``media/`` and the name's ``/``-separated
    parts, each with the characters a file name cannot safely hold (anything but letters, digits,
    ``. _ - +`` and spaces) as ``_``; raises InvalidPathError if that still cannot be a path here."""
    parts = []
    for part in name.split("/"):
        safe = _MEDIA_UNSAFE_RE.sub("_", part).strip(" ")[:MEDIA_PART_CHARS] or "_"
        parts.append("_" + safe if safe in (".", "..") or safe.endswith(".") else safe)
    return check_artifact_path("/".join((MEDIA_DIR, *parts)))


def media_path(folder: str, step: int, seq: int, writer: str | None, ext: str) -> str:
    """A media file's artifact path: unique in the run, as (seq, writer) is."""
    return f"{folder}/{step}-{seq}{'' if writer is None else '-' + writer}{ext}"


def windows_name_problem(parts: list[str]) -> str | None:
    """Why a path of these parts cannot be a file on Windows, or None. Checked on Windows only:
    elsewhere such a name is an ordinary file, and refusing it would cost a Linux user the file."""
    for part in parts:
        bad = _WINDOWS_CHARS_RE.search(part)
        if bad:
            return f"it contains {bad.group()!r}"
        if part[-1] in ". ":
            return f"a part ends in a {'dot' if part[-1] == '.' else 'space'} ({part!r})"
        device = part.split(".", 1)[0].rstrip(" ").upper()
        if device in WINDOWS_DEVICES:
            return f"a part ({part!r}) is the device name {device}"
    return None


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def write_json_atomic(path: Path, obj: Any, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``obj`` as JSON so a reader sees either the old or the new file."""
    write_bytes_atomic(path, dumps(obj) + b"\n", fsync=fsync)


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = True, tag: str = ".") -> None:
    """Replace ``path`` with ``data`` so a reader sees either the old or the new file.

    The temporary file is ``.NAME{tag}XXXXXX.tmp`` beside it; a tag lets its writer find its own
    leftovers after a crash.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{tag}", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; these files are as shareable as the rest
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_umask() -> int:
    # os.umask can only be read by setting it, so it is read once, at import, before any writer runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object file; a missing file is FileNotFoundError, anything else unreadable is StoreError."""
    return _json_object(_read_bytes(path), path)


def read_run_info(run_dir: Path) -> tuple[bytes, dict[str, Any]]:
    """A run's ``run.json``: its bytes and its object, checked to be one this amltrack reads.

    The one reader of run.json (the store, listings and sync take it from here). A missing file is
    FileNotFoundError; one that is not a JSON object, or of a newer schema, is StoreError.
    """
    path = run_dir / RUN_FILE
    data = _read_bytes(path)
    info = _json_object(data, path)
    schema = info.get("schema")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise StoreError(
            f"run {run_dir.name} has schema version {schema}, newer than this amltrack reads "
            f"({SCHEMA_VERSION}); upgrade amltrack"
        )
    return data, info


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StoreError(e.errno, f"cannot read {path}: {e.strerror}; check its permissions") from e


def _json_object(data: bytes, path: Path) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise StoreError(
            f"{path} is not valid JSON ({e}); restore it from a backup or delete the run directory"
        ) from e
    if not isinstance(obj, dict):
        raise StoreError(f"{path} holds a {type(obj).__name__}, not a JSON object; restore or delete it")
    return obj


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, UserWarning, stacklevel=3)


def read_jsonl(path: Path) -> tuple[list[Any], int]:
    """All complete, valid JSON lines of ``path`` and the number of lines skipped.

    A torn last line (a writer killed mid-write) and hand-edited garbage are skipped and counted, never
    raised. A missing file reads as empty.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as e:
        raise StoreError(e.errno, f"cannot read {path}: {e.strerror}; check its permissions") from e
    return parse_jsonl(data, str(path))


def parse_jsonl(data: bytes, where: str = "<bytes>") -> tuple[list[Any], int]:
    """Parse JSON Lines, skipping (and counting) lines that are not JSON; empty lines are ignored.

    The bytes after the last newline are a record still being written or torn by a crash: they count
    as a record only if they parse, which for a JSON object means its closing brace landed.
    """
    if not data:
        return [], 0
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    loads = orjson.loads
    skipped = 0
    try:
        records = [loads(line) for line in lines]
    except orjson.JSONDecodeError:
        records = []
        append = records.append
        for line in lines:
            try:
                append(loads(line))
            except orjson.JSONDecodeError:
                if line.strip():
                    skipped += 1
    if skipped:
        warn_once(
            where,
            f"amltrack skipped {skipped} unreadable line(s) in {where} and read the rest; a line cut "
            "short by a killed process is expected, anything more means the file was damaged or edited",
        )
    return records, skipped


def iter_dicts(records: Iterable[Any]) -> Iterable[dict[str, Any]]:
    return (r for r in records if type(r) is dict)


# ------------------------------------------------------------------ shapes of run.json and summary.json
# What readers rely on. The server refuses a pushed file with any problem, so that one holder of a
# write token cannot break every reader's listing; a local reader keeps what is sound, so that a
# damaged cache costs its run the cached figures only, never the listing.

_SCALARS = (str, int, float, bool, type(None))
_METRIC_KINDS = tuple(_kinds.BY_NAME)


def _is_int(v: Any) -> TypeGuard[int]:
    return type(v) is int  # JSON gives exact types; a bool is not a count


def _is_number(v: Any) -> bool:
    return type(v) is int or type(v) is float


def run_info_problem(info: Any, run_id: str) -> str | None:
    """Why ``info`` is not a run.json of run ``run_id`` that readers can rely on, or None."""
    if not isinstance(info, dict):
        return f"holds a {type(info).__name__}, not a JSON object"
    if info.get("id") != run_id:
        return f"names run {short_repr(info.get('id'))}, not {run_id}" if "id" in info else "has no id"
    schema = info.get("schema")
    if not _is_int(schema) or schema < 1:
        return f"has schema {short_repr(schema)}, not a version number (1)"
    if schema > SCHEMA_VERSION:
        return f"has schema {schema}, newer than this amltrack knows ({SCHEMA_VERSION}): upgrade amltrack"
    on_file = ("running", *ENDED_STATUSES)  # "crashed" is a reader's verdict, never on file
    if info.get("status") not in on_file:
        return f"has status {short_repr(info.get('status'))}, not one of {', '.join(on_file)}"
    for key, ok, what in (
        ("experiment", lambda v: isinstance(v, str), "a string"),
        ("name", lambda v: isinstance(v, str), "a string"),
        ("created", lambda v: isinstance(v, str), "a string"),
        ("ended", lambda v: isinstance(v, str), "a string"),
        ("created_ts", _is_number, "a number"),
        ("ended_ts", _is_number, "a number"),
        ("pid", _is_int, "an int"),
        ("pid_start", _is_int, "an int"),
        ("pid_created", _is_number, "a number"),
        ("hostname", lambda v: isinstance(v, str), "a string"),
        ("user", lambda v: isinstance(v, str), "a string"),
    ):
        v = info.get(key)
        if v is not None and not ok(v):
            return f"has {key} {short_repr(v)}, not {what} or null"
    for key in ("tags", "params"):
        v = info.get(key)
        if v is None:
            continue
        if not isinstance(v, dict):
            return f"has {key} {short_repr(v)}, not an object"
        for k, x in v.items():
            if not isinstance(x, _SCALARS):
                return f"has {key}[{short_repr(k)}] {short_repr(x)}, not a string, number, bool or null"
    return None


def _metric_summary_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"is {short_repr(entry)}, not an object"
    count = entry.get("count")
    if not _is_int(count) or count < 0:
        return f"has count {short_repr(count)}, not an int >= 0"
    if "kind" in entry and entry["kind"] not in _METRIC_KINDS:
        return f"has kind {short_repr(entry['kind'])}, not one of {', '.join(_METRIC_KINDS)}"
    for key, ok, what in (
        ("step", lambda v: _is_int(v) and v >= 0, "an int >= 0"),
        ("length", lambda v: _is_int(v) and v >= 0, "an int >= 0"),
        ("ts", _is_number, "a number"),
        ("last", lambda v: isinstance(v, _SCALARS), "a single value"),
        ("min", lambda v: isinstance(v, _SCALARS), "a single value"),
        ("max", lambda v: isinstance(v, _SCALARS), "a single value"),
    ):
        if key in entry and not ok(entry[key]):
            return f"has {key} {short_repr(entry[key])}, not {what}"
    return None


def _offsets_problem(offsets: Any) -> str | None:
    if not isinstance(offsets, dict):
        return f"has offsets {short_repr(offsets)}, not an object"
    for w, at in offsets.items():
        if not _is_int(at) or at < 0:
            return f"has offsets[{short_repr(w)}] {short_repr(at)}, not an int >= 0"
    return None


def summary_problem(summary: Any) -> str | None:
    """Why ``summary`` is not a summary.json that readers can rely on, or None."""
    if not isinstance(summary, dict):
        return f"holds a {type(summary).__name__}, not a JSON object"
    for key, ok, what in (("heartbeat", _is_number, "a number"), ("records", _is_int, "an int")):
        if key in summary and not ok(summary[key]):
            return f"has {key} {short_repr(summary[key])}, not {what}"
    if "offsets" in summary:
        problem = _offsets_problem(summary["offsets"])
        if problem is not None:
            return problem
    metrics = summary.get("metrics", {})
    if not isinstance(metrics, dict):
        return f"has metrics {short_repr(metrics)}, not an object"
    for name, entry in metrics.items():
        problem = _metric_summary_problem(entry)
        if problem is not None:
            return f"metric {short_repr(name)} {problem}"
    return None


def clean_summary(summary: Any) -> dict[str, Any]:
    """The parts of ``summary`` that readers can rely on: what has a problem is left out."""
    if not isinstance(summary, dict):
        return {}
    out = {k: v for k, v in summary.items() if k not in ("heartbeat", "records", "metrics", "offsets")}
    if "offsets" in summary and _offsets_problem(summary["offsets"]) is None:
        out["offsets"] = summary["offsets"]
    if _is_number(summary.get("heartbeat")):
        out["heartbeat"] = summary["heartbeat"]
    if _is_int(summary.get("records")):
        out["records"] = summary["records"]
    metrics = summary.get("metrics")
    if isinstance(metrics, dict):
        out["metrics"] = {n: e for n, e in metrics.items() if _metric_summary_problem(e) is None}
    return out


# ------------------------------------------------------------------ keeping summary.json
# Each writing process merges what it logged since its last merge (a delta) into summary.json, and
# a reader that brings a crashed run's summary up to date merges the records after it the same way.

OWN_WRITER = ""  # the run's own process in summary.json's "offsets"; a joined process is its "w"


class MetricSummary:
    """What one merge adds to a metric's entry in summary.json: a count, and its latest record."""

    __slots__ = ("count", "last", "step", "ts", "kind", "length")

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None
        self.step = 0
        self.ts = 0.0
        self.kind = "number"
        self.length: int | None = None

    def latest(self, step: int, ts: float, value: Any) -> None:
        """Take ``value`` (as logged: NaN as a float) at ``step`` and ``ts`` as the latest record."""
        self.step = step
        self.ts = ts
        kind = _kinds.kind_by_type(value)
        self.kind = kind.name
        self.last, self.length = kind.last(value)


def _summary_value(v: Any) -> Any:
    """A value for summary.json: non-finite floats as their JSON Lines strings."""
    if type(v) is float and not math.isfinite(v):
        return NONFINITE_TO_STR[repr(v)]
    return v


def merge_summary(
    current: dict[str, Any],
    delta: dict[str, MetricSummary],
    records: int,
    offsets: dict[str, int],
    heartbeat: float | None,
) -> dict[str, Any]:
    """``current`` (summary.json as read) with ``delta`` counted in.

    ``offsets`` gives, for the writers it names, the byte of metrics.jsonl up to which every record
    of theirs is now counted; the other writers' offsets stay. A metric's latest record is the one
    with the latest time. ``heartbeat`` None keeps the current one.
    """
    metrics = current.get("metrics")
    metrics = dict(metrics) if isinstance(metrics, dict) else {}
    for name, s in delta.items():
        old = metrics.get(name)
        if not isinstance(old, dict):
            old = {"count": 0}
        entry = dict(old)
        entry["count"] = int(old.get("count", 0) or 0) + s.count
        if s.ts >= float(old.get("ts", 0) or 0):
            entry.update(kind=s.kind, last=_summary_value(s.last), step=s.step, ts=s.ts)
            if s.length is not None:
                entry["length"] = s.length
            else:
                entry.pop("length", None)
        metrics[name] = entry
    known = current.get("offsets")
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "records": int(current.get("records", 0) or 0) + records,
    }
    beat = current.get("heartbeat") if heartbeat is None else heartbeat
    if beat is not None:
        out["heartbeat"] = beat
    out["metrics"] = metrics
    out["offsets"] = {**(known if isinstance(known, dict) else {}), **offsets}
    return out
