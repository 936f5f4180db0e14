"""The rich kinds on an MLflow run (docs/sync.md, "Images, tables, histograms"): images where
``mlflow.log_image(key=, step=)`` puts them, so MLflow's UI shows them over steps; each table
metric as one ``mlflow.log_table`` file; histograms and confusion matrices as JSON artifacts.

``plan`` says what the MLflow run should hold for them: paths with a mark of their content (as
``Wanted.artifacts``), the local image files sent as they are, the files made at upload time,
and the tags MLflow's UI reads. It reads the run's metrics only when its summary names a rich kind.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ... import _kinds
from .._local import Snapshot
from ._mapping import OWN_DIR, mlflow_key, mlflow_path, to_ms

IMAGES_DIR = "images"  # mlflow.log_image's
THUMBNAIL = 256  # the longer side of the "+compressed.webp" copy MLflow's UI shows in its grid
HISTOGRAMS_DIR = f"{OWN_DIR}/histograms"
CONFUSION_DIR = f"{OWN_DIR}/confusion_matrices"
TAG_LOGGED_IMAGES = "mlflow.loggedImages"
TAG_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"


@dataclass
class MediaPlan:
    artifacts: dict[str, str] = field(default_factory=dict)  # MLflow path -> mark of its content
    sources: dict[str, str] = field(default_factory=dict)  # MLflow path -> the artifact sent as it is
    made: dict[str, Callable[[], bytes]] = field(default_factory=dict)  # MLflow path -> its bytes, made late
    tags: dict[str, str] = field(default_factory=dict)
    replaced: set[str] = field(default_factory=set)  # amltrack artifact paths shown in MLflow's own layout


def plan(snap: Snapshot) -> MediaPlan:
    out = MediaPlan()
    kinds = {
        m.get("kind")
        for m in (snap.run.cached_summary().get("metrics") or {}).values()
        if isinstance(m, dict)
    }
    if not kinds & set(_kinds.TAGGED):
        return out
    tables: list[dict[str, str]] = []
    for name, metric in snap.run.metrics().items():
        if not metric.media:
            continue
        key = mlflow_key(name)
        by_kind: dict[str, list[tuple[int, Any, float]]] = {}
        for step, value, ts in zip(metric.steps, metric.values, metric.timestamps):
            if isinstance(value, dict):
                by_kind.setdefault(str(value.get("kind")), []).append((step, value, ts))
        for step, value, ts in by_kind.get("image", []):
            _image(out, snap, key, step, value, ts)
        if "table" in by_kind:
            path = f"{mlflow_path(name)}.json"
            points = by_kind["table"]
            for _, value, _ in points:
                if value.get("path"):
                    out.replaced.add(value["path"])
            out.artifacts[path] = "table:" + _digest([v for _, v, _ in points])
            out.made[path] = _maker(_table, points)
            tables.append({"path": path, "type": "table"})
        for kind, folder in (("histogram", HISTOGRAMS_DIR), ("confusion_matrix", CONFUSION_DIR)):
            if kind in by_kind:
                path = f"{folder}/{mlflow_path(name)}.json"
                out.artifacts[path] = f"{kind}:" + _digest([[s, v] for s, v, _ in by_kind[kind]])
                out.made[path] = _maker(_series, name, by_kind[kind])
    if any(p.startswith(IMAGES_DIR + "/") for p in out.artifacts):
        out.tags[TAG_LOGGED_IMAGES] = "True"
    if tables:
        out.tags[TAG_LOGGED_ARTIFACTS] = orjson.dumps(tables).decode()
    return out


def _image(out: MediaPlan, snap: Snapshot, key: str, step: int, value: Any, ts: float) -> None:
    path = value["path"]
    out.replaced.add(path)
    # The uuid of log_image's file name, made from the image's own path so that pushing again names
    # the same file.
    name = uuid.uuid5(uuid.NAMESPACE_URL, f"amltrack:{snap.id}/{path}")
    stem = f"{IMAGES_DIR}/{key.replace('/', '~')}+step+{step}+timestamp+{to_ms(ts)}+{name}"
    sha = str(value.get("sha256"))
    if value.get("format") == "png":
        out.artifacts[stem + ".png"] = sha
        out.sources[stem + ".png"] = path
    else:  # MLflow's UI expects a PNG: a JPEG is converted as the push sends it
        out.artifacts[stem + ".png"] = "png-of:" + sha
        out.made[stem + ".png"] = _maker(_convert, snap, path, "PNG", None)
    out.artifacts[stem + "+compressed.webp"] = "webp-of:" + sha
    out.made[stem + "+compressed.webp"] = _maker(_convert, snap, path, "WEBP", THUMBNAIL)


def _maker(fn: Callable[..., bytes], *args: Any) -> Callable[[], bytes]:
    return lambda: fn(*args)


def _digest(values: list[Any]) -> str:
    return hashlib.sha256(orjson.dumps(values)).hexdigest()


def _convert(snap: Snapshot, path: str, format: str, side: int | None) -> bytes:
    from ... import _media

    Image = _media.pillow("syncing images to MLflow")
    with snap.run.open_artifact(path) as f, Image.open(f) as img:  # never through a symlink
        img.load()
        if side is not None:
            # as mlflow's compress_image_size: the longer side to ``side``, the ratio kept
            w, h = img.size
            size = (side, max(1, int(h * side / w))) if w > h else (max(1, int(w * side / h)), side)
            img = img.resize(size)
        buf = io.BytesIO()
        img.save(buf, format=format)
        return buf.getvalue()


def _table(points: list[tuple[int, Any, float]]) -> bytes:
    """Every table of the metric, its rows one after another, as log_table writes a file that
    several calls appended to: pandas' ``orient="split"`` without the index."""
    columns: dict[str, int] = {}
    for _, v, _ in points:
        for c in v.columns:
            columns.setdefault(c, len(columns))
    rows = []
    for _, v, _ in points:
        at = [columns[c] for c in v.columns]
        for r in v.data:
            row: list[Any] = [None] * len(columns)
            for i, x in zip(at, r):
                row[i] = x
            rows.append(row)
    return orjson.dumps({"columns": list(columns), "data": rows})


def _series(name: str, points: list[tuple[int, Any, float]]) -> bytes:
    return orjson.dumps(
        {
            "name": name,
            "steps": [s for s, _, _ in points],
            "timestamps": [to_ms(t) for _, _, t in points],
            "values": [dict(v) for _, v, _ in points],
        }
    )
