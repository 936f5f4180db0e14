"""Errors of ``amltrack sync``::

AmltrackError
└── SyncError                            a run could not be pushed
    ├── RemoteConfigError (ValueError)   an unknown remote name, a bad URL, no default remote, a URL
    │                                    that is not a server of the remote's kind
    ├── RemoteError (RuntimeError)       the remote refused a request: .status, .code, .message
    └── RemoteUnavailableError (ConnectionError)   the remote could not be reached

``remote_wide`` is True on an error that every other run would meet as well (the remote cannot be
reached, refuses the token, is not the right kind of server): sync stops there, and reports the runs
it did not try, instead of sending the same doomed requests for each of them.
"""

from __future__ import annotations

from typing import Any

from .._errors import AmltrackError


class SyncError(AmltrackError):
    """A run could not be pushed, or a remote could not be used."""

    remote_wide = False


class RemoteConfigError(SyncError, ValueError):
    """A remote that is not configured, or configured wrongly."""

    remote_wide = True


class RemoteError(SyncError, RuntimeError):
    """The remote answered a request with an error.

    ``hint`` (what to do) follows the remote's message; ``remote_wide`` defaults to True for a
    401, as a refused credential is refused for every run.
    """

    def __init__(
        self,
        url: str,
        status: int,
        code: str,
        message: str,
        extra: dict[str, Any] | None = None,
        *,
        hint: str = "",
        remote_wide: bool | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.remote_wide = status == 401 if remote_wide is None else remote_wide
        super().__init__(f"{url} refused the request ({status} {code}): {message}{hint}")


class RemoteUnavailableError(SyncError, ConnectionError):
    """The remote could not be reached, even after retries."""

    remote_wide = True

    def __init__(self, url: str, cause: BaseException) -> None:
        self.url = url
        self.cause = cause
        super().__init__(
            f"cannot reach {url} ({type(cause).__name__}: {cause}); check that the server runs and the URL; "
            "syncing again resumes where this stopped"
        )

    def __str__(self) -> str:
        return str(self.args[0])
