"""An index of ``metrics.jsonl`` as binary columns, kept by the run's own writer, so that reading a
long series back is a copy of arrays instead of a JSON parse per record.

    <run>/cache/columns.bin

It is derived data: ``metrics.jsonl`` stays the truth, and deleting the file is always safe (the
reader then parses the JSON Lines, as it always does for the bytes the index does not cover). The
file is a sequence of blocks, one per batch the writer appended to ``metrics.jsonl``::

    header   struct "<4sIQQIIII": b"AMC1", the number of records n, the start and end byte of the
             batch's lines in metrics.jsonl, the byte lengths of names and extras, the CRC-32 of
             the batch's lines, and the CRC-32 of the rest of this block
    names    JSON array of the metric names first seen in this batch; their codes count on from the
             last block's
    codes    n x uint32    each record's metric
    steps    n x int64
    values   n x float64   each value that is a float (NaN and infinities as they are), else 0
    stamps   n x float64
    extras   JSON array of [i, value, nonfinite] for each record i whose value is not a float,
             written as in metrics.jsonl

A batch that holds rows (``log_metrics()``) gets a raw block: n = 0, no names, columns or extras,
only the range of its lines (both CRCs 0), which the reader parses rather than checks: it only
checks that the range still ends at a line's end. Columns
would add 28 bytes a point to a row's 35; parsing rows reads 1,000,000 points in about 0.6 s
(``benchmarks/bench_core.py``), against about 0.2 s through columns.

Blocks cover ``metrics.jsonl`` from byte 0 without gaps. The writer adds no more blocks once a
batch could not be appended whole or another process appended between two of its batches. The
reader takes the blocks that are whole, contiguous, intact, and whose lines in ``metrics.jsonl``
still have their CRC-32 (a hand-edited line, even one of the same length, ends the index there),
and parses the JSON Lines from where they end. Little-endian only; on other machines no index is
written or read.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Collection
from pathlib import Path
from typing import Any

import orjson

from . import _format as fmt
from ._records import block_columns, block_extras, split_columns

CACHE_DIR = fmt.CACHE_DIR
COLUMNS_FILE = fmt.COLUMNS_FILE
MAGIC = b"AMC1"
_HEADER = struct.Struct("<4sIQQIIII")
_U32 = struct.Struct("<I")
_STEP = operator.itemgetter("step")
_TS = operator.itemgetter("ts")
_FLOAT = {float}
# Windows has no os.pread: the index is off there, and readers parse metrics.jsonl (it is derived data).
ENABLED = sys.byteorder == "little" and array("I").itemsize == 4 and hasattr(os, "pread")


def columns_path(run_dir: Path) -> Path:
    return run_dir / CACHE_DIR / COLUMNS_FILE


class ColumnWriter:
    """The writer thread's side: one block per batch, or nothing once the index cannot stay exact."""

    def __init__(self, run_dir: Path) -> None:
        self.path = columns_path(run_dir)
        self.active = ENABLED
        self._fd: int | None = None
        self._codes: dict[str, int] = {}
        self._end = 0  # bytes of metrics.jsonl covered so far

    def add(
        self,
        start: int,
        lines: memoryview,
        items: list[dict[str, Any]],
        recs: list[dict[str, Any]],
        names: list[str],
        distinct: Collection[str],
        values: list[Any],
        types: set[type],
    ) -> None:
        """Index the batch ``items`` (written as ``recs``) whose ``lines`` landed at byte ``start``.

        ``names`` are the records' metric names and ``distinct`` the same without repeats, in order.
        Columns are packed with struct from lists: a third of the cost of building arrays.
        """
        if not self.active:
            return
        if start != self._end:  # another process appended in between, or the file was not new
            self.stop()
            return
        end = start + len(lines)
        try:
            n = len(items)
            codes = self._codes
            new = [name for name in distinct if name not in codes]
            for name in new:
                codes[name] = len(codes)
            if len(distinct) == 1:
                code_bytes = _U32.pack(codes[names[0]]) * n
            else:
                code_bytes = struct.pack(f"<{n}I", *map(codes.__getitem__, names))
            floats = values
            if types <= _FLOAT:
                extras = b"[]"
            else:
                floats = [v if type(v) is float else 0.0 for v in values]
                extras = orjson.dumps(
                    [
                        [i, r["value"], r.get("nonfinite", False)]
                        for i, r in enumerate(recs)
                        if type(values[i]) is not float
                    ]
                )
            names_json = orjson.dumps(new)
            body = b"".join(
                (
                    names_json,
                    code_bytes,
                    struct.pack(f"<{n}q", *list(map(_STEP, items))),
                    struct.pack(f"<{n}d", *floats),
                    struct.pack(f"<{n}d", *list(map(_TS, items))),
                    extras,
                )
            )
            header = _HEADER.pack(
                MAGIC, n, start, end, len(names_json), len(extras), zlib.crc32(lines), zlib.crc32(body)
            )
            self._write(header + body)
        except (OSError, ValueError, OverflowError, TypeError, struct.error, orjson.JSONEncodeError):
            # The index is an optimisation: a block that could not be written whole ends it, and
            # the reader parses the rest from metrics.jsonl.
            self.stop()
            return
        self._end = end

    def add_raw(self, start: int, lines: memoryview) -> None:
        """A raw block for a batch with rows: no columns, its lines are parsed when read."""
        if not self.active:
            return
        if start != self._end:
            self.stop()
            return
        end = start + len(lines)
        try:
            # no CRCs: no body, and the reader parses the lines rather than checking them
            self._write(_HEADER.pack(MAGIC, 0, start, end, 0, 0, 0, 0))
        except OSError:
            self.stop()
            return
        self._end = end

    def _write(self, block: bytes) -> None:
        if self._fd is None:
            self.path.parent.mkdir(exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o644)
        view = memoryview(block)
        while view:
            view = view[os.write(self._fd, view) :]

    def stop(self) -> None:
        self.active = False
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class Columns:
    """What the index holds: the first ``end`` bytes of metrics.jsonl, as columns in file order.

    A plain class, as is Block: a dataclass compiles its methods at import, 15 ms of every read."""

    __slots__ = ("names", "codes", "steps", "values", "stamps", "end")

    def __init__(
        self,
        names: list[str],
        codes: array[int],
        steps: array[int],
        values: list[Any],
        stamps: array[float],
        end: int,
    ) -> None:
        self.names, self.codes, self.steps, self.values, self.stamps, self.end = (
            names,
            codes,
            steps,
            values,
            stamps,
            end,
        )

    def grouped(self) -> dict[str, tuple[list[int], list[Any], list[float]]]:
        """Per metric name, its steps, values and timestamps, in file order."""
        by_code = split_columns(self.codes.tolist(), self.steps.tolist(), self.values, self.stamps.tolist())
        return {self.names[c]: series for c, series in by_code.items()}


