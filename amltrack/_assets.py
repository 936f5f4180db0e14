"""Assets: a run's artifacts under a prefix, promoted into a named, versioned copy in the store.

    import amltrack
    from amltrack import _assets
    store = amltrack.Store()
    model = _assets.promote(store.run("last"), "model", "mnist-cnn")   # -> mnist-cnn:1
    _assets.get(store, "mnist-cnn").download("deploy/")               # the latest version

An asset outlives nothing and depends on nothing: its files are copies, so the run it came from can
be deleted. Each version is a directory, made complete under a temporary name and renamed into
place, so a reader sees a version whole or not at all::

    .amltrack/assets/<name>/<version>/asset.json     name, version, source run, prefix, files, created
    .amltrack/assets/<name>/<version>/files/<path>   each file at its artifact path

Versions count 1, 2, 3 per name. Promoting content identical to the latest version (the same paths
with the same sha256) returns that version instead of making a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from . import _format as fmt
from ._errors import (
    AssetNotFoundError,
    EmptyPrefixError,
    InvalidAssetNameError,
    InvalidPathError,
    StoreError,
)
from ._files import COPY_BLOCK
from ._store import Run, Store, open_beneath

__all__ = [
    "Asset",
    "AssetNotFoundError",
    "EmptyPrefixError",
    "InvalidAssetNameError",
    "check_asset_name",
    "get",
    "list_assets",
    "parse_ref",
    "promote",
    "versions",
]

ASSETS_DIR = fmt.ASSETS_DIR
ASSET_FILE = fmt.ASSET_FILE
FILES_DIR = fmt.ASSET_FILES_DIR
LOCK_FILE = fmt.ASSET_LOCK
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_asset_name(name: object) -> str:
    """Return ``name`` if it can name an asset (a single path part, no ':'), else raise."""
    if not isinstance(name, str):
        raise InvalidAssetNameError(name, f"it is a {type(name).__name__}, not a str")
    if not _NAME_RE.match(name):
        raise InvalidAssetNameError(
            name, "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"NAME"`` -> (NAME, None) for the latest version; ``"NAME:3"`` -> (NAME, 3)."""
    if not isinstance(ref, str):
        raise InvalidAssetNameError(ref, f"it is a {type(ref).__name__}, not a str")
    name, sep, version = ref.partition(":")
    check_asset_name(name)
    if not sep or version == "latest":
        return name, None
    if not version.isascii() or not version.isdigit() or int(version) < 1:
        raise InvalidAssetNameError(ref, f"version {version!r} is not a number 1, 2, 3, ... or 'latest'")
    return name, int(version)


