"""The logging API: ``get_logger()``, ``start_run()`` and ``Logger``, and how a run's status is set."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import count
from pathlib import Path
from typing import Any, NoReturn

from . import _env, _media, _redact
from . import _format as fmt
from ._errors import InvalidMetricError, RunFinishedError, StoreError, short_repr
from ._lifecycle import ending, install_hooks, registry
from ._metadata import git_info, process_info
from ._store import create_store, find_store
from ._system import interval_of
from ._validate import (
    _INT_MAX,
    _INT_MIN,
    MAX_STRING_CHARS,
    _check_label,
    _check_mapping,
    _check_name,
    _check_number,
    _check_step,
    _check_string,
    _coerce,
    _quote_name,
    _row_value,
)
from ._writer import FLUSH_INTERVAL, Handle, UploadHandle, Writer

# Default steps count up by one a call, so from below this they cannot reach 2**63 in any run's life
# (2**62 calls); only an explicit step at or above it needs the checked path.
_HIGH_STEP = 1 << 62
MAX_ROW_METRICS = 10_000  # names a log_metrics() call: a row is one line, written whole
_time = time.time


# ----------------------------------------------------------------- the logger


class Logger:
    """Logs metrics and artifacts into one run. Get it from ``get_logger()`` or ``start_run()``.

    logger = amltrack.get_logger("mnist", params={"lr": 0.1})
    logger.log("loss", 0.31)            # returns at once
    logger.log("acc", 0.9).wait()       # blocks until on disk
    logger.upload("notes.txt", "hello")
    """

    def __init__(self, run_dir: Path, store: Path, *, owner: bool, writer: Writer) -> None:
        self.run_dir = run_dir
        self.store = store
        self.run_id = run_dir.name
        self._owner = owner
        self._writer = writer
        self._queue = writer.queue  # log()'s fast path puts there itself (see _Queue)
        # name: the __next__ of an itertools.count of its default steps; None past _HIGH_STEP
        self._steps: dict[str, Callable[[], int] | None] = {}
        self._high: dict[str, int] = {}  # next default step of names past _HIGH_STEP
        self._folders: dict[str, str] = {}  # name: its media folder (log_image, log_table)
        self._finished = False
        self._finish_lock = threading.Lock()
        self._mirror: Any = None
        self._system: Any = None  # the system metrics thread (_system.Monitor) of the run's own process
        self.mirror_report: dict[str, Any] | None = None
        self._rules: _redact.Rules | None = None  # the owner's, for the error it records at the end
        # experiment, name, tags and params, for get_logger() to tell whether its arguments name
        # this run; read from run.json on first need when this process joined the run
        self._identity: dict[str, Any] | None = None
        # A resumed run's highest step of each metric before this attempt: where a restarted
        # training loop picks up (``resume=``); empty for a run this process started.
        self.resumed_steps: dict[str, int] = {}

    def __repr__(self) -> str:
        state = "finished" if self._finished else "open"
        return f"<amltrack.Logger run={self.run_id} {state}>"

    @property
    def finished(self) -> bool:
        return self._finished

    def log(self, name: str, value: Any, *, step: int | None = None) -> Handle:
        """Queue one value of metric ``name``; returns a handle whose ``wait()`` blocks until it is on disk.

        Values: bool, int, float (NaN and infinities too), str, or a list/tuple/1-D array of numbers
        (one record, shown as a chart). ``step`` defaults to a per-name counter 0, 1, 2, ... that
        goes on from any explicit step. Each name counts only its own calls, so a metric logged on
        every other iteration gets steps 0, 1, 2, ... while one logged every iteration reaches twice
        as far: pass ``step=`` (the loop's counter) to line metrics up with each other.

            logger.log("loss", 0.25)
            logger.log("lr schedule", [0.1, 0.05, 0.01])
            logger.log("val/acc", 0.91, step=epoch).wait()
        """
        t = type(value)
        if t is float or t is bool:
            pass
        elif t is int:
            if not _INT_MIN <= value <= _INT_MAX:
                _check_number(_check_name(name), value)  # raises, naming a name that was checked
        elif t is str:
            if len(value) > MAX_STRING_CHARS or not value.isascii():
                value = _check_string(name, value)
        else:
            value = _coerce(_check_name(name), value)
        q = self._queue
        if q.blocked is not None:
            with q.lock:
                self._blocked()
        # No lock: a name's counter hands out its default steps atomically. The put that follows is
        # _Queue's lock-free one, inlined here for speed: its rules are written in _Queue.
        try:
            nxt = self._steps.get(name)
        except TypeError:  # unhashable
            nxt = None
        if nxt is None:  # a new name, or one past _HIGH_STEP
            name, step = self._first_step(name, step)
        elif step is None:
            step = nxt()
        elif type(step) is not int or step < 0 or step >= _HIGH_STEP:
            step = self._set_step(name, step)
        elif nxt() != step:  # the counter moves on to step + 1 when the steps count up by one
            self._steps[name] = count(step + 1).__next__
        h = q.Handle()
        h["name"] = name
        h["step"] = step
        h["value"] = value
        h["ts"] = _time()
        h["seq"] = None
        items = q.items
        items.append(h)
        n = len(items)
        if q.blocked is not None and q.take_back(h):
            raise RunFinishedError(self.run_id)
        if n == 1 or n >= q.wake_at:
            q.wake(n)
        return h

    def _first_step(self, name: Any, step: Any) -> tuple[str, int]:
        """log()'s checked name and step for a name without a counter: new, or past _HIGH_STEP."""
        name = _check_name(name)
        if step is not None:
            return name, self._set_step(name, step)
        with self._queue.lock:
            steps = self._steps
            nxt = steps.get(name)
            if nxt is not None:  # another thread made the counter meanwhile
                return name, nxt()
            if name in steps:
                step = self._high_step(name)
                self._high[name] = step + 1
            else:
                step = 0
                steps[name] = count(1).__next__
        return name, step

    def _set_step(self, name: str, step: Any) -> int:
        """An explicit step, checked; the name's default steps go on from it."""
        step = _check_step(name, step)
        with self._queue.lock:
            self._go_on_from(name, step)
        return step

    def _go_on_from(self, name: str, step: int) -> None:
        """Make ``name``'s default steps go on from ``step``. Called with the writer's lock held."""
        if step >= _HIGH_STEP:
            # Counting on from here could pass 2**63-1, so this name's default steps leave the
            # counter: None sends its next call to _high_step, which checks.
            self._steps[name] = None
            self._high[name] = step + 1
        else:
            self._steps[name] = count(step + 1).__next__

    # One function on purpose: a row of 50 metrics costs 10 us, and each call out of it would add to that.
    def log_metrics(self, values: Mapping[str, Any], *, step: int | None = None) -> Handle:  # noqa: C901
        """Queue several metrics at one step as one record; returns a handle like ``log()``'s.

        Values are numbers and bools (NaN and infinities too); log strings and lists with ``log()``.
        ``step`` defaults to the highest next default step among the names, so logging the same
        names every iteration counts 0, 1, 2, ... Reads back exactly as one ``log()`` per entry,
        and costs a third of the disk space.

            logger.log_metrics({"loss": 0.25, "acc": 0.91}, step=epoch)
        """
        if type(values) is not dict:
            if not isinstance(values, Mapping):
                raise TypeError(
                    f"log_metrics() takes a dict of metric name to number, not {type(values).__name__} "
                    f"{short_repr(values)}; for one metric call log(name, value)"
                )
            values = dict(values)
        if not values:
            raise InvalidMetricError("log_metrics() got an empty dict; pass at least one metric")
        if len(values) > MAX_ROW_METRICS:
            raise InvalidMetricError(
                f"log_metrics() got {len(values)} metrics; the limit is {MAX_ROW_METRICS} a call: "
                "split them over several calls"
            )
        row = None
        for name, value in values.items():
            t = type(value)
            if t is float or t is bool or (t is int and _INT_MIN <= value <= _INT_MAX):
                continue
            if row is None:
                row = dict(values)
            row[name] = _row_value(_check_name(name), value)
        if row is not None:
            values = row
        steps = self._steps
        plain = True
        for name in values:
            if type(name) is not str:
                _check_name(name)
                plain = False
            elif name not in steps:  # a name seen before was checked then
                _check_name(name)
        if not plain:  # a StrEnum member, numpy.str_: orjson takes str keys only
            values = {str(k): v for k, v in values.items()}
        q = self._queue
        lock = q.lock
        lock.acquire()
        try:
            if q.blocked is not None:
                self._blocked()
            # Reading a counter moves it on, so each name's counter is read once and replaced only
            # when the row's step is not the one it gave.
            nexts = None
            if step is None:
                step, nexts = self._row_step(values)
            elif type(step) is not int or step < 0 or step > _INT_MAX:
                step = _check_step(next(iter(values)), step)
            if step >= _HIGH_STEP:
                for name in values:
                    self._go_on_from(name, step)
            elif nexts is None:
                for name in values:
                    c = steps.get(name)
                    if c is None or c() != step:
                        steps[name] = count(step + 1).__next__
            else:
                for name, nxt in zip(values, nexts):
                    if nxt != step:
                        steps[name] = count(step + 1).__next__
            return q.put_row(step, values if row is not None else dict(values), _time())
        finally:
            lock.release()

    def _row_step(self, values: dict[str, Any]) -> tuple[int, list[int]]:
        """log_metrics()'s default step, the highest next default step among the names, and each
        name's next default step (-1 for a new name). Called with the writer's lock held."""
        steps = self._steps
        step = 0
        if self._high:
            for name in values:  # names past _HIGH_STEP, checked before any counter moves
                if steps.get(name, 0) is None:
                    step = max(step, self._high_step(name))
        nexts = [-1 if (c := steps.get(name)) is None else c() for name in values]
        return max(step, max(nexts)), nexts

    def _high_step(self, name: str) -> int:
        """The default step after an explicit one of 2**62 or more, checked against 2**63-1."""
        step = self._high[name]
        if step > _INT_MAX:
            raise InvalidMetricError(
                f"metric {_quote_name(name)} was logged at step {_INT_MAX}, the last one; pass step= explicitly"
            )
        return step

    # ------------------------------------------------------------- rich kinds (amltrack/_media.py)

    def log_image(
        self, name: str, image: Any, *, step: int | None = None, caption: str | None = None
    ) -> Handle:
        """Queue an image; the writer stores it as a PNG file (a JPEG stays JPEG) and then its record.

        ``image``: a numpy array or torch tensor (H x W gray, H x W x 3 RGB, H x W x 4 RGBA, a
        tensor also C x H x W; uint8, or float in [0, 1]), a PIL image, a matplotlib figure, PNG or
        JPEG bytes, or a path to a PNG or JPEG file; at most 8,192 pixels a side. The pixels are
        copied at the call and encoded in the writer's thread. Needs ``amltrack[media]`` (Pillow).

            logger.log_image("samples", batch[0], step=epoch, caption="label: 7")
        """
        name = _check_name(name)
        step = self._media_step_arg(name, step)
        pending = _media.image_input(name, self._media_folder(name), image, caption, self._writer.buffers)
        return self._put_tagged(name, step, pending, pending.size)

    def log_table(self, name: str, data: Any, *, step: int | None = None) -> Handle:
        """Queue a table: a dict of equal-length columns, or a pandas DataFrame; cells are numbers,
        bools, strings or None (NaN is stored as null). At most 100,000 rows and 1,000 columns. The
        writer stores it as a JSON file ``{"columns": [...], "data": [[...], ...]}``, as MLflow's
        ``log_table`` does, and then its record.

            logger.log_table("per class", {"class": ["cat", "dog"], "f1": [0.91, 0.88]})
        """
        name = _check_name(name)
        step = self._media_step_arg(name, step)
        pending = _media.table_input(name, self._media_folder(name), data)
        return self._put_tagged(name, step, pending, pending.size)

    def log_row(self, name: str, **cells: Any) -> Handle:
        """Append one row to table ``name``: one record holding the row, at the name's next step.
        Readers put the rows of a name together (``Table``, ``amltrack metrics --format csv``).

            logger.log_row("per epoch", epoch=3, loss=0.21, note="lr drop")
        """
        name = _check_name(name)
        value = _media.row_input(name, cells)
        return self._put_tagged(name, None, value, 0)

    def log_histogram(
        self,
        name: str,
        values: Any = None,
        *,
        step: int | None = None,
        bins: int = 64,
        counts: Any = None,
        edges: Any = None,
    ) -> Handle:
        """Queue a histogram of ``values`` (any shape; every element counts) in ``bins`` equal bins
        between their finite least and greatest, NaN and infinities counted apart; or one already
        computed, ``counts=`` and ``edges=`` (one edge more than counts, increasing). The values are
        copied at the call and binned in the writer's thread; the record holds the histogram inline.

            logger.log_histogram("weights/fc1", model.fc1.weight, step=epoch)
        """
        name = _check_name(name)
        step = self._media_step_arg(name, step)
        value = _media.histogram_input(name, "", values, bins, counts, edges)
        return self._put_tagged(name, step, value, getattr(value, "size", 0))

    def log_confusion_matrix(self, name: str, matrix: Any, *, labels: Any, step: int | None = None) -> Handle:
        """Queue a confusion matrix: ``matrix[i][j]`` counts the examples of true label ``labels[i]``
        predicted as ``labels[j]``; at most 256 labels. Held inline in its record.

            logger.log_confusion_matrix("val/confusion", cm, labels=["cat", "dog"], step=epoch)
        """
        name = _check_name(name)
        step = self._media_step_arg(name, step)
        value = _media.confusion_input(name, matrix, labels)
        return self._put_tagged(name, step, value, 0)

    def _media_folder(self, name: str) -> str:
        """The folder of ``name``'s files, checked once a name: a regex a call cost 8 µs."""
        folder = self._folders.get(name)
        if folder is None:
            folder = self._folders[name] = fmt.media_folder(name)
        return folder

    def _media_step_arg(self, name: str, step: Any) -> int | None:
        return None if step is None else _check_step(name, step)

    def _put_tagged(self, name: str, step: int | None, value: Any, size: int) -> Handle:
        """Queue a record of a tagged kind, at ``step`` or the name's next default step."""
        q = self._queue
        with q.lock:
            self._blocked()
            if step is None:
                nxt = self._steps.get(name)
                if nxt is not None:
                    step = nxt()
                elif name in self._steps:
                    step = self._high_step(name)
                    self._high[name] = step + 1
                else:
                    step = 0
                    self._steps[name] = count(1).__next__
            else:
                self._go_on_from(name, step)
            h = q.Handle()
            h["name"] = name
            h["step"] = step
            h["value"] = value
            h["ts"] = _time()
            h["seq"] = None
            q.put_media(h, size)
            return h

    def _blocked(self) -> None:
        """Raise why nothing may be queued now, if anything. Called with the writer's lock held."""
        if self._finished:
            raise RunFinishedError(self.run_id)
        self._writer.check()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add ``params`` (str, number, bool or None values) to the run's params in run.json,
        replacing those of the same name: for settings known only once the run is open, such as a
        framework's hyperparameters. Written before it returns.

            logger.log_params({"batch_size": 64, "optimizer": "adam"})
        """
        params = _check_mapping("param", params)
        if self._finished:
            raise RunFinishedError(self.run_id)
        if params:
            # A process that joined the run has no rules of its own: run.json says whether the run
            # redacts, and this process's $AMLTRACK_REDACT adds its patterns.
            rules = self._rules if self._owner else _FROM_RUN
            merged = _update_run_json(self.run_dir, {}, params=params, rules=rules)["params"]
            if self._identity is not None:
                self._identity["params"] = merged

    def upload(self, path: str, content: str | bytes) -> UploadHandle:
        """Store ``content`` (str or bytes) as the artifact ``path`` (a relative POSIX path).

        logger.upload("notes/config.txt", "lr=0.1").wait()
        """
        fmt.check_artifact_path(path)
        if isinstance(content, str):
            try:
                data = content.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"artifact {short_repr(path)}: content is not valid Unicode (a lone surrogate)"
                ) from None
        elif isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
        else:
            raise TypeError(
                f"artifact {short_repr(path)}: content is a {type(content).__name__}; upload str or bytes, "
                "or use upload_file() for a file"
            )
        return self._queue_upload(path, data, "upload")

    def upload_file(self, path: str, local_file: str | os.PathLike[str]) -> UploadHandle:
        """Copy ``local_file`` into the run as the artifact ``path``; the copy happens in the writer.

        logger.upload_file("model/weights.pt", "/tmp/weights.pt").wait()
        """
        fmt.check_artifact_path(path)
        src = os.fspath(local_file)
        if not os.path.exists(src):
            raise FileNotFoundError(
                f"artifact {short_repr(path)}: local file {short_repr(src)} does not exist"
            )
        if not os.path.isfile(src):
            raise ValueError(f"artifact {short_repr(path)}: {short_repr(src)} is not a regular file")
        return self._queue_upload(path, None, "upload_file", os.path.abspath(src))

    def _queue_upload(
        self, path: str, data: bytes | None, source: str, local_file: str | None = None
    ) -> UploadHandle:
        if self._finished:
            raise RunFinishedError(self.run_id)
        return self._writer.queue_upload(path, data, source, local_file)

    def flush(self, timeout: float | None = None, *, fsync: bool = False) -> None:
        """Block until everything logged so far is on disk; ``fsync=True`` also survives power loss."""
        self._writer.flush(timeout, fsync=fsync)

    def finish(self, status: str = "completed") -> None:
        """Write everything queued, then mark the run ``status`` (completed, failed or killed).

        A process that joined another's run (``run_id=`` or ``AMLTRACK_RUN_ID``) only flushes: the
        run's own process sets its status. Calling it again does nothing.
        """
        end_run(self, status)

    def _finish(self, status: str, error: dict[str, Any] | None) -> None:
        with registry.draining():
            self._finish_now(status, error)

    def _finish_now(self, status: str, error: dict[str, Any] | None) -> None:
        with self._finish_lock:
            if self._finished:
                return
            system, self._system = self._system, None
            if system is not None:
                system.stop()  # its last row goes in before the queue closes
            with self._queue.lock:
                self._finished = True
                self._queue.close()
            if self._mirror is not None:
                self.mirror_report = self._stop_mirror()
            self._writer.close()
            write_error = self._writer.error
            if self._owner:
                updates: dict[str, Any] = {"status": status, "ended_ts": time.time()}
                updates["ended"] = fmt.utc_iso(updates["ended_ts"])
                if error is not None:
                    updates["error"] = error
                if write_error is not None:
                    updates["write_error"] = str(write_error)
                _update_run_json(self.run_dir, updates, rules=self._rules)
            registry.forget(self)
        self._tell_failed_uploads()
        if write_error is not None:
            raise write_error

    def _tell_failed_uploads(self) -> None:
        """Warn, in the caller's thread, of the uploads that failed and whose wait() nobody called:
        a failure of one upload does not stop the run, but it must not pass unseen either."""
        unseen = self._writer.unseen_failed_uploads()
        if not unseen:
            return
        import warnings

        shown = "; ".join(str(h.error) for h in unseen[:3])
        more = f" (and {len(unseen) - 3} more)" if len(unseen) > 3 else ""
        warnings.warn(
            f"amltrack: {len(unseen)} upload(s) of run {self.run_id} were not stored: {shown}{more}; "
            "artifacts.jsonl lists them as failed",
            UserWarning,
            stacklevel=4,
        )

    def _stop_mirror(self) -> dict[str, Any] | None:
        mirror, self._mirror = self._mirror, None
        try:
            return mirror.stop()
        except Exception as e:  # the run still finishes
            import warnings

            with contextlib.suppress(Exception):
                warnings.warn(
                    f"amltrack: the outputs mirror failed at run end ({type(e).__name__}: {e})",
                    UserWarning,
                    stacklevel=2,
                )
            return None

    def _after_fork(self) -> None:
        # The writer thread does not exist in a forked child: give the child its own writer, as a
        # process that joined the run, so records logged there are written and never lost. The
        # parent keeps mirroring the outputs folder.
        self._owner = False
        self._mirror = None
        self._system = None  # the thread is the parent's
        self._finish_lock = threading.Lock()
        self._writer = Writer(
            self.run_dir, writer_id=secrets.token_hex(4), flush_interval=self._writer.flush_interval
        )
        self._queue = self._writer.queue
        self._writer.start()
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            # multiprocessing's workers leave through os._exit, which skips atexit. Its exit
            # function runs Finalize callbacks, but a new worker clears them after the fork and then
            # runs its after-fork hooks: register the finalizer from one of those.
            mp_util.register_after_fork(self, _finalize_in_worker)


def _finalize_in_worker(logger: Logger) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(logger, logger._finish, args=("completed", None), exitpriority=100)


def _outputs_folder(outputs: str | os.PathLike[str] | None) -> str | None:
    """The folder to mirror: ``outputs=``, else ``$AMLTRACK_OUTPUTS`` when the default was left, relative
    to the working directory now; None, "", "none", "off" or "0" turn mirroring off."""
    if outputs is not None and (
        not isinstance(outputs, (str, os.PathLike)) or not isinstance(os.fspath(outputs), str)
    ):
        raise TypeError(
            f"outputs= must be a folder path (a str or os.PathLike) or None for no mirror, not {short_repr(outputs)} "
            f"({type(outputs).__name__})"
        )
    if outputs == "outputs" and _env.OUTPUTS in os.environ:
        outputs = os.environ[_env.OUTPUTS]
    if outputs is None or str(outputs).strip().lower() in ("", "none", "off", "0"):
        return None
    return os.path.abspath(os.fspath(outputs))


def _keep_deleted(keep: bool | None) -> bool:
    """``keep_deleted_outputs=``, else ``$AMLTRACK_OUTPUTS_KEEP_DELETED``."""
    if keep is None:
        return os.environ.get(_env.OUTPUTS_KEEP_DELETED, "").lower() in ("1", "true", "yes")
    if not isinstance(keep, bool):
        raise TypeError(f"keep_deleted_outputs= must be True, False or None, not {short_repr(keep)}")
    return keep


def _start_mirror(folder: Path, run_dir: Path, keep: bool) -> Any:
    from ._mirror import Mirror, MirrorProcess

    try:
        if sys.executable:  # a helper process: the training loop keeps the GIL to itself
            return MirrorProcess(folder, run_dir, keep_deleted=keep)
        mirror = Mirror(folder, run_dir, keep_deleted=keep)
        mirror.start()
        return mirror
    except Exception as e:  # a side channel: training goes on without it
        import warnings

        warnings.warn(
            f"amltrack: cannot mirror {folder} ({type(e).__name__}: {e}); training goes on, "
            "and files written there are not stored with the run",
            UserWarning,
            stacklevel=3,
        )
        return None


def _start_system(logger: Logger, interval: float | None) -> Any:
    if interval is None:
        return None
    from ._system import Monitor

    monitor = Monitor(logger.log_metrics, logger.run_id, interval)
    monitor.start()
    return monitor


_FROM_RUN = object()  # _update_run_json's rules: those run.json says the run has


def _update_run_json(
    run_dir: Path,
    updates: dict[str, Any],
    *,
    params: dict[str, Any] | None = None,
    rules: _redact.Rules | object | None = None,
) -> dict[str, Any]:
    from filelock import FileLock  # imported by the writer's start() already

    path = run_dir / fmt.RUN_FILE
    # The lock keeps a joined process's log_params() and the owner's end from losing each other's change.
    with FileLock(str(run_dir / fmt.SUMMARY_LOCK), timeout=30):
        info = fmt.read_json(path)
        if rules is _FROM_RUN:
            rules = None if info.get("redacted") is False else _redact.check_rules()
        if isinstance(rules, _redact.Rules):  # the error's message and traceback can hold what argv did
            updates, counts = rules.run_info({**updates, "params": params} if params else updates)
            params = updates.pop("params", None) if params else None
            if counts:
                info["redacted"] = _add_counts(info.get("redacted"), counts)
        info.update(updates)
        if params:
            info["params"] = {**(info.get("params") or {}), **params}
        if "segments" in info and "status" in updates:
            from ._resume import end_segment

            end_segment(info)
        fmt.write_json_atomic(path, info)
    return info


def _add_counts(recorded: Any, counts: dict[str, int]) -> dict[str, int]:
    out = dict(recorded) if isinstance(recorded, dict) else {}
    for field, n in counts.items():
        out[field] = out.get(field, 0) + n
    return out


def _open_logger(
    experiment: str | None,
    name: str | None,
    tags: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    store: str | os.PathLike[str] | None,
    outputs: str | os.PathLike[str] | None,
    run_id: str | None,
    flush_interval: float = FLUSH_INTERVAL,
    *,
    keep_deleted_outputs: bool | None = None,
    inherit: bool = True,
    resume: str | None = None,
    system_metrics: bool | float | None = None,
    redact: Any = True,
) -> Logger:
    given = {"experiment": experiment, "name": name}
    experiment = _check_label("experiment", experiment or os.environ.get(_env.EXPERIMENT) or "default")
    name = _check_label("run name", name)
    tags = _check_mapping("tag", tags)
    params = _check_mapping("param", params)
    rules = _redact.rules_for(redact)
    outputs_folder = _outputs_folder(outputs)  # checked before anything is created
    keep_deleted = _keep_deleted(keep_deleted_outputs)
    sample_every = interval_of(system_metrics)
    if run_id is None and inherit:
        run_id = registry.inherited_run()
    if run_id is not None and not fmt.is_valid_run_id(run_id):
        _bad_run_id(run_id)
    root = find_store(store)
    store_in_outputs = None
    if outputs_folder is not None:
        from ._mirror import check_folder

        store_in_outputs = check_folder(Path(outputs_folder), root)  # ValueError: folder in the store
    try:
        create_store(root)
    except OSError as e:
        if isinstance(e, StoreError):
            raise
        raise StoreError(
            e.errno,
            f"cannot create the store {root}: {e.strerror}; pass store= or "
            "set AMLTRACK_STORE to a writable directory",
        ) from e
    runs = root / fmt.RUNS_DIR
    if resume is not None:
        from . import _resume

        found = _resume.find(root, resume, run_id)
        if found is not None:
            logger = _resume_run(
                found, root, given, tags, params, flush_interval, join=resume == _resume.AUTO, rules=rules
            )
            if logger._owner:
                logger._system = _start_system(logger, sample_every)
                if outputs_folder is not None:
                    logger._mirror = _start_mirror(Path(outputs_folder), found, keep_deleted)
            return logger
    if run_id is not None and (runs / run_id / fmt.RUN_FILE).exists():
        writer = Writer(runs / run_id, writer_id=secrets.token_hex(4), flush_interval=flush_interval)
        logger = Logger(runs / run_id, root, owner=False, writer=writer)
        writer.start()
        install_hooks()  # a joining process drains at exit too
        return logger

    created = time.time()
    rid = run_id or fmt.new_run_id(created)
    run_dir = runs / rid
    run_dir.mkdir(exist_ok=run_id is not None)
    proc = process_info()
    git, diff = git_info(proc["cwd"])
    info: dict[str, Any] = {
        "schema": fmt.SCHEMA_VERSION,
        "id": rid,
        "experiment": experiment,
        "name": name,
        "status": "running",
        "created": fmt.utc_iso(created),
        "created_ts": created,
        "ended": None,
        "ended_ts": None,
        **proc,
        "git": git,
        "tags": tags,
        "params": params,
        "outputs": outputs_folder,
        "error": None,
    }
    if rules is None:
        info["redacted"] = False
    else:  # before the first write: the originals are never on disk
        info, counts = rules.run_info(info)
        info["redacted"] = counts
    fmt.write_json_atomic(run_dir / fmt.RUN_FILE, info)
    writer = Writer(run_dir, flush_interval=flush_interval)
    logger = Logger(run_dir, root, owner=True, writer=writer)
    logger._rules = rules
    logger._identity = {"experiment": experiment, "name": name, "tags": tags, "params": params}
    writer.start()
    logger._system = _start_system(logger, sample_every)
    if outputs_folder is not None:
        if store_in_outputs is not None:
            import warnings

            warnings.warn(
                f"amltrack: the store {store_in_outputs} is inside the outputs folder {outputs_folder}; "
                "it is left out of the mirror (pass store= or outputs= to keep them apart)",
                UserWarning,
                stacklevel=3,
            )
        logger._mirror = _start_mirror(Path(outputs_folder), run_dir, keep_deleted)
    if diff:
        writer.queue_upload("git/diff.patch", diff, "git")
    registry.export(rid, str(root))
    install_hooks()
    return logger


def _resume_run(
    run_dir: Path,
    root: Path,
    given: dict[str, str | None],
    tags: dict[str, Any],
    params: dict[str, Any],
    flush_interval: float,
    *,
    join: bool,
    rules: _redact.Rules | None = None,
) -> Logger:
    """A logger that takes the ended or crashed run at ``run_dir`` back (``resume=``): a new segment
    in run.json, each metric's default steps going on after its highest recorded one. With
    ``join``, a live run held by an ancestor process is joined as a child's ``run_id=`` would."""
    from . import _resume
    from ._store import Run, Store

    run = Run(Store(root), run_dir)
    for key, value in given.items():
        if value is not None and value != getattr(run, key):
            raise ValueError(
                f"resume: run {run.id} has {key} {getattr(run, key)!r}, not {value!r}; leave {key} out "
                "or pass the run's own"
            )
    if run.status == "running" and join and _resume.held_by_ancestor(run.info):
        return _open_logger(None, None, None, None, root, None, run.id, flush_interval, inherit=False)
    _resume.check_free(run)
    summary, steps = _resume.prepare(run)
    with _resume.summary_lock(run_dir):
        _resume.check_free(run)  # another process may have resumed it meanwhile
        _resume.take(run, summary, tags, params, rules)
    # Its own writer id: records of this attempt number themselves from 1 again, and readers keep
    # each writer's order apart (they merge the attempts by time, as they do joined processes').
    writer = Writer(run_dir, writer_id=secrets.token_hex(4), flush_interval=flush_interval)
    logger = Logger(run_dir, root, owner=True, writer=writer)
    logger._rules = rules
    info = run.reload().info
    logger._identity = {k: info.get(k) for k in ("experiment", "name", "tags", "params")}
    logger.resumed_steps = steps
    for name, step in steps.items():
        logger._go_on_from(name, step)
    writer.start()
    registry.export(run.id, str(root))
    install_hooks()
    return logger


def get_logger(
    experiment: str | None = None,
    *,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    store: str | os.PathLike[str] | None = None,
    outputs: str | os.PathLike[str] | None = "outputs",
    run_id: str | None = None,
    keep_deleted_outputs: bool | None = None,
    resume: str | None = None,
    system_metrics: bool | float | None = None,
    redact: bool | Sequence[str | re.Pattern[str]] = True,
) -> Logger:
    """The process's current logger, creating its run on the first call.

    Called with no arguments, or with arguments that match the open run, it returns the open
    logger (one logger per process, as in the Azure ML Workbench). Called with an ``experiment``,
    ``name``, ``tags``, ``params``, ``store`` or ``run_id`` that differs from the open run's, it
    finishes that run as ``completed`` and starts (for ``run_id``: joins) the run they name, so a
    loop of ``get_logger(name=..., params=...)`` makes one run per call. Arguments left out are not
    compared; ``tags`` and ``params`` are compared as whole dicts; ``outputs`` and
    ``keep_deleted_outputs`` apply to a new run only. ``start_run()`` is the clearer way to sweep.

    A process started with ``AMLTRACK_RUN_ID`` (or given ``run_id=`` of an existing run) joins that
    run instead of creating one. Files written under ``outputs`` become the run's artifacts
    (``docs/outputs.md``); ``keep_deleted_outputs=True`` keeps the stored copy of a file deleted
    from that folder (default: ``$AMLTRACK_OUTPUTS_KEEP_DELETED``, else False).

    ``resume=`` takes an ended or crashed run back: a run id, a prefix of one, ``"last"``, or
    ``"auto"`` (the run ``run_id=`` or ``AMLTRACK_RUN_ID`` names if it exists, else a new run with
    that id). The run goes back to ``running``, each metric's default steps go on after its highest
    recorded step (``logger.resumed_steps``), and run.json's ``segments`` records the attempt. A run
    that a live process holds is refused (``RunHeldError``).

    ``system_metrics`` samples CPU, memory, disk, network and NVIDIA GPUs into ``system/`` metrics
    while the run is open: every 10 s by default, every N seconds for a number, never for False
    (default: ``$AMLTRACK_SYSTEM_METRICS``, where 0 turns it off).

    Likely secrets in what the run records (its command line, ``params``, ``tags``, the error it
    ends with) are replaced with ``[redacted]`` before run.json is written (``docs/redaction.md``).
    ``redact=False`` keeps them for this run; a list of regular expressions (str or compiled) adds
    patterns to the built-in rules; ``$AMLTRACK_REDACT`` does either when ``redact`` is left True.
    It applies to a new or resumed run, and to ``log_params()`` later; a process that joined the
    run follows the run's setting and its own ``$AMLTRACK_REDACT``.

        from amltrack import get_logger
        logger = get_logger("mnist", params={"lr": 0.1})
        logger.log("loss", 0.31)
        get_logger() is logger          # True: the open run
    """
    with registry.lock:
        current = registry.current
        switching = current is not None and not current.finished
        if current is not None and switching:
            same = run_id
            if resume is not None and run_id is None:
                # "auto" means this job's run, which the open one is; a reference names its run.
                same = current.run_id if resume == "auto" else _run_named(resume, store, current)
            if not _names_other_run(current, experiment, name, tags, params, store, same):
                return current
            # Check the new run's arguments before ending the open one, so a typo ends nothing.
            _check_label("experiment", experiment)
            _check_label("run name", name)
            _check_mapping("tag", tags)
            _check_mapping("param", params)
            _outputs_folder(outputs)
            _keep_deleted(keep_deleted_outputs)
            interval_of(system_metrics)
            _redact.rules_for(redact)
            if run_id is not None and not fmt.is_valid_run_id(run_id):
                _bad_run_id(run_id)
            current._finish("completed", None)
        # Arguments that named another run do not mean the run inherited through AMLTRACK_RUN_ID,
        # which may be the one just finished.
        logger = _open_logger(
            experiment,
            name,
            tags,
            params,
            store,
            outputs,
            run_id,
            keep_deleted_outputs=keep_deleted_outputs,
            inherit=not switching,
            resume=resume,
            system_metrics=system_metrics,
            redact=redact,
        )
        registry.add(logger)
        return logger


def _run_named(ref: Any, store: str | os.PathLike[str] | None, current: Logger) -> str:
    from ._resume import find

    return find(find_store(store) if store is not None else current.store, ref, None).name  # type: ignore[union-attr]


def _names_other_run(
    logger: Logger,
    experiment: str | None,
    name: str | None,
    tags: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    store: str | os.PathLike[str] | None,
    run_id: str | None,
) -> bool:
    """Whether get_logger()'s explicit arguments name a run other than ``logger``'s."""
    if run_id is not None:  # a run id names one run, whatever else is given
        return run_id != logger.run_id
    if store is not None and os.path.realpath(find_store(store)) != os.path.realpath(logger.store):
        return True
    ident = logger._identity
    if ident is None:
        try:
            info = fmt.read_json(logger.run_dir / fmt.RUN_FILE)
        except (OSError, ValueError):
            info = {}
        ident = logger._identity = {k: info.get(k) for k in ("experiment", "name", "tags", "params")}
    return (
        (experiment is not None and experiment != ident["experiment"])
        or (name is not None and name != ident["name"])
        or (tags is not None and _differs(_check_mapping("tag", tags), ident["tags"]))
        or (params is not None and _differs(_check_mapping("param", params), ident["params"]))
    )


def _differs(given: dict[str, Any], recorded: Any) -> bool:
    """Whether tags or params given differ from a run's: as given to its owner, or as run.json holds
    them when this process joined the run, redacted (so the same secret matches its marker)."""
    recorded = recorded or {}
    if given == recorded:
        return False
    if _redact.MARKER not in str(recorded):
        return True
    return _redact.check_rules().mapping(given)[0] != recorded


def _bad_run_id(run_id: Any) -> NoReturn:
    raise ValueError(
        f"run id {short_repr(run_id)} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    )


get_azureml_logger = get_logger


@contextlib.contextmanager
def start_run(
    experiment: str | None = None,
    *,
    name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    store: str | os.PathLike[str] | None = None,
    outputs: str | os.PathLike[str] | None = "outputs",
    run_id: str | None = None,
    keep_deleted_outputs: bool | None = None,
    resume: str | None = None,
    system_metrics: bool | float | None = None,
    redact: bool | Sequence[str | re.Pattern[str]] = True,
) -> Iterator[Logger]:
    """A new run for the ``with`` block: completed on normal exit, failed on an exception.
    ``outputs``, ``keep_deleted_outputs``, ``resume``, ``system_metrics`` and ``redact`` as for
    ``get_logger()``.

    with amltrack.start_run("sweep", params={"lr": lr}) as logger:
        logger.log("loss", train(lr))
    """
    with registry.lock:
        logger = _open_logger(
            experiment,
            name,
            tags,
            params,
            store,
            outputs,
            run_id,
            keep_deleted_outputs=keep_deleted_outputs,
            resume=resume,
            system_metrics=system_metrics,
            redact=redact,
        )
        previous = registry.add(logger)
    try:
        yield logger
    except BaseException as e:
        logger._finish(*ending(e))
        raise
    else:
        logger._finish("completed", None)
    finally:
        with registry.lock:
            if registry.current is None and previous is not None and not previous.finished:
                registry.current = previous


# ----------------------------------------------------------------- internal API: a run owned by its caller


def open_run(
    experiment: str | None = None, *, flush_interval: float = FLUSH_INTERVAL, **options: Any
) -> Logger:
    """A run its caller owns and ends with ``end_run()``: ``amltrack run`` (``cli/_run.py``) and tests.

    ``options`` are ``get_logger()``'s keyword arguments, so the twins' signature stays written
    where users read it; the run is a new one, or the existing run ``run_id=`` names, never one
    inherited through ``AMLTRACK_RUN_ID``. It is not the process's current logger, and its exit
    does not finish it: ``end_run()`` does, with the status and error the caller knows.

        logger = open_run("sweep", store=store, outputs=None)
        end_run(logger, "failed", {"type": "Signal", "message": "killed by SIGKILL", "traceback": ""})
    """
    import inspect

    bound = inspect.signature(get_logger).bind(experiment, **options)  # TypeError for a wrong name
    bound.apply_defaults()
    a = bound.arguments
    return _open_logger(
        a["experiment"],
        a["name"],
        a["tags"],
        a["params"],
        a["store"],
        a["outputs"],
        a["run_id"],
        flush_interval,
        keep_deleted_outputs=a["keep_deleted_outputs"],
        inherit=False,
        resume=a["resume"],
        system_metrics=a["system_metrics"],
        redact=a["redact"],
    )


def end_run(logger: Logger, status: str, error: dict[str, Any] | None = None) -> None:
    """Finish ``logger``'s run as ``Logger.finish(status)`` does, recording ``error`` (its ``type``,
    ``message`` and ``traceback``) as the run's error in run.json."""
    if status not in fmt.ENDED_STATUSES:
        raise ValueError(f"status {short_repr(status)} is not one of {', '.join(fmt.ENDED_STATUSES)}")
    logger._finish(status, error)
