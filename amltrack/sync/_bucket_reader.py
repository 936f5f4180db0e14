"""Reading runs in place in a bucket (``--store s3://BUCKET/PREFIX``): the published runs, as a store.

    with BucketReader("s3://team-runs/amltrack") as bucket:
        for run in bucket.runs(status="completed", limit=10):
            print(run.id, run.status, run.cached_summary().get("metrics"))
        bucket.run("last").metric("loss").values[-3:]

Only published runs are seen (``published/<id>.json``, written last by each push), as they were
published. A run is an ``amltrack.Run`` over a temporary store that the reader removes when it is
closed: its ``metrics.jsonl`` and ``artifacts.jsonl`` are the published parts joined, fetched the first
time they are read, and an artifact's bytes are fetched when read.

Listing reads one listing of ``published/`` (the ETag of every run's manifest) and ``index.json``, a
derived cache of each run's run.json and summary.json keyed by that ETag; a run whose entry is missing
or stale is read from its manifest instead (many at once). Each sync brings the index up to date when
it closes; deleting it only makes the next listing slower.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from .. import _format as fmt
from .. import _query
from .._assets import Asset
from .._assets import parse_ref as check_asset_ref
from .._errors import (
    AmbiguousRunError,
    AmltrackError,
    ArtifactNotFoundError,
    AssetNotFoundError,
    RunNotFoundError,
    StoreError,
)
from .._store import AmbiguousRunNameError, Run, Store, row_of
from ._errors import SyncError
from ._s3 import (
    BucketClient,
    asset_key,
    index_entries,
    part_key,
    published_key,
    published_runs,
    run_key,
)


class BucketRun(Run):
    """A published run in a bucket, read through a temporary local copy of its files."""

    def __init__(self, reader: BucketReader, run_id: str, entry: dict[str, Any]) -> None:
        info = entry.get("run")
        super().__init__(reader.store, reader.store.runs_dir / run_id, info if isinstance(info, dict) else {})
        self._reader = reader
        self._summary = fmt.clean_summary(entry.get("summary"))
        self._manifest: dict[str, Any] | None = entry if "artifacts" in entry else None
        self._fetched: set[str] = set()

    def reload(self) -> BucketRun:
        """Read the run's manifest again: run.json, summary.json and the parts it names."""
        self._manifest = self._reader.manifest(self.id)
        self._info = self._manifest.get("run") if isinstance(self._manifest.get("run"), dict) else {}
        self._summary = fmt.clean_summary(self._manifest.get("summary"))
        self._fetched.clear()
        self._listed = None
        return self

    def cached_summary(self) -> dict[str, Any]:
        return dict(self._summary)

    def listing_summary(self) -> dict[str, Any]:
        # The published figures: a reader of a bucket writes nothing back, and repairs no crashed run.
        return self.cached_summary()

    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = self._reader.manifest(self.id)
        return self._manifest

    def _fetch(self, name: str) -> None:
        if name in self._fetched:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        parts = (self.manifest().get(name) or {}).get("parts") or []
        with open(self.dir / name, "wb") as f:
            for start, size, _sha in parts:
                got = self._reader.s3.get(part_key(self._reader.s3.where, self.id, name, start))
                if got is None or len(got[0]) != size:
                    raise SyncError(
                        f"{self._reader.url}: part {start} of {name} of run {self.id} is missing or cut; "
                        "sync the run again"
                    )
                f.write(got[0])
        self._fetched.add(name)

    def _read_metrics(self) -> dict[str, Any]:
        self._fetch(fmt.METRICS_FILE)
        return super()._read_metrics()

    def artifacts(self) -> list[dict[str, Any]]:
        self._fetch(fmt.MANIFEST_FILE)
        return super().artifacts()

    def read_artifact(self, path: str) -> bytes:
        """The artifact's bytes, from the bucket."""
        fmt.check_artifact_path(path)
        if path not in (self.manifest().get("artifacts") or {}):
            raise ArtifactNotFoundError(path, self.id)
        got = self._reader.s3.get(run_key(self._reader.s3.where, self.id, fmt.ARTIFACTS_DIR, path))
        if got is None:
            raise ArtifactNotFoundError(path, self.id)
        return got[0]

    def open_artifact(self, path: str) -> BinaryIO:
        return io.BytesIO(self.read_artifact(path))


class BucketAsset(Asset):
    """An asset version in a bucket: ``info`` from its asset.json, each file's bytes fetched by content."""

    def __init__(self, reader: BucketReader, info: dict[str, Any]) -> None:
        super().__init__(reader.store.path / fmt.ASSETS_DIR / str(info["name"]) / str(info["version"]), info)
        self._reader = reader

    def _open(self, path: str) -> BinaryIO:
        fmt.check_artifact_path(path)
        entry = next((f for f in self.files if f["path"] == path), None)
        got = None
        if entry is not None and isinstance(entry.get("sha256"), str):
            got = self._reader.s3.get(asset_key(self._reader.s3.where, self.name, "blobs", entry["sha256"]))
        if got is None:
            raise AssetNotFoundError(self.ref, self._reader.url, path)
        return io.BytesIO(got[0])


