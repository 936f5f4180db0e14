"""The background writer: the one thread that turns queued records into bytes on disk.

The caller's thread only validates and queues its record (the handle it returns, a dict) on the
writer's ``_Queue``, which owns the rules for putting records there and taking them off; this thread
takes the queued records off in one C-level pass, numbers them in that order (their ``seq``), encodes them as they are with one ``orjson.dumps`` per batch,
and appends whole lines to ``metrics.jsonl`` with one ``os.write`` per batch on an ``O_APPEND``
descriptor, so records from several processes never interleave mid-line. A record is durable
(visible to other processes, safe from a crash of this process) once its batch's ``write`` has
returned; ``flush(fsync=True)`` adds power-loss safety.
"""

from __future__ import annotations

import contextlib
import errno
import math
import operator
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from itertools import count, islice, repeat
from pathlib import Path
from typing import Any

import orjson

from . import _format as fmt
from . import _media, _platform, _records
from ._columns import ColumnWriter
from ._errors import AmltrackError, InvalidMetricError, WriteError, short_repr
from ._files import AppendFile, Artifacts
from ._records import as_lines as _as_lines

FLUSH_INTERVAL = 0.5
BATCH_SIZE = 2000
MAX_PENDING = 10_000
# Bytes of uploads and of images, tables and histograms queued before the next such call waits.
MAX_PENDING_BYTES = 256 * 1024 * 1024
HEARTBEAT_INTERVAL = 10.0  # seconds between summary.json heartbeats of a live writer
SUMMARY_INTERVAL = 1.0  # seconds: the least time between two summary.json rewrites
MAX_WRITE = 1 << 20  # bytes per write() call, each a run of whole lines
MEDIA_PIECE = 16  # rich values encoded before their records are written (_write_media_batch)

# Errors that may pass (space freed, quota raised): keep the data and try again on the next flush.
_TRANSIENT = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EAGAIN, errno.EINTR}

_NAME = operator.itemgetter("name")
_setitem = operator.setitem  # a third of dict.__setitem__'s cost when map() calls it
_VALUE = operator.itemgetter("value")
_NUMERIC = {float, int, bool}
_isfinite = math.isfinite
_END = _records.BATCH_END


def _encode_all(pendings: list[Any]) -> list[Any]:
    """Each pending value's ``encode()``: its (bytes, record value), or the exception it raised.

    Two threads share the work: PNG encoding is nearly all of a rich value's cost, and Pillow lets
    go of the GIL while it compresses, so the writer's thread and one helper keep both cores busy
    (1,000 images of 256 x 256 durable in about half the time). The helper is a thread per piece of
    ``MEDIA_PIECE`` values: starting one costs microseconds against milliseconds per image, and a
    process that ends leaves no pool behind. Where no thread can start (the interpreter is shutting
    down), this thread encodes them all."""
    results: list[Any] = [None] * len(pendings)

    def run(indices: range) -> None:
        for i in indices:
            try:
                results[i] = pendings[i].encode()
            except Exception as e:  # reported by the caller, per value, as before
                results[i] = e

    helper = None
    if len(pendings) > 1:
        helper = threading.Thread(
            target=run, args=(range(1, len(pendings), 2),), name="amltrack-encode", daemon=True
        )
        try:
            helper.start()
        except RuntimeError:
            helper = None
    run(range(0, len(pendings), 2) if helper is not None else range(len(pendings)))
    if helper is not None:
        helper.join()
    return results


class Handle(dict[str, Any]):
    """What ``log()`` returns: ``wait()`` on it to block until the record is on disk.

    It is the record itself (name, step, value, ts, seq), so the writer hands the buffer to orjson as
    it is: one object per call and no copy. Each writer has its own subclass that knows the writer.
    """

    __slots__ = ()
    _writer: Writer

    @property
    def seq(self) -> int | None:
        """The record's sequence number in this process, its place in the file; None until the
        writer takes the record off the queue."""
        return self["seq"]

    def wait(self, timeout: float | None = None) -> None:
        """Block until the record is in the run's metrics file.

        Raises the writer's error if the write failed and ``TimeoutError`` if ``timeout`` seconds pass.

            logger.log("accuracy", 0.93).wait()
        """
        self._writer.wait_for(self, timeout)

    def done(self) -> bool:
        """True once the record is durable."""
        seq = self["seq"]
        return seq is not None and self._writer.durable_seq >= seq

    def __repr__(self) -> str:
        return f"<amltrack.Handle {dict.__repr__(self)}>"