def _check_prefix(prefix: object) -> str:
    if isinstance(prefix, str) and prefix.endswith("/") and prefix.strip("/"):
        prefix = prefix.rstrip("/")
    return fmt.check_artifact_path(prefix)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _copy(src: BinaryIO, dest: Path) -> tuple[int, str]:
    """Copy the open file ``src`` to ``dest`` (whose folder exists), close ``src``, and return the size
    and sha256 of what was copied."""
    digest = hashlib.sha256()
    size = 0
    with src as f, open(dest, "wb") as out:
        while block := f.read(COPY_BLOCK):
            out.write(block)
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _content(files: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((f["path"], str(f.get("sha256"))) for f in files)


class Asset:
    """One version of a named asset: ``name``, ``version``, ``info`` (its asset.json) and its files.

    asset = _assets.get(store, "mnist-cnn:2")
    asset.ref, [f["path"] for f in asset.files]
    asset.read("model/weights.json")
    asset.download("deploy/")
    """

    def __init__(self, path: Path, info: dict[str, Any], *, reused: bool = False) -> None:
        self.dir = path
        self.info = info
        self.name: str = info["name"]
        self.version: int = info["version"]
        # Set by promote(): True when the content was already the latest version's.
        self.reused = reused

    def __repr__(self) -> str:
        return f"<Asset {self.ref} from run {self.info.get('source_run')}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Asset) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    @property
    def ref(self) -> str:
        """``NAME:VERSION``."""
        return f"{self.name}:{self.version}"

    @property
    def files(self) -> list[dict[str, Any]]:
        """One ``{"path", "size", "sha256"}`` per file, sorted by path."""
        files = self.info.get("files")
        if not isinstance(files, list):
            return []
        return [f for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files if type(f.get("size")) is int)

    def _open(self, path: str) -> BinaryIO:
        """The asset's file ``path``, open, reached through no symlink (RefusedFileError if one is on
        its way: asset.json and the files are plain files anyone can edit)."""
        fmt.check_artifact_path(path)
        missing = AssetNotFoundError(self.ref, self.dir.parent.parent.parent, path)
        if not any(f["path"] == path for f in self.files):
            raise missing
        try:
            return open_beneath(self.dir, f"{FILES_DIR}/{path}")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise missing from None

    def read(self, path: str) -> bytes:
        """The bytes of the asset's file ``path``."""
        with self._open(path) as f:
            return f.read()

    def download(self, dest: str | os.PathLike[str]) -> list[Path]:
        """Write every file into the folder ``dest`` at its path; returns the files written.

        Nothing is written outside ``dest``: paths are checked again here (asset.json is a plain
        file anyone can edit), a symlink inside ``dest`` that leads out of it is refused, and each
        file is renamed into place, which replaces a symlink at its path instead of following it.
        Each file's sha256 is checked against asset.json before it lands.
        """
        root = Path(dest).absolute()
        if root.exists() and not root.is_dir():
            raise StoreError(
                f"cannot download asset {self.ref} into {root}: it is a file, not a folder; "
                "give a folder (it is made if missing)"
            )
        root.mkdir(parents=True, exist_ok=True)
        real_root = root.resolve()
        plan = []
        for f in self.files:
            path = fmt.check_artifact_path(f.get("path"))
            target = root / path
            if not target.parent.resolve().is_relative_to(real_root):
                raise InvalidPathError(path, f"it leads outside {root} through a symlink")
            plan.append((path, target, f.get("sha256")))
        written = []
        for path, target, sha in plan:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            try:
                _, digest = _copy(self._open(path), Path(tmp))
                if digest != sha:
                    raise StoreError(
                        f"file {path!r} of asset {self.ref} does not match the sha256 in its "
                        f"{ASSET_FILE}: it was changed after promotion; promote it again"
                    )
                os.chmod(tmp, 0o666 & ~fmt._UMASK)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            written.append(target)
        return written

    def to_json(self) -> dict[str, Any]:
        """The asset.json object: the shape ``amltrack asset show --json`` prints."""
        return dict(self.info)


def _assets_root(store: Store) -> Path:
    return store.path / ASSETS_DIR


def _load(version_dir: Path) -> Asset | None:
    """The version in ``version_dir``; None if there is none; StoreError if its asset.json is broken."""
    try:
        info = fmt.read_json(version_dir / ASSET_FILE)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not isinstance(info.get("name"), str) or type(info.get("version")) is not int:
        raise StoreError(
            f"{version_dir / ASSET_FILE} has no name or version; restore it or delete {version_dir}"
        )
    return Asset(version_dir, info)


def _version_numbers(name_dir: Path) -> list[int]:
    try:
        entries = os.listdir(name_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(e) for e in entries if e.isascii() and e.isdigit() and not e.startswith("0"))


def versions(store: Store, name: str) -> list[Asset]:
    """Every version of asset ``name``, oldest first (empty if there is none)."""
    name_dir = _assets_root(store) / check_asset_name(name)
    out = []
    for v in _version_numbers(name_dir):
        try:
            asset = _load(name_dir / str(v))
        except StoreError as e:  # one broken version does not hide the others
            fmt.warn_once(str(name_dir / str(v)), f"amltrack skipped asset {name}:{v}: {e}")
            continue
        if asset is not None:
            out.append(asset)
    return out


def list_assets(store: Store) -> list[Asset]:
    """Every version of every asset in the store, by name, then version."""
    try:
        names = sorted(os.listdir(_assets_root(store)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [a for n in names if _NAME_RE.match(n) for a in versions(store, n)]


def get(store: Store, ref: str) -> Asset:
    """The asset ``NAME:VERSION``, or the latest version of ``NAME``."""
    name, version = parse_ref(ref)
    name_dir = _assets_root(store) / name
    if version is None:
        found = versions(store, name)
        if not found:
            raise AssetNotFoundError(ref, store.path)
        return found[-1]
    asset = _load(name_dir / str(version))
    if asset is None:
        raise AssetNotFoundError(ref, store.path)
    return asset


def promote(run: Run, prefix: str, name: str) -> Asset:
    """Copy every stored artifact of ``run`` at or under ``prefix`` into a new version of asset ``name``.

    ``prefix`` is an artifact path ("model/weights.pt") or a folder of them ("model" or "model/");
    it matches whole path parts, so "model" does not take "models/x". The files keep their artifact
    paths. If the content is the same as the latest version's, that version is returned (with
    ``reused`` set) and nothing is written. Raises EmptyPrefixError when nothing matches.

        asset = _assets.promote(store.run("7f3a9c"), "model", "mnist-cnn")
        asset.ref   # 'mnist-cnn:1'
    """
    name = check_asset_name(name)
    prefix = _check_prefix(prefix)
    entries = [
        a
        for a in run.artifacts()
        if a.get("status") == "stored" and isinstance(a.get("path"), str) and _under(a["path"], prefix)
    ]
    if not entries:
        raise EmptyPrefixError(prefix, run.id)
    name_dir = _assets_root(run.store) / name
    name_dir.mkdir(parents=True, exist_ok=True)
    # Copy first, outside the lock: the lock only covers choosing the number and the rename.
    staging = Path(tempfile.mkdtemp(prefix=".promote-", dir=name_dir))
    try:
        files: list[dict[str, Any]] = []
        for entry in entries:
            path = fmt.check_artifact_path(entry["path"])
            dest = staging / FILES_DIR / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            size, sha = _copy(run.open_artifact(path), dest)  # never through a symlink
            files.append({"path": path, "size": size, "sha256": sha})
        files.sort(key=lambda f: f["path"])
        from filelock import FileLock  # here, not at import: every CLI command imports this module

        with FileLock(str(name_dir / LOCK_FILE)):
            existing = versions(run.store, name)
            latest = existing[-1] if existing else None
            if latest is not None and _content(latest.files) == _content(files):
                latest.reused = True
                return latest
            # Numbered after every version folder, even an unreadable one: a number is never reused.
            version = max(_version_numbers(name_dir), default=0) + 1
            now = time.time()
            info = {
                "schema": fmt.SCHEMA_VERSION,
                "name": name,
                "version": version,
                "source_run": run.id,
                "experiment": run.experiment,
                "prefix": prefix,
                "files": files,
                "size": sum(f["size"] for f in files),
                "created": fmt.utc_iso(now),
                "created_ts": now,
            }
            fmt.write_json_atomic(staging / ASSET_FILE, info)
            os.chmod(staging, 0o777 & ~fmt._UMASK)  # mkdtemp makes 0700; a version is as shareable as a run
            final = name_dir / str(version)
            os.rename(staging, final)
            return Asset(final, info)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
