"""``amltrack sync``: push finished runs to a remote, exactly once, resumably.

    import amltrack.sync
    report = amltrack.sync.sync(to="http://127.0.0.1:8765")   # or a remote's name; None: the default
    report.counts()   # {"pushed": 3, "up_to_date": 12, "would_push": 0, "skipped": 1, "failed": 0}

Modules: ``_sync`` the loop, ``_local`` what a local run holds, ``_ledger`` what went where,
``_remotes`` the remotes config, ``_remote`` the seam a remote kind implements, and one module per
kind: ``_amltrack`` for amltrack's own server, ``_mlflow`` for MLflow tracking servers
(``mlflow+http://`` URLs). ``docs/sync.md`` has the protocol and guarantees.
"""

from typing import TYPE_CHECKING, Any

from ._errors import RemoteConfigError, RemoteError, RemoteUnavailableError, SyncError
from ._ledger import remotes_of
from ._local import Snapshot, snapshot
from ._remote import NullProgress, Progress, PushResult, Remote, open_remote
from ._remotes import RemoteEntry, Remotes, config_dir
from ._sync import RunOutcome, SyncReport, sync

if TYPE_CHECKING:
    from ._amltrack import AmltrackRemote
    from ._mlflow import MlflowRemote

__all__ = [
    "AmltrackRemote",
    "MlflowRemote",
    "NullProgress",
    "Progress",
    "PushResult",
    "Remote",
    "RemoteConfigError",
    "RemoteEntry",
    "RemoteError",
    "RemoteUnavailableError",
    "Remotes",
    "RunOutcome",
    "Snapshot",
    "SyncError",
    "SyncReport",
    "config_dir",
    "open_remote",
    "remotes_of",
    "snapshot",
    "sync",
]


def __getattr__(name: str) -> Any:
    # The remotes' clients are imported on first use, not with the package: they pull in httpx
    # (about 0.15 s), which a sync whose ledger answers for every run never needs, and only mlflow+
    # URLs need the MLflow module (open_remote imports each when a remote is opened).
    if name == "AmltrackRemote":
        from ._amltrack import AmltrackRemote as value
    elif name == "MlflowRemote":
        from ._mlflow import MlflowRemote as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
