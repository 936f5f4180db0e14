"""Errors of ``amltrack sync``::

AmltrackError
└── SyncError                            a run could not be pushed
    ├── RemoteConfigError (ValueError)   an unknown remote name, a bad URL, no default remote
    ├── RemoteError (RuntimeError)       the remote refused a request: .status, .code, .message
    └── RemoteUnavailableError (ConnectionError)   the remote could not be reached
"""

from __future__ import annotations

from typing import Any

from .._errors import AmltrackError


class SyncError(AmltrackError):
    """A run could not be pushed, or a remote could not be used."""


class RemoteConfigError(SyncError, ValueError):
    """A remote that is not configured, or configured wrongly."""


class RemoteError(SyncError, RuntimeError):
    """The remote answered a request with an error."""

    def __init__(
        self, url: str, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        hint = {
            "unauthorized": "; set AMLTRACK_TOKEN or the remote's token ('amltrack remote add NAME URL --token T')",
            "forbidden": "; use a token with the write scope",
        }.get(code, "")
        super().__init__(f"{url} refused the request ({status} {code}): {message}{hint}")


class RemoteUnavailableError(SyncError, ConnectionError):
    """The remote could not be reached, even after retries."""

    def __init__(self, url: str, cause: BaseException) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"cannot reach {url} ({type(cause).__name__}: {cause}); check that the server runs and the URL; "
            "syncing again resumes where this stopped"
        )

    def __str__(self) -> str:
        return str(self.args[0])
