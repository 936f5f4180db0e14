"""amltrack's exceptions.

Every error amltrack raises on purpose is an ``AmltrackError``; each one also subclasses the builtin
whose meaning it shares, so ``except ValueError`` keeps working for callers who know nothing of
amltrack::

    AmltrackError
    ├── InvalidMetricError (ValueError)   a bad metric name, value or step, rejected at the call
    ├── InvalidPathError (ValueError)     an artifact path that is absolute, has "..", NUL, ...
    ├── RunNotFoundError (LookupError)    no run matches an id or prefix
    ├── AmbiguousRunError (LookupError)   a prefix matches more than one run
    ├── ArtifactNotFoundError (LookupError)
    │   └── EmptyPrefixError               promoting a prefix that holds no stored artifact
    ├── AssetNotFoundError (LookupError)
    ├── InvalidAssetNameError (ValueError)
    ├── MetricNotFoundError (LookupError)
    ├── StoreError (OSError)              a store that cannot be opened or has a newer schema
    ├── WriteError (OSError)              the background writer could not write a file
    └── RunFinishedError (RuntimeError)   logging into a logger after finish()

Messages say what happened, to what, and what to do.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousRunError",
    "AmltrackError",
    "ArtifactNotFoundError",
    "AssetNotFoundError",
    "EmptyPrefixError",
    "InvalidAssetNameError",
    "InvalidMetricError",
    "InvalidPathError",
    "MetricNotFoundError",
    "RunFinishedError",
    "RunNotFoundError",
    "StoreError",
    "WriteError",
]


class AmltrackError(Exception):
    """Base class of every error amltrack raises on purpose."""


class InvalidMetricError(AmltrackError, ValueError):
    """A metric name, value or step that amltrack will not store."""


class InvalidPathError(AmltrackError, ValueError):
    """An artifact path that is not a safe, relative POSIX path."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"artifact path {path!r} is not allowed: {reason}; "
            "use a relative POSIX path such as 'plots/loss.png'"
        )


class InvalidOutputsError(AmltrackError, ValueError):
    """An outputs folder that cannot be mirrored, such as one inside the store it would be copied to."""


class RunNotFoundError(AmltrackError, LookupError):
    """No run in the store matches the id or prefix."""

    def __init__(self, ref: str, store: object) -> None:
        self.ref = ref
        self.store = store
        super().__init__(
            f"no run matches {ref!r} in store {store}; list runs with 'amltrack history list' or pass --store"
        )


class AmbiguousRunError(AmltrackError, LookupError):
    """A run id prefix matches several runs."""

    def __init__(self, ref: str, matches: list[str]) -> None:
        self.ref = ref
        self.matches = matches
        shown = ", ".join(matches[:5]) + (" ..." if len(matches) > 5 else "")
        super().__init__(f"run prefix {ref!r} matches {len(matches)} runs ({shown}); give more characters")


class ArtifactNotFoundError(AmltrackError, LookupError):
    """The run has no stored artifact at that path."""

    def __init__(self, path: str, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        super().__init__(
            f"run {run_id} has no stored artifact {path!r}; "
            f"list its artifacts with 'amltrack history info -r {run_id}'"
        )


class MetricNotFoundError(AmltrackError, LookupError):
    """The run has no metric of that name."""

    def __init__(self, name: str, run_id: str) -> None:
        self.name = name
        self.run_id = run_id
        super().__init__(
            f"run {run_id} has no metric {name!r}; list its metrics with 'amltrack history info -r {run_id}'"
        )


class InvalidAssetNameError(AmltrackError, ValueError):
    """An asset name or NAME:VERSION reference that is not allowed."""

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"asset {name!r} is not allowed: {reason}")


class AssetNotFoundError(AmltrackError, LookupError):
    """No asset of that name, or no such version of it."""

    def __init__(self, ref: str, store: object, path: str | None = None) -> None:
        self.ref = ref
        self.store = store
        self.path = path
        if path is not None:
            message = f"asset {ref} has no file {path!r}; list its files with 'amltrack asset show {ref}'"
        else:
            message = (
                f"no asset {ref!r} in store {store}; list assets with 'amltrack asset list' or pass --store"
            )
        super().__init__(message)


class EmptyPrefixError(ArtifactNotFoundError):
    """No stored artifact of the run is at or under the prefix: an asset is never empty."""

    def __init__(self, prefix: str, run_id: str) -> None:
        self.path = prefix
        self.run_id = run_id
        Exception.__init__(
            self,
            f"run {run_id} has no stored artifact at or under {prefix!r}, so there is nothing to "
            f"promote; list its artifacts with 'amltrack history info -r {run_id}'",
        )


class StoreError(AmltrackError, OSError):
    """A store or run directory that amltrack cannot open."""


class WriteError(AmltrackError, OSError):
    """The background writer failed to write a file of the run."""

    def __init__(self, path: object, cause: BaseException) -> None:
        self.path = str(path)
        self.cause = cause
        errno = getattr(cause, "errno", None)
        super().__init__(
            errno,
            f"amltrack could not write {self.path}: {cause}; "
            "free disk space or raise the file-size limit; records not yet written are kept "
            "and written again on the next flush",
        )

    def __str__(self) -> str:
        return self.strerror or ""


class RunFinishedError(AmltrackError, RuntimeError):
    """The logger's run has been finished; it takes no more records."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"run {run_id} is finished and takes no more records; "
            "call amltrack.get_logger() or amltrack.start_run() for a new run"
        )
