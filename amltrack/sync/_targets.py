"""The kinds of remote sync can push to: one table, and everything that depends on the kind.

``TARGETS`` names each kind's URL schemes, the class that is its client (imported only when a remote of
that kind is opened, or the class is asked for as ``amltrack.sync.<Class>``), and how a configured
remote's token reaches it. ``check_url``, ``kind_of_url``, ``Remotes.add``, ``open_remote``, the sync
loop and the package's lazy exports all read it; nothing else lists the kinds.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .. import _env
from ._errors import RemoteConfigError

if TYPE_CHECKING:
    from ._config import RemoteEntry
    from ._remote import Remote

TOKEN_ENV = _env.TOKEN


@dataclass(frozen=True)
class Target:
    """One kind of remote.

    ``client`` is ``"module:Class"``, the module relative to ``amltrack.sync`` when it starts with a
    dot; the class takes ``(url, token)`` and has what ``_remote.Remote`` names. ``describe`` ends
    the message for a URL of no kind (unused for the first kind, the default). ``token_env``, if
    set, is a variable whose value overrides the remote's own token. ``assets``: the kind takes
    promoted assets (``push_asset``).
    """

    name: str
    schemes: tuple[str, ...]
    client: str
    describe: str = ""
    token_env: str | None = None
    assets: bool = False

    @property
    def export(self) -> str:
        """The name the client class has in ``amltrack.sync``."""
        return self.client.rpartition(":")[2]

    def load(self) -> type[Remote]:
        module, _, name = self.client.partition(":")
        return getattr(importlib.import_module(module, __package__), name)

    def open(self, entry: RemoteEntry) -> Remote:
        token = (self.token_env and os.environ.get(self.token_env)) or entry.token
        return self.load()(entry.url, token)  # type: ignore[call-arg]


# The first row is the default: a bare http(s):// URL is amltrack's own server.
TARGETS: dict[str, Target] = {
    k.name: k
    for k in (
        Target("amltrack", ("http", "https"), "._amltrack:AmltrackRemote", token_env=TOKEN_ENV, assets=True),
        Target(
            "mlflow",
            ("mlflow+http", "mlflow+https"),
            "._mlflow:MlflowRemote",
            # $AMLTRACK_TOKEN is for amltrack servers; MlflowRemote reads MLflow's own variables.
            describe="for an MLflow tracking server",
        ),
        # Credentials, region and endpoint come from AWS's own chain (and the URL's ?endpoint=).
        Target(
            "bucket", ("s3",), "._bucket:BucketRemote", describe="for an S3-compatible bucket", assets=True
        ),
    )
}


def default() -> Target:
    return next(iter(TARGETS.values()))


def kind_of_url(url: str) -> str:
    """The remote kind a URL names by its scheme: ``mlflow`` for mlflow+http(s)://, else the
    default, ``amltrack``."""
    scheme = urlsplit(url).scheme
    return next((k.name for k in TARGETS.values() if scheme in k.schemes), default().name)


def _schemes(kind: Target) -> str:
    return " or ".join(f"{s}://" for s in kind.schemes)


def check_url(url: str) -> str:
    """``url`` without a trailing slash, if it has a host and the scheme of a kind."""
    parts = urlsplit(url)
    if not parts.hostname or not any(parts.scheme in k.schemes for k in TARGETS.values()):
        first, *others = TARGETS.values()
        more = ", ".join(f"{_schemes(k)} {k.describe}" for k in others)
        raise RemoteConfigError(
            f"remote URL {url!r} is not an {_schemes(first)} URL with a host"
            + (f" (or {more})" if more else "")
        )
    return url.rstrip("/")


def get(name: str, label: str) -> Target:
    """The kind called ``name``, of the remote ``label``."""
    try:
        return TARGETS[name]
    except KeyError:
        raise RemoteConfigError(
            f"remote {label} has kind {name!r}, which this amltrack cannot push to"
        ) from None


def open_remote(entry: RemoteEntry) -> Remote:
    """The client for a configured remote, of the class its kind names; its token is the remote's own,
    or the kind's variable if set (``$AMLTRACK_TOKEN`` for an amltrack server)."""
    return get(entry.kind, entry.label).open(entry)


def export(name: str) -> type[Remote] | None:
    """The client class ``amltrack.sync.<name>``, if a kind has one of that name."""
    for kind in TARGETS.values():
        if kind.export == name:
            return kind.load()
    return None
