"""amltrack's exceptions.

Every error amltrack raises on purpose is an ``AmltrackError``; each one also subclasses the builtin
whose meaning it shares, so ``except ValueError`` keeps working for callers who know nothing of
amltrack::

    AmltrackError
    ├── InvalidMetricError (ValueError)   a bad metric name, value or step, rejected at the call
    ├── InvalidPathError (ValueError)     an artifact path that is absolute, has "..", NUL, ...
    ├── InvalidRedactPatternError (ValueError) a redaction pattern that is not a regular expression
    ├── QueryError (ValueError)           a filter expression or sort key that does not parse
    ├── RunNotFoundError (LookupError)    no run matches an id or prefix
    ├── AmbiguousRunError (LookupError)   a prefix matches more than one run
    ├── ArtifactNotFoundError (LookupError)
    │   └── EmptyPrefixError               promoting a prefix that holds no stored artifact
    ├── AssetNotFoundError (LookupError)
    ├── InvalidAssetNameError (ValueError)
    ├── MetricNotFoundError (LookupError)
    ├── RefusedFileError (PermissionError) an artifact or asset file reached through a symlink
    ├── StoreError (OSError)              a store that cannot be opened or has a newer schema
    ├── WriteError (OSError)              the background writer could not write a file
    ├── RunFinishedError (RuntimeError)   logging into a logger after finish()
    ├── RunHeldError (RuntimeError)       resuming a run that a live process holds
    └── MissingExtraError (ImportError)   a call that needs an optional dependency not installed

Messages say what happened, to what, and what to do.
"""

from __future__ import annotations

import errno as _errno
from itertools import islice

__all__ = [
    "AmbiguousRunError",
    "AmltrackError",
    "ArtifactNotFoundError",
    "AssetNotFoundError",
    "EmptyPrefixError",
    "InvalidAssetNameError",
    "InvalidMetricError",
    "InvalidPathError",
    "InvalidRedactPatternError",
    "MetricNotFoundError",
    "MissingExtraError",
    "QueryError",
    "RefusedFileError",
    "RunFinishedError",
    "RunHeldError",
    "RunNotFoundError",
    "StoreError",
    "WriteError",
]


class AmltrackError(Exception):
    """Base class of every error amltrack raises on purpose."""


ECHO_CHARS = 100  # the most of a caller's value that an error message shows
_ECHO_ITEMS = 6  # items shown of a list, tuple, set or dict
_ECHO_LEVELS = 3  # levels of nesting shown
_ECHO_BITS = 320  # an int of more bits (about 100 digits) is shown by its size
_BRACKETS: tuple[tuple[type, str, str], ...] = (
    (list, "[", "]"),
    (tuple, "(", ")"),
    (dict, "{", "}"),
    (set, "{", "}"),
    (frozenset, "frozenset({", "})"),
)


def short_repr(value: object, limit: int = ECHO_CHARS) -> str:
    """``value`` for an error message: its repr on one line, cut to at most ``limit`` characters.

    It is built from the first few items and levels of the value only, so a list of a million
    items, or one nested a thousand levels deep, costs what a small one does. A collection of a
    type it does not know is shown by its type alone, as its own ``repr()`` could be of any size.

        short_repr([[0] * 10**6])   # '[[0, 0, 0, 0, 0, 0, ...]]'
        short_repr("x" * 10**6)     # "'xxx...xxx'..." (the quote closes)
    """
    text = _echo(value, limit, _ECHO_LEVELS)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _echo(v: object, budget: int, levels: int) -> str:
    # Only the base types' own methods are called (str.__getitem__, int.__repr__, ...), so a
    # subclass's override cannot make the text large or slow.
    if v is None or isinstance(v, bool):
        return "None" if v is None else repr(bool(v))
    if isinstance(v, (str, bytes, bytearray)):
        return _echo_text(v, budget)
    if isinstance(v, int):
        bits = int.bit_length(v)
        return int.__repr__(v) if bits <= _ECHO_BITS else f"<int of {bits} bits>"
    if isinstance(v, float):
        return float.__repr__(v)
    found = next((row for row in _BRACKETS if isinstance(v, row[0])), None)
    if found is None:
        return _echo_other(v, budget)
    base, start, end = found
    size = base.__len__(v)  # type: ignore[attr-defined]
    if size == 0:
        return "set()" if base is set else start + end
    if levels <= 0:
        return start + "..." + end
    parts: list[str] = []
    used = len(start)
    items = dict.items(v) if base is dict else base.__iter__(v)  # type: ignore[attr-defined, arg-type]
    for item in islice(items, _ECHO_ITEMS):
        if base is dict:
            k, x = item
            key = _echo(k, budget - used, levels - 1)
            text = f"{key}: {_echo(x, budget - used - len(key), levels - 1)}"
        else:
            text = _echo(item, budget - used, levels - 1)
        parts.append(text)
        used += len(text) + 2
        if used >= budget:
            break
    if len(parts) < size:
        parts.append("...")
    if base is tuple and size == 1:
        return f"({parts[0]},)"
    return start + ", ".join(parts) + end


