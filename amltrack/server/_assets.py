"""The server's side of assets: versions pushed by ``amltrack sync``, placed exactly once.

A client pushes an asset version by uploading the content of each file the server lacks (by
SHA-256, in resumable chunks, as a run's artifacts) and then sending the version's ``asset.json``.
The server places it as its own next version of that name, in the layout ``_assets`` reads
(``DIR/assets/<name>/<version>/``), so ``amltrack asset`` and the UI's Assets page on the server
show it. Uploads wait in ``DIR/.server/asset-blobs/<name>/<sha256>``.

Exactly once: the placed version records the SHA-256 of the ``asset.json`` it came from
(``origin``), and the same ``asset.json`` sent again (an answer lost, a sync run twice) is answered
with that version. Content that is already the latest version's is answered with that version, as
``history promote`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from .. import _assets
from .. import _format as fmt
from .._errors import AmltrackError, InvalidAssetNameError, RefusedFileError
from .._web._errors import ApiError
from ._faults import WritePoint
from ._storage import (
    ServerStore,
    _storage_error,
    check_path,
    check_run_id,
    check_sha256,
    parse_object,
)

ASSET_BLOBS = fmt.SERVER_ASSET_BLOBS
_STAGING = ".push-"  # a version being made; `history promote` stages its own under another prefix


def check_name(name: str) -> str:
    try:
        return _assets.check_asset_name(name)
    except InvalidAssetNameError as e:
        raise ApiError(400, "invalid_asset", str(e)) from None


def _files(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``files`` of a pushed asset.json, checked: unique artifact paths, sizes, SHA-256s."""
    files = info.get("files")
    if not isinstance(files, list) or not files:
        raise ApiError(
            400, "invalid_json", "asset.json has no 'files' list; send the file as promote wrote it"
        )
    out, seen = [], set()
    for f in files:
        if not isinstance(f, dict):
            raise ApiError(400, "invalid_json", "an item of asset.json's 'files' is not an object")
        path = check_path(str(f.get("path")))
        size, sha = f.get("size"), f.get("sha256")
        if type(size) is not int or size < 0 or not isinstance(sha, str):
            raise ApiError(400, "invalid_json", f"file {path!r} of asset.json needs a 'size' and a 'sha256'")
        if path in seen:
            raise ApiError(400, "invalid_json", f"asset.json lists file {path!r} twice")
        seen.add(path)
        out.append({"path": path, "size": size, "sha256": check_sha256(sha)})
    return sorted(out, key=lambda f: f["path"])