class Block:
    """One batch of the index: its records' columns as little-endian bytes, in file order."""

    __slots__ = ("start", "end", "n", "codes", "steps", "values", "stamps", "extras")

    def __init__(
        self,
        start: int,
        end: int,
        n: int,
        codes: memoryview,  # uint32
        steps: memoryview,  # int64
        values: memoryview,  # float64
        stamps: memoryview,  # float64
        extras: list[list[Any]],  # [i, value, nonfinite] for each record whose value is not a float
    ) -> None:
        self.start, self.end, self.n = start, end, n
        self.codes, self.steps, self.values, self.stamps, self.extras = codes, steps, values, stamps, extras

    @property
    def raw(self) -> bool:
        """A batch with rows (``log_metrics()``): no columns; its lines are to be parsed."""
        return self.n == 0


def read_blocks(
    run_dir: Path, metrics: Any, start: int = 0, limit: int | None = None
) -> tuple[list[str], list[Block]] | None:
    """The index's metric names (by code) and its whole, contiguous blocks that end after byte
    ``start`` of metrics.jsonl, checked against the open metrics file ``metrics``; None if there is
    no usable index. Blocks before ``start`` cost a read of their header only. With ``limit``, the
    blocks stop once they hold that many records: checking a block reads its lines, so a caller
    that takes a slice at a time should not pay for the whole file each time."""
    if not ENABLED:
        return None
    try:
        fd = os.open(columns_path(run_dir), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_blocks(fd, os.fstat(metrics.fileno()).st_size, metrics, start, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_blocks(
    fd: int, size: int, metrics: Any, start: int, limit: int | None
) -> tuple[list[str], list[Block]] | None:
    names: list[str] = []
    records = 0
    blocks: list[Block] = []
    checks: list[tuple[memoryview, int, int, int, int | None]] = []  # body, its CRC, the lines' range and CRC
    names_before: list[int] = []  # len(names) before each wanted block's own names
    length = os.fstat(fd).st_size
    end, pos, hsize = 0, 0, _HEADER.size
    while pos + hsize <= length:
        header = os.pread(fd, hsize, pos)
        if len(header) < hsize:
            break
        magic, n, first, block_end, len_names, n_extras, lines_crc, body_crc = _HEADER.unpack(header)
        size_body = len_names + 28 * n + n_extras
        if magic != MAGIC or first != end or block_end > size or pos + hsize + size_body > length:
            break  # torn by a crash, or not ours: the JSON Lines from here on
        if n == 0 and (size_body or block_end <= first):
            break  # a raw block has no body and covers some lines
        wanted = block_end > start
        # Blocks the caller has consumed already cost their names only.
        body = memoryview(os.pread(fd, size_body if wanted else len_names, pos + hsize))
        if wanted and len(body) != size_body:
            break
        try:
            new = orjson.loads(body[:len_names]) if len_names else []
            at = len_names + 28 * n
            extras = orjson.loads(body[at:]) if wanted and n_extras > 2 else []
        except orjson.JSONDecodeError:
            break
        if not isinstance(new, list) or not all(type(x) is str for x in new) or type(extras) is not list:
            break
        if wanted:
            names_before.append(len(names))
            b = body[len_names:]
            blocks.append(
                Block(
                    first,
                    block_end,
                    n,
                    b[: 4 * n],
                    b[4 * n : 12 * n],
                    b[12 * n : 20 * n],
                    b[20 * n : 28 * n],
                    extras,
                )
            )
            # A raw block's lines are parsed by the caller, so they are the truth as they stand
            # (it has no CRC of them): it need only still end at a line's end, so that every line
            # is parsed once, by it or by what follows. A byte, not a read of all its lines.
            checks.append((body, body_crc, first, block_end, lines_crc if n else None))
            # A raw block's lines count as records of a typical row point, so that a caller taking
            # a slice at a time gets a rows run a slice at a time too.
            records += n or (block_end - first) // _RAW_BYTES_PER_RECORD
        names += new
        end, pos = block_end, pos + hsize + size_body
        if limit is not None and records >= limit:
            break
    good = _count_intact(checks, metrics.fileno())
    if good < len(blocks):
        # A block whose bytes or whose lines in metrics.jsonl changed ends the index there (the
        # lines were edited: believe them, not the index); its names and those after it go too.
        del names[names_before[good] :], blocks[good:]
    if not names and not blocks:
        return None
    return names, blocks


def _count_intact(checks: list[tuple[memoryview, int, int, int, int | None]], metrics_fd: int) -> int:
    """How many blocks, from the first, have their CRCs: of the block's own bytes and of its lines.

    For a long run these are a read and a CRC-32 of all of metrics.jsonl, about a second per GB
    here. ``zlib.crc32`` and ``os.pread`` release the GIL, so two threads do it in half the time.
    """

    def intact(check: tuple[memoryview, int, int, int, int | None]) -> bool:
        body, body_crc, first, block_end, lines_crc = check
        if zlib.crc32(body) != body_crc:
            return False
        if lines_crc is None:
            return os.pread(metrics_fd, 1, block_end - 1) == b"\n"
        return zlib.crc32(os.pread(metrics_fd, block_end - first, first)) == lines_crc

    if sum(c[3] - c[2] for c in checks if c[4] is not None) < _PARALLEL_BYTES or (os.cpu_count() or 1) < 2:
        return sum(1 for _ in itertools.takewhile(bool, map(intact, checks)))
    from concurrent.futures import ThreadPoolExecutor  # only for long runs: 7 ms of every read's import

    with ThreadPoolExecutor(2, thread_name_prefix="amltrack-columns") as pool:
        good = sum(1 for _ in itertools.takewhile(bool, pool.map(intact, checks)))
        pool.shutdown(cancel_futures=True)  # after a failed block the rest need not be read
    return good


_PARALLEL_BYTES = 16 << 20
_RAW_BYTES_PER_RECORD = 32


def read_segments(run_dir: Path, metrics: Any) -> list[Columns | tuple[int, int]] | None:
    """What the index covers of metrics.jsonl from byte 0, in file order: runs of blocks as
    ``Columns``, and for raw blocks (batches with rows) the byte range ``(start, end)`` of
    metrics.jsonl whose lines the caller parses. None if there is no usable index."""
    found = read_blocks(run_dir, metrics)
    if found is None or not found[1]:
        return None
    names, blocks = found
    out: list[Columns | tuple[int, int]] = []
    run: list[Block] = []
    for b in [*blocks, None]:
        if b is not None and not b.raw:
            run.append(b)
            continue
        if run:
            cols = _to_columns(names, run)
            if cols is None:  # damaged past its CRC checks: the JSON Lines from there on
                return out or None
            out.append(cols)
            run = []
        if b is None:
            break
        last = out[-1] if out else None
        if type(last) is tuple:
            out[-1] = (last[0], b.end)
        else:
            out.append((b.start, b.end))
    return out


def read_columns(run_dir: Path, metrics: Any) -> Columns | None:
    """The index of ``run_dir`` as columns up to its first raw block, checked against the open
    metrics file ``metrics``."""
    segments = read_segments(run_dir, metrics)
    if not segments or type(segments[0]) is tuple:
        return None
    return segments[0]  # type: ignore[return-value]


def _to_columns(names: list[str], blocks: list[Block]) -> Columns | None:
    codes: array[int] = array("I")
    steps: array[int] = array("q")
    vals: array[float] = array("d")
    stamps: array[float] = array("d")
    columns: tuple[array[Any], ...] = (codes, steps, vals, stamps)
    for column, parts in zip(columns, block_columns(blocks)):
        for raw in parts:
            column.frombytes(raw)
    if max(codes) >= len(names):
        return None
    values = vals.tolist()
    try:
        for i, value in block_extras(blocks):
            values[i] = value
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    return Columns(names, codes, steps, values, stamps, blocks[-1].end)