def _echo_text(v: str | bytes | bytearray, budget: int) -> str:
    """A str's or bytes' repr, or, when it is longer than ``budget``, the repr of its start and
    "...": the quote closes, so the text shown is a prefix of the value."""
    budget = max(budget, 8)
    head: str | bytes = bytes(v[:budget]) if not isinstance(v, str) else v[:budget]
    text = repr(head)
    if len(head) == len(v) and len(text) <= budget:
        return text
    while len(text) > budget - 3 and head:  # escapes make one character up to 10 long
        head = head[: len(head) - max(1, (len(text) - budget + 3) // 10)]
        text = repr(head)
    return text + "..."


def _echo_other(v: object, budget: int) -> str:
    t = type(v)
    shape = getattr(v, "shape", None) if hasattr(t, "ndim") else None
    if isinstance(shape, tuple) and shape:  # an array: numpy, torch, ...
        return f"<{t.__name__} of shape {_echo(shape, 40, 1)}>"
    if shape is None and (hasattr(t, "__len__") or hasattr(t, "__iter__")):
        return f"<{t.__name__} object>"  # a collection: its own repr could be of any size
    try:  # a scalar of its own type (numpy.int64, Decimal, a 0-D array): a short repr
        text = repr(v)
    except Exception:
        return f"<{t.__name__} object>"
    return " ".join(text[: budget + 1].split())


class InvalidMetricError(AmltrackError, ValueError):
    """A metric name, value or step that amltrack will not store."""


class QueryError(AmltrackError, ValueError):
    """A filter expression or sort key that does not parse: the message names the column (from 1).

    QueryError("params.lr >> 1", 12, "expected a value")   # "expected a value at column 12"
    """

    def __init__(self, expression: str, column: int, problem: str, hint: str = "") -> None:
        super().__init__(f"{problem} at column {column}" + (f": {hint}" if hint else ""))
        self.expression = expression
        self.column = column
        self.problem = problem
        self.hint = hint

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.expression, self.column, self.problem, self.hint))


