"""``amltrack sync``: push finished runs to a remote, exactly once, resumably.

    import amltrack.sync
    report = amltrack.sync.sync(to="http://127.0.0.1:8765")   # or a remote's name; None: the default
    report.counts()   # {"pushed": 3, "up_to_date": 12, "would_push": 0, "skipped": 1, "failed": 0}

Modules: ``_sync`` the loop, ``_local`` what a local run holds, ``_ledger`` what went where,
``_assets`` pushing promoted assets, ``_config`` the remotes config, ``_remote`` the seam a remote
kind implements (the ``Remote`` protocol), ``_targets`` the table of remote kinds (targets), ``_http`` the HTTP client
and its one retry policy, ``_answers`` checks of a server's answers, ``_reader`` reading runs back
from an amltrack server, and one module (or package) per kind: ``_amltrack`` for amltrack's own
server, ``_mlflow`` for MLflow tracking servers (``mlflow+http://`` URLs), ``_bucket`` for
S3-compatible buckets (``s3://`` URLs; ``_bucket_reader`` reads them in place). ``docs/sync.md`` has
the protocol and guarantees.

Adding a sync target is one new module plus one table row: write the module (say ``_s3.py``) with a
class that takes ``(url, token)`` and has what ``_remote.Remote`` names (an HTTP target may build
on ``_http.HttpClient``; nothing requires it), and add its ``Target`` row to ``_targets.TARGETS`` with
its URL schemes. The row alone makes ``check_url`` and ``kind_of_url`` accept its URLs, ``Remotes.add``
(``amltrack remote add``) store them, ``open_remote`` and ``sync`` open its class, and
``amltrack.sync.<Class>`` import it on first use. What the ledger keeps for the remote is the
``PushResult.remote`` its pushes return, handed back to it as ``remote_state``.
"""

from typing import TYPE_CHECKING, Any

from . import _targets
from ._config import RemoteEntry, Remotes, config_dir
from ._errors import RemoteConfigError, RemoteError, RemoteUnavailableError, SyncError
from ._ledger import remotes_of
from ._local import Snapshot, snapshot
from ._remote import NullProgress, Progress, PushResult, Remote
from ._sync import RunOutcome, SyncReport, sync
from ._targets import open_remote

if TYPE_CHECKING:  # for type checkers only: at run time the table's rows are the exports
    from ._amltrack import AmltrackRemote as AmltrackRemote
    from ._bucket import BucketRemote as BucketRemote
    from ._mlflow import MlflowRemote as MlflowRemote

__all__ = [
    *(kind.export for kind in _targets.TARGETS.values()),
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
    value = _targets.export(name)
    if value is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *(kind.export for kind in _targets.TARGETS.values())})
