"""The ledger: what a run has sent to each remote, in ``runs/<id>/sync/<remote-key>.json``.

The remote is the authority on what it holds; the ledger is a cache of the last complete push that
lets ``sync`` skip an unchanged run without asking, and tells which remotes a run went to. The
store reader ignores the ``sync/`` folder.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

from .. import _format as fmt
from .._errors import StoreError
from ._errors import SyncError

LEDGER_DIR = fmt.LEDGER_DIR


def remote_key(kind: str, url: str) -> str:
    """The ledger file name of a remote: its kind and a hash of its URL (names can be renamed)."""
    return f"{kind}-{hashlib.sha256(url.rstrip('/').encode()).hexdigest()[:16]}"


def path(run_dir: Path, key: str) -> Path:
    return run_dir / LEDGER_DIR / f"{key}.json"


def read(run_dir: Path, key: str) -> dict[str, Any] | None:
    try:
        return fmt.read_json(path(run_dir, key))
    except (FileNotFoundError, NotADirectoryError, StoreError):
        return None


def write(run_dir: Path, key: str, entry: dict[str, Any]) -> None:
    p = path(run_dir, key)
    p.parent.mkdir(exist_ok=True)
    fmt.write_json_atomic(p, entry)


def remotes_of(run_dir: Path) -> list[dict[str, Any]]:
    """Every ledger entry of the run: one per remote it was pushed to."""
    out = []
    for p in sorted((run_dir / LEDGER_DIR).glob("*.json")):
        try:
            out.append(fmt.read_json(p))
        except (OSError, StoreError):
            continue
    return out


# How long a sync waits for another one pushing the same run to the same remote, and after how
# long it says that it waits. The other push ends in seconds unless the run is large or the link
# slow; overlapping syncs (cron) then take turns run by run instead of failing.
LOCK_TIMEOUT = 60.0
LOCK_PATIENCE = 3.0


@contextlib.contextmanager
def locked(
    run_dir: Path,
    key: str,
    *,
    timeout: float = LOCK_TIMEOUT,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the run's lock for this remote: two syncs never push one run to one remote at once.

    Waits up to ``timeout`` seconds for another sync to finish with the run, calling ``on_wait``
    with a message if that takes more than LOCK_PATIENCE seconds; then SyncError.

        with locked(run_dir, key):
            ...  # ask the remote what it holds, and send the rest
    """
    lock_path = run_dir / LEDGER_DIR / f"{key}.lock"
    lock_path.parent.mkdir(exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=min(timeout, LOCK_PATIENCE))
    except LockTimeout:
        if timeout <= LOCK_PATIENCE:
            raise _busy(run_dir, timeout) from None
        if on_wait is not None:
            on_wait(
                f"another sync is pushing run {run_dir.name} to this remote; waiting for it "
                f"(up to {timeout:g} s)"
            )
        try:
            lock.acquire(timeout=timeout - LOCK_PATIENCE)
        except LockTimeout:
            raise _busy(run_dir, timeout) from None
    try:
        yield
    finally:
        lock.release()


def _busy(run_dir: Path, timeout: float) -> SyncError:
    return SyncError(
        f"another sync has been pushing run {run_dir.name} to this remote for over {timeout:g} s; "
        "sync again when it is done"
    )
