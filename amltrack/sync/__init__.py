"""``amltrack sync``: push finished runs to a remote, exactly once, resumably.

    import amltrack.sync
    report = amltrack.sync.sync(to="http://127.0.0.1:8765")   # or a remote's name; None: the default
    report.counts()   # {"pushed": 3, "up_to_date": 12, "would_push": 0, "skipped": 1, "failed": 0}

Modules: ``_sync`` the loop, ``_local`` what a local run holds, ``_ledger`` what went where,
``_remotes`` the remotes config, ``_remote`` the seam a remote kind implements, and one module per
kind: ``_amltrack`` for amltrack's own server, ``_mlflow`` for MLflow tracking servers
(``mlflow+http://`` URLs). ``docs/sync.md`` has the protocol and guarantees.
"""

from ._amltrack import AmltrackRemote
from ._errors import RemoteConfigError, RemoteError, RemoteUnavailableError, SyncError
from ._ledger import remotes_of
from ._local import Snapshot, snapshot
from ._mlflow import MlflowRemote
from ._remote import NullProgress, Progress, PushResult, Remote, open_remote
from ._remotes import RemoteEntry, Remotes, config_dir
from ._sync import RunOutcome, SyncReport, sync

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
