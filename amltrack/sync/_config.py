"""Named remotes, one of them the default, in ``remotes.json`` in the user's config folder.

The folder is ``$AMLTRACK_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/amltrack``, else
``~/.config/amltrack``. The file may hold tokens, so it is written readable by its owner only::

    {"default": "team",
     "remotes": {"team": {"url": "https://amltrack.example.org", "kind": "amltrack", "token": "..."}}}
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .. import _env
from .._errors import StoreError
from .._format import read_json
from ._errors import RemoteConfigError
from ._targets import TARGETS, TOKEN_ENV, check_url, default, kind_of_url

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def config_dir() -> Path:
    env = os.environ.get(_env.CONFIG_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "amltrack"


@dataclass
class RemoteEntry:
    """A remote as configured: a name (None for a bare URL), its URL and kind, and a token if any."""

    name: str | None
    url: str
    kind: str = field(default_factory=lambda: default().name)
    token: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.url})" if self.name else self.url

    def effective_token(self) -> str | None:
        """``$AMLTRACK_TOKEN`` if set, else the remote's own token."""
        return os.environ.get(TOKEN_ENV) or self.token


class Remotes:
    """The remotes config file.

    remotes = Remotes.load()
    remotes.add("team", "https://amltrack.example.org", token=token)
    remotes.save()
    remotes.resolve(None).url   # the default remote
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.default: str | None = data.get("default") if isinstance(data.get("default"), str) else None
        raw = data.get("remotes")
        if not isinstance(raw, dict):
            raw = {}
        self.entries: dict[str, RemoteEntry] = {}
        for name, e in raw.items():
            if isinstance(e, dict) and isinstance(e.get("url"), str):
                self.entries[name] = RemoteEntry(
                    name, e["url"], str(e.get("kind") or kind_of_url(e["url"])), e.get("token")
                )

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Remotes:
        p = Path(path) if path is not None else config_dir() / "remotes.json"
        try:
            data = read_json(p)
        except FileNotFoundError:
            data = {}
        except StoreError as e:
            raise RemoteConfigError(f"{e}") from None
        return cls(p, data)

    def save(self) -> None:
        data = {
            "default": self.default,
            "remotes": {
                n: {k: v for k, v in (("url", e.url), ("kind", e.kind), ("token", e.token)) if v is not None}
                for n, e in sorted(self.entries.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".remotes.", suffix=".tmp", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def add(
        self, name: str, url: str, *, kind: str | None = None, token: str | None = None, default: bool = False
    ) -> RemoteEntry:
        if not _NAME_RE.match(name):
            raise RemoteConfigError(
                f"remote name {name!r} is not valid: use up to 64 letters, digits, '.', '_' or '-'"
            )
        url = check_url(url)
        kind = kind or kind_of_url(url)
        if kind not in TARGETS:
            raise RemoteConfigError(f"remote kind {kind!r} is not one of {', '.join(TARGETS)}")
        if kind != kind_of_url(url):
            raise RemoteConfigError(f"remote URL {url!r} is not a URL of an {kind} remote")
        entry = RemoteEntry(name, url, kind, token)
        self.entries[name] = entry
        if default or self.default not in self.entries:
            self.default = name
        return entry

    def remove(self, name: str) -> None:
        self.get(name)
        del self.entries[name]
        if self.default == name:
            self.default = min(self.entries) if self.entries else None

    def set_default(self, name: str) -> None:
        self.get(name)
        self.default = name

    def get(self, name: str) -> RemoteEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "none"
            raise RemoteConfigError(
                f"no remote named {name!r} (configured: {known}); add it with 'amltrack remote add {name} URL'"
            ) from None

    def resolve(self, to: str | None) -> RemoteEntry:
        """``to`` as a URL or a remote name; None means the default remote."""
        if to is not None and "://" in to:
            return RemoteEntry(None, check_url(to), kind_of_url(to))
        if to is not None:
            return self.get(to)
        if self.default is None or self.default not in self.entries:
            raise RemoteConfigError(
                "no default remote: pass --to URL, or add one with 'amltrack remote add NAME URL'"
            )
        return self.entries[self.default]