class UploadHandle:
    """What ``upload()`` returns; ``wait()`` raises if this artifact could not be stored."""

    __slots__ = ("_writer", "seq", "path", "data", "source", "local_file", "error", "size", "reported")

    def __init__(
        self, writer: Writer, path: str, data: bytes | None, source: str, local_file: str | None
    ) -> None:
        self._writer = writer
        self.seq: int | None = None  # set by the writer when it takes the upload off the queue
        self.path = path
        self.data = data
        self.source = source
        self.local_file = local_file
        self.error: BaseException | None = None
        self.size = len(data) if data is not None else 0
        self.reported = False  # its error was raised from wait(): finish() need not tell of it

    def wait(self, timeout: float | None = None) -> None:
        """Block until the artifact and its manifest entry are on disk."""
        self._writer.wait_for(self, timeout)
        if self.error is not None:
            self.reported = True
            raise self.error

    def done(self) -> bool:
        return self.seq is not None and self._writer.durable_seq >= self.seq


class _Queue:
    """The records waiting for the writer thread, and the rules for putting them there and taking
    them off: the one owner of the queue's state, whoever's code runs it.

    The invariant: ``log()`` appends to ``items`` without the lock, as ``deque.append`` is atomic and
    the lock was a fifth of its cost; every other put (``put_row()``, ``put_upload()``) appends with
    ``lock`` held and sets ``rows``, ``has_uploads`` and ``extra`` with it, and ``take()`` empties
    the queue and clears them with it held. So the flags and the count of a batch cover every record
    in it, and a record that a lock-free append leaves behind waits, flagless, for the next batch.

    The rules built on it, each in one method here:

    - Wake: the first record queued wakes the idle writer, which otherwise sleeps to its next flush;
      at ``wake_at`` it is hurried (``BATCH_SIZE``, then, once hurried, only ``max_pending`` calls
      in again). ``log()`` counts records, the others points.
    - Backpressure: at ``max_pending`` points (a row counts each of its entries, so rows of many
      metrics hold no more memory than ``log()`` records would) or ``MAX_PENDING_BYTES`` of uploads,
      the caller waits for the writer rather than drop records or grow.
    - Take-back: ``blocked`` is set while puts are refused (a write error, an error to report once,
      or ``close()``). ``log()`` looks at it before its append and after it; when ``close()`` began
      between the two, ``take_back()`` takes the record out again, unless the writer has already
      taken it, which it then writes: a call that races ``finish()`` is written or refused.
    - Order: ``take()`` numbers the records (their ``seq``) in the order they were queued.

    ``log()``'s fast path is inlined in ``Logger.log`` (a method call there cost a sixth of a
    ``log()``, 0.57 µs on the bench machine): check ``blocked``, append, ``take_back()`` if
    ``blocked`` is set now, ``wake(n)`` if ``n == 1 or n >= wake_at``.
    """

    __slots__ = (
        "lock",
        "cond",
        "Handle",
        "items",
        "rows",
        "has_uploads",
        "media",
        "took_media",
        "extra",
        "blocked",
        "closed",
        "urgent",
        "wake_at",
        "max_pending",
        "pending_bytes",
        "taken",
        "_can_drain",
    )

    def __init__(
        self,
        lock: threading.Lock,
        cond: threading.Condition,
        handle: type[Handle],
        max_pending: int,
        can_drain: Callable[[], bool],
    ) -> None:
        self.lock = lock  # the writer's: it guards the writer's state too
        self.cond = cond  # on lock
        self.Handle = handle
        self.items: deque[Any] = deque()
        self.rows = False  # a row (log_metrics()) is queued: the batch needs the rows encoder
        self.has_uploads = False
        self.media = False  # a tagged value (an image, a table, ...) is queued: the writer finishes it
        self.took_media = False  # the last take()'s batch held one
        self.extra = 0  # the queued rows' entries beyond their first: the bounds count points
        self.blocked: object = None
        self.closed = False
        self.urgent = False  # the writer is to write what is queued now, not at its next flush
        self.max_pending = max_pending
        self.wake_at = min(BATCH_SIZE, max_pending)
        self.pending_bytes = 0  # of uploads queued
        self.taken = 0  # the last seq handed out, to the last record taken
        self._can_drain = can_drain  # False once the writer has failed or stopped: waiting is vain

    def __len__(self) -> int:
        return len(self.items)

    def set_max_pending(self, n: int) -> None:
        with self.cond:
            self.max_pending = n
            self.wake_at = n if self.urgent else min(BATCH_SIZE, n)

    # -- putting, in the caller's thread

    def wake(self, n: int) -> None:
        """``log()``'s call after its append left ``n`` records queued: the first, or ``wake_at``."""
        with self.cond:
            self._woken(n == 1)

    def put_row(self, step: int, values: dict[str, Any], ts: float) -> Handle:
        """Queue a row of ``log_metrics()``. Called with the lock held, which a wait for room releases."""
        self.rows = True
        h = self.Handle()
        h["step"] = step
        h["values"] = values
        h["ts"] = ts
        h["seq"] = None
        items = self.items
        items.append(h)
        self.extra += len(values) - 1
        n = len(items)
        if n == 1 or n + self.extra >= self.wake_at:
            self._woken(n == 1)
        return h

    def put_media(self, h: Handle, size: int) -> None:
        """Queue a record of a tagged kind, whose value the writer may still have to encode (a
        ``_media.Pending`` of ``size`` bytes). Called with the lock held. Such a batch goes the rows'
        way (``rows``), which the column index keeps as raw lines, so that every reader meets these
        values through the checked path; ``size`` counts against the bound on bytes, as an upload's."""
        self.rows = True
        self.media = True
        items = self.items
        items.append(h)
        self.pending_bytes += size
        n = len(items)
        if n == 1:
            self.cond.notify()
        elif not self.urgent and n + self.extra >= self.wake_at:
            self.hurry()
        if self._full():
            self._wait_for_room(size)

    def put_upload(self, h: UploadHandle) -> None:
        """Queue an upload and have it written now. Called with the lock held."""
        self.has_uploads = True
        self.items.append(h)
        self.pending_bytes += h.size
        self.hurry()
        if self._full():
            self._wait_for_room(h.size)

    def take_back(self, h: Handle) -> bool:
        """After ``log()``'s append found ``blocked`` set: True when ``close()`` had begun and ``h``
        is out of the queue again, for ``log()`` to raise. False when it stays: blocked by an error
        (the next call raises it), or already taken by the writer, which writes it."""
        if not self.closed:
            return False
        with self.cond:  # the writer takes records, and numbers them, with this held
            if h["seq"] is not None:
                return False
            # Other threads may append meanwhile, at the right end only, so a copy (one C call)
            # finds the record's index and that index still holds it.
            items = self.items
            for i, x in enumerate(list(items)):
                if x is h:
                    del items[i]
                    break
        return True

    def _woken(self, first: bool) -> None:
        if first:
            self.cond.notify()  # the writer sleeps while idle; start its flush clock
        elif not self.urgent:
            self.hurry()
        if self._full():
            self._wait_for_room()

    def _full(self) -> bool:
        return len(self.items) + self.extra >= self.max_pending or self.pending_bytes > MAX_PENDING_BYTES

    def _wait_for_room(self, own: int = 0) -> None:
        """Wait while the queue is full of others' records, or of others' bytes: ``own`` is what the
        caller's record holds, and a caller never waits for itself. The bytes are released when the
        writer has stored them, not when it takes them, so the bound covers what it is encoding."""
        self.hurry()
        while self._can_drain() and (
            (len(self.items) + self.extra >= self.max_pending and len(self.items) > 1)
            or self.pending_bytes > max(MAX_PENDING_BYTES, own)
        ):
            self.cond.wait(1.0)

    # -- the writer's side, and both sides' signals; all called with the lock held

    def hurry(self) -> None:
        """Have the writer write what is queued now rather than at its next flush."""
        self.urgent = True
        self.wake_at = self.max_pending
        self.cond.notify_all()

    def block(self, reason: object) -> None:
        """Refuse puts for ``reason`` (an error), or accept them again with None, unless closed."""
        self.blocked = reason or (True if self.closed else None)

    def close(self) -> None:
        """Refuse puts from now on; a ``log()`` that raced this takes its record back."""
        self.closed = True
        self.blocked = self.blocked or True

    def last_seq(self) -> int:
        """The seq that the last record queued now will get."""
        return self.taken + len(self.items)

    def take(self) -> tuple[list[Any], bool, bool]:
        """Every record queued now, numbered in queue order, and whether they hold uploads and rows."""
        # What log() appends meanwhile stays queued: islice over popleft is one C loop.
        queue = self.items
        n = len(queue)
        items = list(islice(iter(queue.popleft, None), n)) if n else []
        has_uploads, rows = self.has_uploads, self.rows
        self.took_media = self.media
        self.has_uploads = self.rows = self.media = False
        self.extra = 0
        if has_uploads:
            for seq, h in enumerate(items, self.taken + 1):
                if type(h) is UploadHandle:
                    h.seq = seq
                else:
                    h["seq"] = seq
        elif n:
            deque(map(_setitem, items, repeat("seq"), count(self.taken + 1)), 0)
        self.taken += n
        self.urgent = False
        self.wake_at = min(BATCH_SIZE, self.max_pending)
        self.cond.notify_all()  # room for callers waiting on backpressure
        return items, has_uploads, rows

    def uploaded(self, size: int) -> None:
        """An upload's or a rich value's bytes have left memory (stored, or given up)."""
        self.pending_bytes -= size
        if size:
            self.cond.notify_all()  # a caller waiting for room in bytes


