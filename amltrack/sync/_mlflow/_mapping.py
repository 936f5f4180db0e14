"""How an amltrack run maps onto an MLflow run: keys and artifact paths made from amltrack names,
values and times as MLflow takes them, the tags and files amltrack keeps on the MLflow run, and
MLflow's limits on them. Pure functions, no requests; ``docs/sync.md`` has the mapping.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any
from urllib.parse import unquote

import orjson

# MLflow's limits (mlflow/utils/validation.py).
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_RUN_NAME = 250
_MAX_DOUBLE = 1.7976931348623157e308  # what MLflow's SQL store keeps of an infinity

TAG_RUN_ID = "amltrack.run_id"
TAG_STATUS = "amltrack.status"
TAG_STATE = "amltrack.sync.state"  # in_progress while a push is under way, complete after it
# "OFFSET:K": the lines of metrics.jsonl before byte OFFSET, and K points of the line there (a row's
# points count across its entries, in key order).
TAG_CURSOR = "amltrack.sync.cursor"
TAG_ARTIFACTS = "amltrack.sync.artifacts"  # a digest of the artifacts the last complete push uploaded
TAG_STRINGS = "amltrack.string_metrics"  # how many string values went to STRINGS_FILE
RESERVED_TAG_PREFIXES = ("mlflow.", "amltrack.")

OWN_DIR = "amltrack"  # the run's own files, under the MLflow run's artifacts
STRINGS_FILE = f"{OWN_DIR}/string_metrics.jsonl"
NAMES_FILE = f"{OWN_DIR}/names.json"

STATUS = {
    "completed": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
    "crashed": "FAILED",
    "running": "RUNNING",
}


_KEEP = re.compile(r"[\w./\- ]")  # what MLflow allows in a key, less ':', the escape character


def _escape(ch: str) -> str:
    return "".join(f":{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def mlflow_key(name: str, *, reserved: tuple[str, ...] = ()) -> str:
    """The MLflow key of an amltrack metric, param or tag name.

    A name MLflow accepts is kept, except that ':' is the escape character: every character MLflow
    refuses, and ':' itself, becomes ':XX' per UTF-8 byte, like '%' in a URL. A '/' that MLflow
    would read as an empty path part (first, last, or doubled), and the dots of a '.' or '..' part
    or of a leading '..', are escaped too, and so is the first character of a key that starts with
    one of ``reserved``. ``amltrack_name`` reverses it. A key longer than 250 characters is cut and
    ends in '::' and 16 hex digits of the name's SHA-256 ('::' occurs in no other key); the push
    lists such names in the artifact ``amltrack/names.json``.

        mlflow_key("loss@gpu0")  # 'loss:40gpu0'
        mlflow_key("a//b")       # 'a:2F/b'
    """
    n = len(name)
    out = []
    for i, ch in enumerate(name):
        if ch == "/":
            out.append("/" if 0 < i < n - 1 and name[i + 1] != "/" else ":2F")
        elif ch != ":" and _KEEP.fullmatch(ch):
            out.append(ch)
        else:
            out.append(_escape(ch))
    parts = "".join(out).split("/")
    for j, part in enumerate(parts):
        if part in (".", ".."):
            parts[j] = part.replace(".", ":2E")
    if parts[0].startswith(".."):
        parts[0] = ":2E" + parts[0][1:]
    key = "/".join(parts)
    if reserved and key.startswith(reserved):
        key = _escape(key[0]) + key[1:]
    if not key or len(key) > MAX_KEY:
        cut = MAX_KEY - 18
        if key[cut - 1 : cut] == ":":
            cut -= 1
        elif key[cut - 2 : cut - 1] == ":":
            cut -= 2  # never cut an escape in two
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        key = f"{key[:cut]}::{digest}"
    return key


def mlflow_path(path: str) -> str:
    """The MLflow artifact path of an amltrack artifact path: ':', '%' and '#' escaped as ':XX'.

    MLflow refuses '#' in artifact paths and decodes '%XX' in them more than once.
    """
    return "".join(_escape(c) if c in ":%#" else c for c in path)


def amltrack_name(key: str) -> str | None:
    """The amltrack name (or artifact path) of an MLflow key made by ``mlflow_key`` or ``mlflow_path``.

    None for a key that was cut to MLflow's length limit (see ``amltrack/names.json``).

        amltrack_name("loss:40gpu0")  # 'loss@gpu0'
    """
    if "::" in key:
        return None
    return unquote(key.replace(":", "%"), errors="strict")


def param_text(value: Any) -> str:
    """A param or tag value as MLflow's own client writes it: ``str()``; containers as JSON."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return str(value)
    return orjson.dumps(value).decode()


def wire_value(value: float) -> float | str:
    """A metric value as MLflow parses it: a bare NaN token would be stored as 0."""
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def same_value(value: Any) -> Any:
    """A metric value, local or from the server, as a key that compares NaN and infinities."""
    v = float(value)
    if v != v:
        return "nan"
    if v >= _MAX_DOUBLE:
        return math.inf
    if v <= -_MAX_DOUBLE:
        return -math.inf
    return v


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


# A point of a metric as sent: (key, value, timestamp in ms, step).
MlflowPoint = tuple[str, float, int, int]


def parse_cursor(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    m = re.fullmatch(r"(\d+):(\d+)", value)
    return (int(m.group(1)), int(m.group(2))) if m else None