class InvalidPathError(AmltrackError, ValueError):
    """An artifact path that is not a safe, relative POSIX path."""

    def __init__(self, path: object, reason: str, *, clashes_with: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.clashes_with = clashes_with  # the artifact a file-and-folder clash is with
        hint = (
            "upload one of the two under another path"
            if clashes_with is not None
            else "use a relative POSIX path such as 'plots/loss.png'"
        )
        super().__init__(f"artifact path {_quote_path(path)} is not allowed: {reason}; {hint}")


def _quote_path(path: object) -> str:
    """An artifact path for an error message: whole up to the longest path that is stored (1024
    bytes), so that a clash names both paths in full; a longer one, or not a str, cut."""
    if type(path) is str and len(path) <= 1024:
        return repr(path)
    return short_repr(path)


class InvalidOutputsError(AmltrackError, ValueError):
    """An outputs folder that cannot be mirrored, such as one inside the store it would be copied to."""


class InvalidRedactPatternError(AmltrackError, ValueError):
    """An extra redaction pattern (``get_logger(redact=[...])``, ``$AMLTRACK_REDACT``) that cannot be used."""

    def __init__(self, pattern: object, reason: str, source: str) -> None:
        self.pattern = pattern
        self.reason = reason
        self.source = source  # where it was given: "redact=" or "$AMLTRACK_REDACT"
        super().__init__(
            f"redaction pattern {short_repr(pattern)} in {source} cannot be used: {reason}; fix it or "
            "leave it out (docs/redaction.md)"
        )


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


# What to do about a write error, by its errno. Errors of the whole run (the disk, the file-size
# limit) are retried by the writer; the others concern one file, so the advice is about that file.
_WRITE_ADVICE = {
    _errno.ENOSPC: "free disk space",
    _errno.EDQUOT: "free disk space or raise the disk quota",
    _errno.EFBIG: "raise the file-size limit (ulimit -f)",
    _errno.EIO: "check the disk",
    _errno.EEXIST: "a file of the run's artifacts stands where a folder is needed; upload under another path",
    _errno.ENOTDIR: "a file of the run's artifacts stands where a folder is needed; upload under another path",
    _errno.EISDIR: "a folder of the run's artifacts stands where the file would go; upload under another path",
    _errno.ENAMETOOLONG: "use a shorter path",
    _errno.EACCES: "check the permissions of the run's folder",
    _errno.EPERM: "check the permissions of the run's folder",
    _errno.EROFS: "store the run on a writable file system",
    _errno.ENOENT: "check that the file to upload still exists",
}


class WriteError(AmltrackError, OSError):
    """The background writer failed to write a file of the run.

    ``retried`` says whether the writer keeps the bytes and writes them again (a full disk, a
    file-size limit: errors of the whole run) or gave up on this one file (any other errno).
    """

    def __init__(self, path: object, cause: BaseException, *, retried: bool = True) -> None:
        self.path = str(path)
        self.cause = cause
        self.retried = retried
        code = getattr(cause, "errno", None)
        if isinstance(code, int):
            name = _errno.errorcode.get(code, f"errno {code}")
            what = f"{getattr(cause, 'strerror', None) or cause} ({name})"
            filename = getattr(cause, "filename", None)
            if filename is not None and str(filename) != self.path:
                what += f" at {filename}"
        else:
            text = str(cause)
            what = f"{type(cause).__name__}: {text if len(text) <= 200 else text[:197] + '...'}"
        advice = _WRITE_ADVICE.get(code, "") if isinstance(code, int) else ""
        if retried:
            then = "records not yet written are kept and written again on the next flush"
        else:
            then = "this file was not stored, and the run goes on without it"
        advice = f"{advice}; " if advice else ""
        super().__init__(code, f"amltrack could not write {self.path}: {what}; {advice}{then}")

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


class RunHeldError(AmltrackError, RuntimeError):
    """A run asked to resume is held by a process that is still alive: the one-line message names it."""

    def __init__(self, run_id: str, holder: str) -> None:
        self.run_id = run_id
        self.holder = holder
        super().__init__(
            f"run {run_id} is held by {holder}, which is still running; stop it or wait for it to "
            "end, then resume the run"
        )


class RefusedFileError(AmltrackError, PermissionError):
    """A file of a run or an asset that amltrack will not read: reached through a symlink, or not a
    regular file (a FIFO, a device). A link could lead anywhere, so none is ever followed."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"amltrack refused to read {self.path}: {reason}; a run's artifacts and an asset's files "
            "must be plain files in plain folders, so replace it with the file itself"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class MissingExtraError(AmltrackError, ImportError):
    """A call needs an optional dependency that is not installed; the message names the extra."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        self.what, self.package, self.extra = what, package, extra
        super().__init__(f"{what} needs {package}, which is not installed: pip install 'amltrack[{extra}]'")