def parse_pushed(name: str, body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """A pushed asset.json of asset ``name``, checked: its object, its files, and its SHA-256 (the
    ``origin`` a placed version records)."""
    check_name(name)
    info = parse_object(body, _assets.ASSET_FILE)
    if info.get("name") != name:
        raise ApiError(
            400, "invalid_json", f"asset.json names asset {str(info.get('name'))[:100]!r}, not {name!r}"
        )
    files = _files(info)
    source = info.get("source_run")
    if source is not None:
        check_run_id(str(source))
    return info, files, hashlib.sha256(body).hexdigest()


class ServerAssets:
    """Asset versions on the server; every method is one request's worth of work, thread-safe."""

    def __init__(self, storage: ServerStore) -> None:
        self.storage = storage
        self.blobs = storage.private / ASSET_BLOBS
        self.reader = storage.reader

    def every_version(self) -> list[dict[str, Any]]:
        """Every version of every asset, by name, then version: their asset.json objects."""
        return [a.to_json() for a in _assets.list_assets(self.reader)]

    def _holding(self, name: str, sha: str) -> Path | None:
        """A file of an existing version of ``name`` with content ``sha``, or None."""
        for asset in reversed(_assets.versions(self.reader, name)):
            for f in asset.files:
                if f.get("sha256") == sha:
                    path = asset.dir / _assets.FILES_DIR / f["path"]
                    if path.is_file() and not path.is_symlink():
                        return path
        return None

    def blob_state(self, name: str, sha: str) -> dict[str, Any]:
        """How much of the upload ``sha`` has arrived; complete if a version already holds that content."""
        check_name(name)
        check_sha256(sha)
        held = self._holding(name, sha)
        if held is not None:
            return {"sha256": sha, "size": held.stat().st_size, "complete": True}
        return self.storage.upload_state(self.blobs / name, sha, f"asset {name}")

    def put_blob(self, name: str, sha: str, offset: int, total: int, data: bytes) -> dict[str, Any]:
        check_name(name)
        check_sha256(sha)
        with self.storage.faults.write("blob") as point, self.storage._lock(f"asset:{name}"):
            return self.storage.put_chunk(self.blobs / name, sha, offset, total, data, point)

    def place(self, name: str, body: bytes) -> dict[str, Any]:
        """Place the version that ``body`` (an asset.json) describes; its uploads must be complete.

        Answers ``{"ref", "version", "existing"}``: ``existing`` is null for a new version, "origin"
        when this asset.json was placed before, and "content" when the latest version holds the same files.
        """
        info, files, origin = parse_pushed(name, body)
        name_dir = self.reader.path / _assets.ASSETS_DIR / name
        from filelock import FileLock

        with self.storage.faults.write("asset") as point, self.storage._lock(f"asset:{name}"):
            try:
                name_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _storage_error(e, f"asset {name}") from e
            # The file lock too: `amltrack history promote` on the server's host may number a version.
            with FileLock(str(name_dir / _assets.LOCK_FILE)):
                existing = _assets.versions(self.reader, name)
                for asset in existing:
                    if asset.info.get("origin") == origin:
                        return {"ref": asset.ref, "version": asset.version, "existing": "origin"}
                latest = existing[-1] if existing else None
                if latest is not None and _assets._content(latest.files) == _assets._content(files):
                    return {"ref": latest.ref, "version": latest.version, "existing": "content"}
                for stale in name_dir.glob(f"{_STAGING}*"):  # a version a killed server was making
                    shutil.rmtree(stale, ignore_errors=True)
                version = max(_assets._version_numbers(name_dir), default=0) + 1
                self._make(name_dir, version, info, files, origin, point)
                return {"ref": f"{name}:{version}", "version": version, "existing": None}

    def _make(
        self,
        name_dir: Path,
        version: int,
        info: dict[str, Any],
        files: list[dict[str, Any]],
        origin: str,
        point: WritePoint,
    ) -> None:
        name = name_dir.name
        sources = {}
        for f in files:
            src = self.blobs / name / f["sha256"]
            if not src.is_file():
                src = self._holding(name, f["sha256"])
            if src is None:
                raise ApiError(
                    409,
                    "blob_missing",
                    f"content {f['sha256']} of file {f['path']!r} was not uploaded completely; upload it, "
                    "then send asset.json again",
                )
            if src.stat().st_size != f["size"]:
                raise ApiError(
                    400, "invalid_json", f"file {f['path']!r} of asset.json is not {f['size']} bytes"
                )
            sources[f["path"]] = src
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=name_dir))
        try:
            for f in files:
                dest = staging / _assets.FILES_DIR / f["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sources[f["path"]], dest)
            now = time.time()
            placed = {
                **{k: v for k, v in info.items() if k not in ("files", "version", "size")},
                "schema": fmt.SCHEMA_VERSION,
                "version": version,
                "files": files,
                "size": sum(f["size"] for f in files),
                "origin": origin,
                "pushed_version": info.get("version"),
                "pushed": fmt.utc_iso(now),
            }
            fmt.write_json_atomic(staging / _assets.ASSET_FILE, placed)
            os.chmod(staging, 0o777 & ~fmt._UMASK)
            point.midway()  # the version complete in its staging folder, not yet numbered
            os.rename(staging, name_dir / str(version))
        except OSError as e:
            raise _storage_error(e, f"asset {name}:{version}") from e
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        for f in files:  # placed: the uploads are copies now
            with contextlib.suppress(OSError):
                (self.blobs / name / f["sha256"]).unlink()
        with contextlib.suppress(OSError):
            (self.blobs / name).rmdir()  # unless another upload of the name waits there

    def open_file(self, ref: str, path: str) -> tuple[BinaryIO, int]:
        """A file of the asset version ``ref`` (NAME or NAME:VERSION), open, and its size."""
        check_path(path)
        try:
            asset = _assets.get(self.reader, ref)
            f = asset._open(path)
        except InvalidAssetNameError as e:
            raise ApiError(400, "invalid_asset", str(e)) from None
        except RefusedFileError:
            raise ApiError(404, "not_found", f"asset {ref} has no file {path!r} on the server") from None
        except LookupError as e:
            raise ApiError(404, "asset_not_found", str(e)) from None
        except AmltrackError as e:
            raise ApiError(500, "storage_error", f"the server could not read asset {ref}: {e}") from None
        return f, os.fstat(f.fileno()).st_size

    def get(self, ref: str) -> dict[str, Any]:
        try:
            return _assets.get(self.reader, ref).to_json()
        except InvalidAssetNameError as e:
            raise ApiError(400, "invalid_asset", str(e)) from None
        except LookupError as e:
            raise ApiError(404, "asset_not_found", str(e)) from None