class BucketReader:
    """The published runs of a bucket, read in place: a ``RunSource`` as ``Store`` is.

    reader = BucketReader("s3://team-runs/amltrack?endpoint=http://127.0.0.1:9000")
    rows = reader.runs(experiment="mnist", limit=5)
    reader.close()
    """

    def __init__(self, url: str, *, client: Any = None) -> None:
        self.s3 = BucketClient(url, client)
        self.url = url
        self.label = url
        self._root = Path(tempfile.mkdtemp(prefix="amltrack-bucket-"))
        (self._root / fmt.RUNS_DIR).mkdir()
        self.store = Store(self._root)

    def __repr__(self) -> str:
        return f"BucketReader({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def __enter__(self) -> BucketReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.s3.close()
        shutil.rmtree(self._root, ignore_errors=True)

    # ----------------------------------------------------------------- listing

    def run_ids(self) -> dict[str, str]:
        """Every published run: its id and the ETag of its manifest, newest first."""
        return published_runs(self.s3)

    def manifest(self, run_id: str) -> dict[str, Any]:
        got = self.s3.get_json(published_key(self.s3.where, run_id))
        if got is None:
            raise RunNotFoundError(run_id, self.url)
        return got[0]

    def _entries(self) -> dict[str, dict[str, Any]]:
        return index_entries(self.s3)

    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int = 0,
        *,
        filter: str | None = None,
        order_by: str | Sequence[str] | None = None,
    ) -> list[BucketRun]:
        """Published runs newest first, as ``Store.runs``; ``limit`` 0 for all. ``filter`` and
        ``order_by`` (docs/query.md) are applied here, to the runs the bucket's index lists."""
        if status is not None and status not in fmt.STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(fmt.STATUSES)}")
        if filter is not None or order_by is not None:
            test = _query.matcher(_query.as_tree(filter))
            orders = _query.parse_orders(order_by)
            rows = [r for r in map(row_of, self.runs(experiment, status)) if test(r)]
            found = [r.run for r in _query.sort(rows, orders, lambda r: r)]
            return [r for r in found[: limit or None] if isinstance(r, BucketRun)]
        out = []
        for rid, entry in self._entries().items():
            run = BucketRun(self, rid, entry)
            if experiment is not None and run.experiment != experiment:
                continue
            if status is not None and run.status != status:
                continue
            out.append(run)
            if len(out) == limit:
                break
        return out

    def run(self, ref: str) -> BucketRun:
        """The run ``ref`` names, as ``Store.run`` resolves it: ``last``, an id, a unique prefix of it
        or of its random part, or a unique run name."""
        if not isinstance(ref, str) or not ref:
            raise RunNotFoundError(str(ref), self.url)
        if ref == "last":
            return self.last()
        if fmt.is_valid_run_id(ref):
            try:
                return BucketRun(self, ref, self.manifest(ref))
            except RunNotFoundError:
                pass
        ids = list(self.run_ids())
        matches = [i for i in ids if i.startswith(ref)]
        if not matches:
            matches = [i for i in ids if "-" in i and i.split("-", 1)[1].startswith(ref)]
        if len(matches) > 1:
            raise AmbiguousRunError(ref, matches)
        if matches:
            return BucketRun(self, matches[0], self.manifest(matches[0]))
        named = [r for r in self.runs() if r.name == ref]
        if len(named) > 1:
            raise AmbiguousRunNameError(ref, [r.id for r in named])
        if named:
            return named[0]
        raise RunNotFoundError(ref, self.url)

    def last(self) -> BucketRun:
        """The newest published run."""
        for rid in self.run_ids():
            try:
                return BucketRun(self, rid, self.manifest(rid))
            except RunNotFoundError:
                continue
        raise RunNotFoundError("last", self.url)

    # ----------------------------------------------------------------- assets

    def assets(self) -> list[BucketAsset]:
        """Every version of every asset in the bucket, by name, then version."""
        prefix = self.s3.where.key(fmt.ASSETS_DIR) + "/"
        keys = []
        for o in self.s3.list(prefix):
            name, _, rest = o["Key"][len(prefix) :].partition("/")
            number, _, leaf = rest.partition("/")
            if leaf == fmt.ASSET_FILE and number.isdigit():
                keys.append((name, int(number), o["Key"]))
        out = []
        for _name, _number, key in sorted(keys):
            got = self.s3.get_json(key)
            if got is not None and isinstance(got[0].get("name"), str) and type(got[0].get("version")) is int:
                out.append(BucketAsset(self, got[0]))
        return out

    def asset(self, ref: str) -> BucketAsset:
        """The asset version ``NAME:VERSION``, or the latest version of ``NAME``."""
        name, version = check_asset_ref(ref)
        chosen = [a for a in self.assets() if a.name == name and version in (None, a.version)]
        if not chosen:
            missing = AssetNotFoundError(ref, self.url)
            missing.args = (
                f"no asset {ref!r} in {self.url}; list them with 'amltrack asset list --store {self.url}'",
            )
            raise missing
        return chosen[-1]

    # ----------------------------------------------------------------- mirror

    def mirror(self, dest: Path) -> int:
        """Bring ``dest``, an ordinary local store, up to the bucket's published runs; the runs changed.

        What ``amltrack ui --store s3://...`` serves: the UI reads a folder. Parts are immutable, so
        each refresh fetches only the parts after those already there, the artifacts whose hash
        changed, and run.json and summary.json of the runs whose manifest changed (by its ETag, kept in
        the run's ``sync/`` folder, which readers ignore). Runs are never deleted from ``dest``.
        """
        (dest / fmt.RUNS_DIR).mkdir(parents=True, exist_ok=True)
        changed = 0
        for rid, etag in self.run_ids().items():
            d = dest / fmt.RUNS_DIR / rid
            seen = d / fmt.LEDGER_DIR / "bucket-mirror.json"
            try:
                kept = fmt.read_json(seen)
            except (FileNotFoundError, NotADirectoryError, StoreError):
                kept = {}
            if kept.get("etag") == etag:
                continue
            try:
                manifest = self.manifest(rid)
            except RunNotFoundError:
                continue  # deleted since the listing
            d.mkdir(exist_ok=True)
            for name in (fmt.METRICS_FILE, fmt.MANIFEST_FILE):
                self._mirror_parts(rid, d / name, (manifest.get(name) or {}).get("parts") or [])
            held = kept.get("artifacts") or {}
            for path, meta in sorted((manifest.get("artifacts") or {}).items()):
                if held.get(path) == meta and (d / fmt.ARTIFACTS_DIR / path).is_file():
                    continue
                fmt.check_artifact_path(path)
                got = self.s3.get(run_key(self.s3.where, rid, fmt.ARTIFACTS_DIR, path))
                if got is not None:
                    target = d / fmt.ARTIFACTS_DIR / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fmt.write_bytes_atomic(target, got[0], fsync=False)
            if isinstance(manifest.get("summary"), dict):
                fmt.write_json_atomic(d / fmt.SUMMARY_FILE, manifest["summary"], fsync=False)
            # run.json last: a run folder is a run once it has one.
            fmt.write_json_atomic(d / fmt.RUN_FILE, manifest.get("run") or {}, fsync=False)
            seen.parent.mkdir(exist_ok=True)
            fmt.write_json_atomic(
                seen, {"etag": etag, "artifacts": manifest.get("artifacts") or {}}, fsync=False
            )
            changed += 1
        return changed

    def _mirror_parts(self, run_id: str, path: Path, parts: list[list[Any]]) -> None:
        """Append to ``path`` the parts after the bytes it holds; fetch it whole if it does not end
        at a part's end (it was cut, or is another copy's)."""
        have = path.stat().st_size if path.exists() else 0
        if have and not any(start + size == have for start, size, _ in parts):
            have = 0
        with open(path, "r+b" if path.exists() else "wb") as f:
            f.truncate(have)
            f.seek(have)
            for start, size, _sha in parts:
                if start + size <= have:
                    continue
                got = self.s3.get(part_key(self.s3.where, run_id, path.name, start))
                if got is None or len(got[0]) != size:
                    raise SyncError(
                        f"{self.url}: part {start} of {path.name} of run {run_id} is missing or cut; "
                        "sync the run again"
                    )
                f.write(got[0])


class Mirror:
    """A thread that refreshes a local mirror of the bucket (``BucketReader.mirror``) every ``every``
    seconds, until ``stop()``; the first refresh is made before ``start()`` returns, so that what is
    served at once holds the runs. A failed refresh is told to ``warn`` once and tried again.

        with BucketReader(url) as bucket, Mirror(bucket, folder) as mirror:
            serve(mirror.dest)
    """

    def __init__(
        self,
        reader: BucketReader,
        dest: Path,
        *,
        every: float = 10.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.reader, self.dest, self.every = reader, dest, every
        self._warn = warn or (lambda message: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="amltrack-bucket-mirror")
        self._warned = False

    def __enter__(self) -> Mirror:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.reader.mirror(self.dest)  # the first one fails loudly: a wrong URL, no credentials
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.reader.mirror(self.dest)
                self._warned = False
            except (AmltrackError, OSError) as e:
                if not self._warned:
                    self._warn(f"could not refresh the runs of {self.reader.url}: {e}; trying again")
                    self._warned = True