class Writer:
    """One per process and run. Thread life in the watchdog style: start(), close(), joined once."""

    def __init__(
        self,
        run_dir: Path,
        *,
        writer_id: str | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.run_dir = run_dir
        self.writer_id = writer_id  # None for the run's own process; set for processes that join
        self.flush_interval = flush_interval
        # One lock for the queue and the writer's own state: the writer takes a batch and reads
        # its flags (closing, fsync) in one hold.
        lock = threading.Lock()
        self.cond = threading.Condition(lock)
        self.Handle = type("Handle", (Handle,), {"__slots__": (), "_writer": self})
        self.queue = _Queue(lock, self.cond, self.Handle, max_pending, self._can_drain)
        self.durable_seq = 0  # every record numbered up to this one is in the file
        self.error: BaseException | None = None  # the live failure; log() raises it while set
        self._unreported: BaseException | None = None  # a per-item failure to raise once
        self._closing = False
        self.closed = False
        self._carry: list[bytes | memoryview] = []  # bytes whose write failed, retried first
        self._retry_uploads: list[UploadHandle] = []
        self.failed_uploads: list[UploadHandle] = []  # given up: each one's wait() raises its error
        self._metrics = AppendFile(run_dir / fmt.METRICS_FILE)
        # Processes that join a run leave the index to its own process, whose lines it covers.
        self._columns = ColumnWriter(run_dir) if writer_id is None else None
        self._artifacts = Artifacts(run_dir)
        self.buffers = _media.Buffers()  # log_image's pixel buffers, given back here once encoded
        self._fsync_requested = False
        self._summary: dict[str, fmt.MetricSummary] = {}
        # The end of this process's last write to metrics.jsonl: every record of it before this
        # byte is in the summary once the delta is merged (summary.json's "offsets").
        self._written_to = 0
        self._registered = writer_id is None  # the run's own process starts the file
        self._names: set[str] = set()
        self._ambiguous_names = False
        self._summary_records = 0
        self._summary_dirty = False
        self._last_summary = 0.0
        self._thread = threading.Thread(target=self._run, name=f"amltrack-writer-{run_dir.name}", daemon=True)

    # ----------------------------------------------------------------- caller side

    def start(self) -> None:
        # filelock costs `import amltrack` 40-80 ms, so it is imported here, when a run starts, and
        # never later: an import while the interpreter exits after an uncaught KeyboardInterrupt
        # makes Python forget to exit with SIGINT (exit code 1 instead of 130).
        from filelock import FileLock

        self._file_lock = FileLock
        self._thread.start()

    @property
    def max_pending(self) -> int:
        """The queue's bound, in points."""
        return self.queue.max_pending

    @max_pending.setter
    def max_pending(self, n: int) -> None:
        self.queue.set_max_pending(n)

    def _can_drain(self) -> bool:
        return self.error is None and self._thread.is_alive()

    def queue_upload(
        self, path: str, data: bytes | None, source: str, local_file: str | None = None
    ) -> UploadHandle:
        with self.cond:
            self.check()
            # A file where the path needs a folder, or a folder where it would go, is refused here,
            # at the call: queued by this process, or on disk (written by it or by another one).
            self._artifacts.claim(path)
            h = UploadHandle(self, path, data, source, local_file)
            self.queue.put_upload(h)
            return h

    def check(self) -> None:
        """Raise the live write error, or a per-item error not yet reported. Called with cond held."""
        if self.error is not None:
            raise self.error
        if self._unreported is not None:
            err, self._unreported = self._unreported, None
            self._update_blocked()
            raise err

    def _update_blocked(self) -> None:
        self.queue.block(self.error or self._unreported)

    def unseen_failed_uploads(self) -> list[UploadHandle]:
        """The uploads given up whose error no ``wait()`` has raised."""
        with self.cond:
            return [h for h in self.failed_uploads if not h.reported]

    def wait_for(self, item: Handle | UploadHandle | int, timeout: float | None = None) -> None:
        """Block until ``item`` (a handle, or a seq) is durable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                seq = item if isinstance(item, int) else item.seq  # a handle gets it when it is taken
                if seq is not None and self.durable_seq >= seq:
                    return
                if self.error is not None:
                    raise self.error
                if not self._thread.is_alive():
                    raise AmltrackError(
                        f"the amltrack writer for {self.run_dir} has stopped; "
                        "records queued after finish() are not written"
                    )
                self.queue.hurry()
                if deadline is None:
                    self.cond.wait(1.0)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(
                            f"record {seq or '(still queued)'} of {self.run_dir.name} "
                            f"was not written within {timeout} s"
                        )
                    self.cond.wait(min(remaining, 1.0))

    def flush(self, timeout: float | None = None, *, fsync: bool = False) -> None:
        with self.cond:
            # What is queued now gets the next numbers, in order: the writer numbers with cond held.
            seq = self.queue.last_seq()
            if fsync:
                self._fsync_requested = True
                self.queue.hurry()
        self.wait_for(seq, timeout)
        if fsync:
            # The fsync happens in the writer after the batch; wait until it has been done.
            with self.cond:
                while self._fsync_requested and self._thread.is_alive() and self.error is None:
                    self.queue.hurry()
                    self.cond.wait(1.0)
                if self.error is not None:
                    raise self.error
        with self.cond:
            self.check()

    def close(self, timeout: float | None = None) -> None:
        """Drain everything queued, write the last summary, and stop the thread."""
        with self.cond:
            self._closing = True
            self.queue.close()
            self.queue.hurry()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self.closed = True

    # ----------------------------------------------------------------- writer thread

    def _run(self) -> None:
        interval = self.flush_interval
        q = self.queue
        idle_since = looked = time.monotonic()
        while True:
            with self.cond:
                pending_since = None
                while not q.urgent and not self._closing:
                    now = time.monotonic()
                    if q.items or self._carry or self._retry_uploads:
                        if pending_since is None:
                            pending_since = looked  # what is queued came after the last empty look
                        remaining = pending_since + interval - now
                        if remaining <= 0:
                            break
                    else:
                        looked = now
                        remaining = idle_since + HEARTBEAT_INTERVAL - now
                        if remaining <= 0:
                            break
                        # log() wakes this thread when it queues the first record, but two threads
                        # appending at once without the lock may each see two: look again every
                        # interval rather than sleep to the heartbeat.
                        remaining = min(remaining, interval)
                    self.cond.wait(remaining)
                items, has_uploads, rows = q.take()
                media = q.took_media
                looked = time.monotonic()
                closing = self._closing
                fsync = self._fsync_requested
            try:
                if media:
                    self._write_media_batch(items, fsync, has_uploads)
                else:
                    self._write_batch(items, fsync, has_uploads, rows)
            except BaseException as e:  # never let the thread die silently
                with self.cond:
                    self.error = e if isinstance(e, AmltrackError) else WriteError(self.run_dir, e)
                    self._update_blocked()
                    self.cond.notify_all()
            idle_since = time.monotonic()
            if closing:
                with self.cond:
                    done = not q.items and not self._carry and not self._retry_uploads
                    if done or self.error is not None:
                        break
        self._write_summary(final=True)
        self.buffers.clear()
        self._metrics.close()
        self._artifacts.close()
        if self._columns is not None:
            self._columns.close()
        with self.cond:
            self.cond.notify_all()

    def _write_batch(
        self,
        items: list[Any],
        fsync: bool,
        has_uploads: bool = True,
        rows: bool = True,
        upto: int | None = None,
    ) -> None:
        if not self._registered:
            self._register()
        if rows:
            lines, uploads, index = self._encode_rows(items)
        else:
            lines, uploads, index = self._encode(items, has_uploads)
        failed: BaseException | None = None
        # Bytes from earlier failed writes go first so the file keeps call order.
        carried = bool(self._carry)
        chunks: list[bytes | memoryview] = [*self._carry, *self._chunks(lines)] if lines else self._carry
        self._carry = []
        if chunks:
            size = sum(map(len, chunks))  # append() empties chunks as it writes them
            try:
                start = self._metrics.append(chunks)
            except OSError as e:
                self._carry = chunks
                failed = WriteError(self._metrics.path, e)
                if self._columns is not None:
                    self._columns.stop()
            else:
                self._written_to = start + size
                if self._columns is not None and lines is not None and not carried:
                    if rows:
                        self._columns.add_raw(start, lines)
                    elif index is not None:
                        self._columns.add(start, lines, *index)
        uploads = self._retry_uploads + uploads
        self._retry_uploads = []
        for up in uploads:
            try:
                self._store_upload(up)
            except OSError as e:
                dest = self.run_dir / fmt.ARTIFACTS_DIR / up.path
                if e.errno in _TRANSIENT:  # the disk or a limit, for the whole run: retried
                    self._retry_uploads.append(up)
                    failed = failed or WriteError(dest, e)
                    continue
                # An error of this one file (a clash made by another process, a permission, a
                # name too long): only its handle raises it, and the run goes on.
                up.error = WriteError(dest, e, retried=False)
                self._record_failed_upload(up, e)
                with self.cond:
                    self.failed_uploads.append(up)
            with self.cond:
                self.queue.uploaded(up.size)
                self._artifacts.release(up.path)  # on disk, or given up: the disk tells from now on
            up.data = None
        if fsync and failed is None:
            try:
                self._fsync_all()
            except OSError as e:
                failed = WriteError(self.run_dir, e)
        with self.cond:
            self.error = failed
            self._update_blocked()
            if failed is None and not self._retry_uploads:
                self.durable_seq = self.queue.taken if upto is None else upto
                if fsync:
                    self._fsync_requested = False
            self.cond.notify_all()
        now = time.monotonic()
        if (
            self._summary_dirty and now - self._last_summary >= SUMMARY_INTERVAL
        ) or now - self._last_summary >= HEARTBEAT_INTERVAL:
            self._write_summary()

    def _write_media_batch(self, items: list[Any], fsync: bool, has_uploads: bool) -> None:
        """Write a batch that holds rich values in pieces of ``MEDIA_PIECE`` of them, each piece's
        files and then its records, so that records follow their files closely: a kill loses the
        records of the files of one piece at most, beyond the flush window, however long the batch."""
        start = pending = 0
        Pending = _media.Pending
        for i, h in enumerate(items):
            if type(h) is not UploadHandle and isinstance(h.get("value"), Pending):
                pending += 1
            if pending == MEDIA_PIECE or i == len(items) - 1:
                piece = items[start : i + 1]
                start, pending = i + 1, 0
                last = piece[-1]
                upto = last.seq if type(last) is UploadHandle else last["seq"]
                # A piece whose write fails keeps its bytes to go first in the next write, in order.
                self._write_batch(
                    self._finish_media(piece), fsync and start == len(items), has_uploads, True, upto
                )

    def _finish_media(self, items: list[Any]) -> list[Any]:
        """Encode the batch's pending values (``_media.Pending``) and store their files, each before
        the record that points at it is written, so that no record points at a missing or half
        written file (``Artifacts.put`` writes a temporary file and renames it). A value that cannot
        be encoded or stored leaves its record out; its error is raised from the next call."""
        out = []
        Pending = _media.Pending
        pendings = [
            h["value"] for h in items if type(h) is not UploadHandle and isinstance(h.get("value"), Pending)
        ]
        encoded = iter(_encode_all(pendings))
        for h in items:
            v = h.get("value") if type(h) is not UploadHandle else None
            if not isinstance(v, Pending):
                out.append(h)
                continue
            try:
                done = next(encoded)
                if isinstance(done, BaseException):
                    raise done
                data, value = done
                if data is not None:
                    path = fmt.media_path(v.folder, h["step"], h["seq"], self.writer_id, v.ext)
                    entry = self._artifacts.put(path, data=data, source=v.source)
                    value = {**value, "path": path, "size": entry["size"], "sha256": entry["sha256"]}
                h["value"] = value
                out.append(h)
            except Exception as e:
                dest = f"{v.kind} metric {h['name']!r} at step {h['step']}"
                err: BaseException = (
                    WriteError(self.run_dir / fmt.ARTIFACTS_DIR / v.folder, e, retried=False)
                    if isinstance(e, OSError)
                    else InvalidMetricError(
                        f"{dest} could not be encoded ({type(e).__name__}: {e}); it is not stored"
                    )
                )
                with self.cond:
                    self._unreported = self._unreported or err
                    self._update_blocked()
            finally:
                with self.cond:
                    self.queue.uploaded(v.size)
        return out

    def _register(self) -> None:
        """A process that joins a run says where its records start before it writes one, so that a
        reader repairing the summary of a crashed run knows where to look for them.

        Done at its first batch, not when its thread starts: a thread started in a forked child
        (``Logger._after_fork``) may run before filelock's own after-fork handler, and a lock
        taken then waits forever."""
        self._registered = True
        try:
            self._written_to = (self.run_dir / fmt.METRICS_FILE).stat().st_size
        except FileNotFoundError:
            pass
        self._write_summary()

    def _encode(
        self, items: list[Any], has_uploads: bool = True
    ) -> tuple[memoryview | None, list[UploadHandle], tuple[Any, ...] | None]:
        """Encode a batch as JSON Lines and fold it into the summary delta.

        The whole batch goes through one ``orjson.dumps`` as a JSON array of objects whose
        separators ``},{`` become newlines, and every per-batch pass is a C-level map: this thread
        shares the GIL with the training loop, so its cost per record is the caller's cost too.
        An empty object appended to the array turns the last record's separator into its newline,
        so the lines are a slice of the one buffer. A string holding ``},{`` would make the split
        ambiguous; such a batch is encoded a record at a time.
        """
        uploads: list[UploadHandle] = []
        if has_uploads:
            uploads = [h for h in items if type(h) is UploadHandle]
            items = [h for h in items if type(h) is not UploadHandle]
        if not items:
            return None, uploads, None
        recs = items
        values = list(map(_VALUE, items))
        types = set(map(type, values))
        # Only bools, ints and floats: the sum is finite unless one is not (or it overflowed).
        plain = types <= _NUMERIC and (_isfinite(sum(values)) or all(map(_isfinite, values)))
        if not plain:
            recs = self._encode_nonfinite(items)
        recs = self._tagged(recs)
        try:
            data = orjson.dumps([*recs, _END])
        except orjson.JSONEncodeError:
            # log() checks every value, so this is a bug; still, the batch's other records are
            # written, and the one that cannot be is raised from the next call, never dropped quietly.
            items, recs = self._drop_unencodable(items, recs)
            if not items:
                return None, uploads, None
            values = list(map(_VALUE, items))
            types = set(map(type, values))
            data = orjson.dumps([*recs, _END])
        names = list(map(_NAME, items))
        if names.count(names[0]) == len(names):
            # One metric in the batch (a loop logging one thing, or a trickle): a C-level count
            # instead of hashing every name twice.
            counts: dict[str, int] = {names[0]: len(names)}
            last = {names[0]: items[-1]}
        else:
            counts = Counter(names)
            last = dict(zip(names, items))
        new_names = counts.keys() - self._names
        if new_names:
            self._names |= new_names
            self._ambiguous_names |= any("},{" in n for n in new_names)
        self._summarize(counts, last)
        lines = _as_lines(data, recs, check=str in types or self._ambiguous_names)
        return lines, uploads, (items, recs, names, counts, values, types)

    def _encode_rows(
        self, items: list[Any]
    ) -> tuple[memoryview | None, list[UploadHandle], tuple[Any, ...] | None]:
        """Encode a batch that holds rows (``log_metrics()``) and fold it into the summary delta.

        The column index takes such a batch as a raw block: its lines are parsed when read, as
        columns would add 28 bytes a point to a row's 35. Rows logged with the same names, the common
        case, are counted once per set of names rather than once per entry.
        """
        uploads = [h for h in items if type(h) is UploadHandle]
        recs = [h for h in items if type(h) is not UploadHandle] if uploads else items
        if not recs:
            return None, uploads, None
        vals = [r.get("values") for r in recs]
        counts: dict[str, int] = {}
        last_at: dict[str, int] = {}  # name: index of the last record holding it
        groups: dict[tuple[str, ...], list[int]] = {}  # a row's names: [rows, index of the last]
        for i, v in enumerate(vals):
            if v is None:
                name = recs[i]["name"]
                counts[name] = counts.get(name, 0) + 1
                last_at[name] = i
                continue
            key = tuple(v)
            g = groups.get(key)
            if g is None:
                groups[key] = [1, i]
            else:
                g[0] += 1
                g[1] = i
        for key, (n, i) in groups.items():
            for name in key:
                counts[name] = counts.get(name, 0) + n
                if last_at.get(name, -1) < i:
                    last_at[name] = i
        last = {}
        for name, i in last_at.items():
            r, v = recs[i], vals[i]
            last[name] = r if v is None else {"step": r["step"], "ts": r["ts"], "value": v[name]}
        # Rows hold only numbers and bools: one sum says whether all of them are finite.
        if None in vals or not _isfinite(sum(map(sum, map(dict.values, vals)))):
            recs = self._encode_nonfinite(recs)
        recs = self._tagged(recs)
        try:
            data = orjson.dumps([*recs, _END])
        except orjson.JSONEncodeError:
            kept, _ = self._drop_unencodable([h for h in items if type(h) is not UploadHandle], recs)
            return self._encode_rows(uploads + kept) if kept else (None, uploads, None)
        self._summarize(counts, last)
        return _as_lines(data, recs), uploads, None

    def _tagged(self, recs: list[Any]) -> list[Any]:
        """``recs`` with this writer's id, in copies, when it joined another process's run."""
        if self.writer_id is None:
            return recs
        wid = self.writer_id
        return [{**rec, "w": wid} for rec in recs]

    # The grammar's (amltrack/_records.py): a copy of each record that holds NaN or an infinity.
    _encode_nonfinite = staticmethod(_records.encode_nonfinite)

    def _summarize(self, counts: dict[str, int], last: dict[str, dict[str, Any]]) -> None:
        summary = self._summary
        for name, n in counts.items():
            s = summary.get(name)
            if s is None:
                s = summary[name] = fmt.MetricSummary()
            s.count += n
            h = last[name]
            s.latest(h["step"], h["ts"], h["value"])
        self._summary_records += sum(counts.values())
        self._summary_dirty = True

    def _drop_unencodable(self, items: list[Any], recs: list[Any]) -> tuple[list[Any], list[Any]]:
        kept_items, kept_recs = [], []
        for item, rec in zip(items, recs):
            try:
                orjson.dumps(rec)
            except orjson.JSONEncodeError as e:
                names = item["name"] if "name" in item else list(item["values"])
                what = f"metric {names!r}" if "name" in item else f"metrics {short_repr(names, 200)}"
                err = InvalidMetricError(
                    f"{what} at step {item['step']} could not be written ({e}), so it is "
                    f"not in {self._metrics.path}; the records around it are. Please report this: "
                    "log() should have refused the value"
                )
                with self.cond:
                    self._unreported = self._unreported or err
                    self._update_blocked()
                continue
            kept_items.append(item)
            kept_recs.append(rec)
        return kept_items, kept_recs

    @staticmethod
    def _chunks(data: memoryview) -> list[memoryview]:
        # Each write() is a run of whole lines so that concurrent O_APPEND writers never tear a line.
        if len(data) <= MAX_WRITE:
            return [data]
        raw = data.tobytes()  # rare (a batch of long lists): a copy to search in
        out: list[memoryview] = []
        start = 0
        while len(raw) - start > MAX_WRITE:
            cut = raw.rfind(b"\n", start, start + MAX_WRITE) + 1
            if cut <= start:  # one line longer than MAX_WRITE: it goes whole
                cut = raw.index(b"\n", start) + 1
            out.append(data[start:cut])
            start = cut
        out.append(data[start:])
        return out

    def _store_upload(self, up: UploadHandle) -> None:
        if up.data is not None:
            self._artifacts.put(up.path, data=up.data, source=up.source)
        else:
            self._artifacts.put(up.path, src=up.local_file, source=up.source)

    def _record_failed_upload(self, up: UploadHandle, e: OSError) -> None:
        with contextlib.suppress(OSError):
            self._artifacts.record(
                up.path,
                "failed",
                source=up.source,
                size=up.size,
                reason=f"{type(e).__name__}: {e.strerror or e}"
                + (
                    f" ({errno.errorcode[e.errno]})"
                    if e.errno is not None and e.errno in errno.errorcode
                    else ""
                ),
            )

    def _fsync_all(self) -> None:
        self._metrics.fsync()
        self._artifacts.fsync()
        if _platform.current().windows:
            return  # a folder cannot be opened as a file there; NTFS journals the renames itself
        dfd = os.open(self.run_dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _write_summary(self, final: bool = False) -> None:
        """Merge what this process logged since the last merge into summary.json, under a file lock.

        Each process keeps only its delta, so several processes logging into one run add up.
        """
        path = self.run_dir / fmt.SUMMARY_FILE
        if self._carry:
            # Records counted but not yet in the file would be counted twice by a reader that
            # repairs the summary from this process's offset: they wait for their write.
            delta, records = {}, 0
        else:
            delta, self._summary = self._summary, {}
            records, self._summary_records = self._summary_records, 0
            self._summary_dirty = False
        self._last_summary = time.monotonic()
        try:
            with self._file_lock(str(self.run_dir / fmt.SUMMARY_LOCK), timeout=10):
                try:
                    current = fmt.read_json(path)
                except (FileNotFoundError, AmltrackError):
                    current = {}
                offsets = {self.writer_id or fmt.OWN_WRITER: self._written_to}
                merged = fmt.merge_summary(current, delta, records, offsets, time.time())
                fmt.write_json_atomic(path, merged, fsync=final)
        except Exception:
            # The summary is a cache for listing; the metrics file stays the truth. Keep the delta
            # so the next attempt includes it.
            for name, s in delta.items():
                self._summary.setdefault(name, s)
            self._summary_records += records
            self._summary_dirty = bool(self._summary)
