"""Rich values: images, tables, histograms and confusion matrices (``docs/format.md``, "Rich kinds").

Three parts, one per side of the writer's queue:

- **inputs**, in the caller's thread: ``image_input``, ``table_input``, ``row_input``,
  ``histogram_input`` and ``confusion_input`` check what a caller passed, refuse bad input naming the
  metric, and copy it (a caller may reuse its buffer) into a ``Pending`` value or, for what is small
  and already final, the record's value itself. numpy arrays and torch tensors are taken by their
  attributes (``__array__``, ``.detach().cpu().numpy()``, ``shape``, ``dtype``), never by importing
  either library: ``import amltrack`` stays as light as it was.
- **encoding**, in the writer's thread: ``Pending.encode()`` turns the copy into a file's bytes
  (PNG through Pillow, JSON through orjson) or an inline value, and the fields of its record.
- **reading**: ``Image``, ``Table``, ``Histogram`` and ``ConfusionMatrix`` are what ``run.metric()``
  returns as values: each is the record's value (a dict, equal to what ``metrics.jsonl`` holds)
  with accessors, and an image or table file is opened only when asked.

This module imports nothing of amltrack but its errors, so that ``_kinds`` may ask it.
"""

from __future__ import annotations

import bisect
import io
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any

from ._errors import InvalidMetricError, MissingExtraError, short_repr

MAX_IMAGE_SIDE = 8192  # pixels, either side
MAX_IMAGE_BYTES = 64 << 20  # an encoded image (PNG or JPEG bytes, a file) as given
MAX_CAPTION_CHARS = 1000
MAX_TABLE_ROWS = 100_000
MAX_TABLE_COLUMNS = 1000
MAX_CELL_CHARS = 65_536
MAX_BINS = 1000
MAX_LABELS = 256  # a confusion matrix of 256 x 256 cells at most: its record stays a line
_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Pillow modes a PNG holds as they are; any other is converted to RGB(A) at the call.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})
# Pixel buffers kept for reuse once encoded (``Buffers``), of all sizes together.
MAX_IDLE_BUFFER_BYTES = 16 << 20
# From this size up a new pixel buffer is an anonymous mapping populated in one system call; see ``Buffers``.
_POPULATE_FROM = 64 << 10


def _q(name: str) -> str:
    return repr(name) if len(name) <= 255 else f"{name[:40]!r}..."


def pillow(what: str) -> Any:
    """PIL.Image, or MissingExtraError naming the extra that brings it."""
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtraError(what, "Pillow", "media") from None
    return Image


# ------------------------------------------------------------------ duck typing of arrays


def as_array(value: Any) -> Any | None:
    """A numpy array for a numpy array, a torch tensor or anything with ``__array__``; None for
    anything else. numpy is then loaded already (the value came from it), so nothing is imported."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, perhaps on a GPU
        value = value.detach().cpu()
        if hasattr(value, "numpy"):
            return value.numpy()
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "tobytes"):
        return value
    if hasattr(value, "__array__"):
        return value.__array__()
    return None


def _is_torch(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "cpu")


# ------------------------------------------------------------------ pixel buffers, recycled


class Buffers:
    """The buffers that ``log_image`` copies an array's pixels into, one owner per writer: the
    caller ``take()``s one, the writer ``give()``s it back once Pillow has copied the pixels out
    (``PendingImage.encode``), and the next call of the same size reuses it.

    Why: a copy into fresh memory is nearly all of ``log_image``'s cost. For 256 x 256 RGB (196
    KB) ``ndarray.tobytes()`` took about 110 µs while the writer still held earlier copies, against 4
    µs for one freed at once, and the same copy into a buffer used before takes 5 µs: the rest is
    the kernel faulting the new pages in, one trap per 4 KiB page. So a buffer is reused when one
    of its size is idle. When none is (images logged faster than they are encoded), a large new
    one is a private anonymous mapping with ``MAP_POPULATE``, whose pages the kernel maps in one
    call: about 65 µs for the same copy, where a new ``bytearray`` took about 100 µs
    (``python benchmarks/bench_media.py --copies``). Without ``MAP_POPULATE`` (not Linux) it is a
    ``bytearray``.

    At most ``MAX_IDLE_BUFFER_BYTES`` wait idle, of all sizes together: a buffer given back beyond
    that pushes out idle ones of other sizes (a loop that moved to another size) or is dropped. A
    buffer is never in the pool and in a pending image at once: only ``give()`` puts it there, after
    the encoder is done with it. The lock is held for a few list operations; a forked child gets a
    new writer, and with it new ``Buffers``."""

    __slots__ = ("_lock", "_idle", "_idle_bytes", "_map")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[int, list[Any]] = {}
        self._idle_bytes = 0
        self._map: Any = None  # size -> a new populated mapping, where the platform has them
        import mmap

        populate = getattr(mmap, "MAP_POPULATE", 0)
        if populate:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate
            self._map = lambda size: mmap.mmap(-1, size, flags=flags)

    def take(self, size: int) -> Any:
        """A writable buffer of ``size`` bytes, its contents undefined."""
        with self._lock:
            free = self._idle.get(size)
            if free:
                self._idle_bytes -= size
                return free.pop()
        if self._map is not None and size >= _POPULATE_FROM:
            try:
                return self._map(size)
            except OSError:  # out of mappings or memory: the allocator may still find some
                pass
        return bytearray(size)

    def give(self, buf: Any) -> None:
        """Take ``buf`` back for reuse; its pixels must have been copied out already."""
        size = len(buf)
        if size > MAX_IDLE_BUFFER_BYTES:
            return
        with self._lock:
            idle = self._idle
            while self._idle_bytes + size > MAX_IDLE_BUFFER_BYTES:
                other = next((k for k, v in idle.items() if k != size and v), None)
                if other is None:
                    return  # the pool is full of this size: buf is dropped (and unmapped) by its last reference
                idle[other].pop()
                self._idle_bytes -= other
            idle.setdefault(size, []).append(buf)
            self._idle_bytes += size

    def clear(self) -> None:
        """Drop every idle buffer (the writer stopped)."""
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0

    @property
    def idle_bytes(self) -> int:
        return self._idle_bytes


def _copy_pixels(arr: Any, buffers: Buffers | None) -> tuple[Any, Buffers | None]:
    """A copy of a uint8 array's pixels in C order, in a buffer of ``buffers`` when the array exposes
    its memory in C order (numpy's ``memoryview``); else ``tobytes()``, and no buffer to give back."""
    if buffers is not None:
        try:
            src = memoryview(arr)
        except TypeError:  # an array-like without the buffer protocol
            src = None
        if src is not None:
            with src:
                if src.c_contiguous and src.itemsize == 1:
                    buf = buffers.take(src.nbytes)
                    with memoryview(buf) as dst, src.cast("B") as flat:
                        dst[:] = flat
                    return buf, buffers
    return arr.tobytes(), None


# ------------------------------------------------------------------ pending values (encoded by the writer)


class Pending:
    """A value the writer finishes: ``encode()`` gives the file's bytes (None: no file) and the
    record's value. ``size`` is the bytes it holds while queued, which the queue's bound counts."""

    __slots__ = ("folder", "size")
    kind = ""
    ext = ""
    source = ""

    def __init__(self, folder: str, size: int) -> None:
        self.folder = folder  # the metric's media folder (an artifact path), checked at the call
        self.size = size

    def encode(self) -> tuple[bytes | None, dict[str, Any]]:
        raise NotImplementedError


class PendingImage(Pending):
    __slots__ = ("data", "pixels", "mode", "width", "height", "fmt", "caption", "scale", "pil", "buffers")
    kind = "image"
    source = "log_image"

    def __init__(self, folder: str, caption: str | None) -> None:
        super().__init__(folder, 0)
        self.caption = caption
        self.data: bytes | None = None  # encoded as given (PNG or JPEG): stored as it is
        self.pixels: Any = None  # a copy of an array, H x W [x C]
        self.buffers: Buffers | None = None  # where pixels goes back to once Pillow has copied it
        self.scale = False  # float pixels in [0, 1], to be scaled to 0..255
        self.pil: Any = None  # a copy of a PIL image
        self.mode = ""
        self.width = self.height = 0
        self.fmt = "png"

    @property
    def ext(self) -> str:  # type: ignore[override]
        return ".jpg" if self.fmt == "jpeg" else ".png"

    def encode(self) -> tuple[bytes | None, dict[str, Any]]:
        data = self.data
        if data is None:
            Image = pillow("log_image")
            img = self.pil
            if img is None:
                px = self.pixels
                if self.scale:
                    px = (px * 255.0 + 0.5).astype("uint8").tobytes()
                size = (self.width, self.height)
                try:
                    img = Image.frombytes(self.mode, size, px)
                except TypeError:  # a Pillow whose decoder takes read-only buffers only
                    img = Image.frombytes(self.mode, size, bytes(px))
                finally:
                    # Pillow copied the pixels into its own image (or failed): the buffer may go
                    # to the next call now, and only now. It is given back once, as pixels is let go.
                    buffers, self.buffers, self.pixels = self.buffers, None, None
                    if buffers is not None:
                        buffers.give(px)
            buf = io.BytesIO()
            # Level 1: the default (6) costs several times as long for files a little smaller on
            # pictures with some noise, and the writer's thread shares the machine with training.
            img.save(buf, format="PNG", compress_level=1)
            data = buf.getvalue()
        value: dict[str, Any] = {
            "kind": "image",
            "format": self.fmt,
            "width": self.width,
            "height": self.height,
        }
        if self.caption is not None:
            value["caption"] = self.caption
        return data, value


class PendingTable(Pending):
    __slots__ = ("columns", "data")
    kind = "table"
    ext = ".table.json"
    source = "log_table"

    def __init__(self, folder: str, columns: list[str], data: list[list[Any]], size: int) -> None:
        super().__init__(folder, size)
        self.columns = columns
        self.data = data

    def encode(self) -> tuple[bytes | None, dict[str, Any]]:
        import orjson

        body = orjson.dumps({"columns": self.columns, "data": self.data})
        return body, {"kind": "table", "columns": self.columns, "rows": len(self.data)}


class PendingHistogram(Pending):
    __slots__ = ("values", "bins")
    kind = "histogram"
    source = "log_histogram"

    def __init__(self, folder: str, values: Any, bins: int, size: int) -> None:
        super().__init__(folder, size)
        self.values = values  # a numpy float64 copy, or a list of floats
        self.bins = bins

    def encode(self) -> tuple[bytes | None, dict[str, Any]]:
        return None, histogram_of(self.values, self.bins)


def histogram_of(values: Any, bins: int) -> dict[str, Any]:
    """The histogram value of ``values`` in ``bins`` equal bins between their finite least and
    greatest (bin i holds ``edges[i] <= v < edges[i + 1]``, the last one its right edge too, as
    numpy's); NaN and the infinities counted apart. Through numpy when the values are an array."""
    if not isinstance(values, list):
        np = sys.modules["numpy"]  # the values are a numpy array: numpy is loaded
        finite = values[np.isfinite(values)]
        nan = int(np.isnan(values).sum())
        pinf = int((values == np.inf).sum())
        ninf = int((values == -np.inf).sum())
        if not finite.size:
            return _histogram([], [], nan, pinf, ninf)
        edges = bin_edges(float(finite.min()), float(finite.max()), bins)
        counts, _ = np.histogram(finite, bins=np.array(edges))
        return _histogram(counts.tolist(), edges, nan, pinf, ninf)
    finite = [v for v in values if math.isfinite(v)]
    nan = sum(1 for v in values if v != v)
    pinf = sum(1 for v in values if v == math.inf)
    ninf = sum(1 for v in values if v == -math.inf)
    if not finite:
        return _histogram([], [], nan, pinf, ninf)
    edges = bin_edges(min(finite), max(finite), bins)
    counts = [0] * bins
    last = bins - 1
    for v in finite:
        counts[min(bisect.bisect_right(edges, v) - 1, last)] += 1
    return _histogram(counts, edges, nan, pinf, ninf)


def bin_edges(lo: float, hi: float, bins: int) -> list[float]:
    """``bins + 1`` increasing edges from ``lo`` to ``hi``; around them when the span is too small
    for that many bins (one distinct value, say), as numpy widens a span of one value."""
    if lo == hi:
        lo, hi = _widen(lo, hi)
    for _ in range(2):
        step = hi / bins - lo / bins  # no overflow, however far apart two finite values are
        if math.isfinite(step * bins):
            edges = [lo + i * step for i in range(bins)] + [hi]
        else:  # nearly the whole float range in one bin: a weighted mean of the ends never overflows
            edges = [lo * (1 - i / bins) + hi * (i / bins) for i in range(bins)] + [hi]
        if all(a < b for a, b in zip(edges, edges[1:])):
            return edges
        lo, hi = _widen(lo, hi)
    raise ValueError(f"cannot make {bins} bins between {lo!r} and {hi!r}")  # pragma: no cover


def _widen(lo: float, hi: float) -> tuple[float, float]:
    d = max(0.5, abs(lo) * 2**-20, abs(hi) * 2**-20)
    top = sys.float_info.max  # a span at the float range's end widens inwards only
    return max(lo - d, -top), min(hi + d, top)


def _histogram(counts: list[Any], edges: list[float], nan: int, pinf: int, ninf: int) -> dict[str, Any]:
    return {"kind": "histogram", "edges": edges, "counts": counts, "nan": nan, "inf": pinf, "-inf": ninf}


# ------------------------------------------------------------------ inputs, checked at the call


def image_input(
    name: str, folder: str, image: Any, caption: Any, buffers: Buffers | None = None
) -> PendingImage:
    """Check and copy an image for ``log_image``: an array (H x W, H x W x 1|3|4; uint8, or float in
    [0, 1]), a PIL image, a matplotlib figure, PNG or JPEG bytes, or a path to such a file. The
    pixels of a uint8 array go into a buffer of ``buffers``, which the encoder gives back."""
    if caption is not None:
        if not isinstance(caption, str):
            raise TypeError(f"image metric {_q(name)}: caption is a {type(caption).__name__}, not a str")
        if len(caption) > MAX_CAPTION_CHARS:
            raise InvalidMetricError(
                f"image metric {_q(name)}: caption is {len(caption)} characters; the limit is {MAX_CAPTION_CHARS}"
            )
        caption = str(caption)
    Image = pillow("log_image")
    p = PendingImage(folder, caption)
    if isinstance(image, (bytes, bytearray, memoryview)):
        _encoded(name, p, bytes(image), Image, "bytes")
    elif isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            size = os.path.getsize(path)
            if size > MAX_IMAGE_BYTES:
                raise InvalidMetricError(
                    f"image metric {_q(name)}: file {short_repr(path)} is {size} bytes; the limit is {MAX_IMAGE_BYTES}"
                )
            with open(path, "rb") as f:
                data = f.read(MAX_IMAGE_BYTES + 1)
        except OSError as e:
            raise FileNotFoundError(
                f"image metric {_q(name)}: cannot read image file {short_repr(path)}: {e.strerror or e}"
            ) from None
        _encoded(name, p, data, Image, f"file {short_repr(path)}")
    elif isinstance(image, Image.Image):
        _pil(name, p, image)
    elif hasattr(image, "savefig") and hasattr(image, "canvas"):  # a matplotlib figure
        buf = io.BytesIO()
        # The figure is the caller's and matplotlib is not thread-safe: it is drawn here, at the call.
        image.savefig(buf, format="png")
        _encoded(name, p, buf.getvalue(), Image, "figure")
    else:
        arr = as_array(image)
        if arr is None:
            raise TypeError(
                f"image metric {_q(name)}: cannot log a {type(image).__name__} as an image; pass a numpy array "
                "or torch tensor (H x W, H x W x 3 or 4), a PIL image, a matplotlib figure, PNG or JPEG bytes, "
                "or a path to a PNG or JPEG file"
            )
        _array(name, p, arr, _is_torch(image), buffers)
    p.size = (
        len(p.data)
        if p.data is not None
        else p.width * p.height * max(len(p.mode), 1) * (8 if p.scale else 1)
    )
    return p


def _check_side(name: str, width: int, height: int) -> None:
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise InvalidMetricError(
            f"image metric {_q(name)}: an image of {width} x {height} pixels; each side must be 1 to "
            f"{MAX_IMAGE_SIDE}: resize it"
        )


def _encoded(name: str, p: PendingImage, data: bytes, Image: Any, what: str) -> None:
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidMetricError(
            f"image metric {_q(name)}: {what} of {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}"
        )
    if data.startswith(_PNG_MAGIC):
        p.fmt = "png"
    elif data.startswith(_JPEG_MAGIC):
        p.fmt = "jpeg"
    else:
        raise InvalidMetricError(
            f"image metric {_q(name)}: {what} {short_repr(data[:8])}... is neither PNG nor JPEG; pass "
            "an array or a PIL image for other formats"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            width, height = img.size
    except Exception as e:  # Pillow raises many kinds for a broken header
        raise InvalidMetricError(f"image metric {_q(name)}: {what} is not a readable image ({e})") from None
    _check_side(name, width, height)
    p.data, p.width, p.height = data, width, height


def _pil(name: str, p: PendingImage, image: Any) -> None:
    width, height = image.size
    _check_side(name, width, height)
    mode = image.mode
    if mode in _PNG_MODES:
        p.pil = image.copy()  # the caller may draw on it again before the writer encodes it
    else:
        p.pil = image.convert("RGBA" if "A" in mode else "RGB")
    p.width, p.height, p.mode = width, height, p.pil.mode


def _array(name: str, p: PendingImage, arr: Any, torch: bool, buffers: Buffers | None) -> None:
    shape = tuple(arr.shape)
    if torch and len(shape) == 3 and shape[0] in _CHANNELS and shape[2] not in _CHANNELS:
        arr = arr.transpose(1, 2, 0)  # a torch image is C x H x W, as torchvision makes it
        shape = tuple(arr.shape)
    if len(shape) == 3 and shape[2] == 1:
        arr = arr[:, :, 0]
        shape = shape[:2]
    if len(shape) == 2:
        mode = "L"
    elif len(shape) == 3 and shape[2] in _CHANNELS:
        mode = _CHANNELS[shape[2]]
    else:
        raise InvalidMetricError(
            f"image metric {_q(name)}: an array of shape {short_repr(shape)}; an image is H x W (gray), "
            "H x W x 3 (RGB) or H x W x 4 (RGBA)"
        )
    height, width = int(shape[0]), int(shape[1])
    _check_side(name, width, height)
    dtype = str(arr.dtype)
    if dtype == "uint8":
        p.pixels, p.buffers = _copy_pixels(arr, buffers)  # C order, one copy
    elif dtype.startswith("float"):
        lo, hi = arr.min(), arr.max()  # NaN makes both NaN, which fails the test below
        if not (0.0 <= lo and hi <= 1.0):
            raise InvalidMetricError(
                f"image metric {_q(name)}: float pixels must be in [0, 1] (NaN not allowed); these range "
                f"from {float(lo)!r} to {float(hi)!r}: scale them, or pass uint8"
            )
        p.pixels = arr.astype("float64")  # a copy; scaled to bytes in the writer
        p.scale = True
    elif dtype == "bool":
        p.pixels = (arr.astype("uint8") * 255).tobytes()
    else:
        raise TypeError(
            f"image metric {_q(name)}: an array of {dtype[:40]}; pass uint8 (0..255) or float in [0, 1]"
        )
    p.mode, p.width, p.height = mode, width, height


def _cell(name: str, column: str, v: Any) -> Any:
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        if t is int and not -(1 << 63) <= v < (1 << 63):
            raise InvalidMetricError(
                f"table metric {_q(name)}: column {column!r} holds {short_repr(v)}, which does not fit in 64 bits"
            )
        if t is str and len(v) > MAX_CELL_CHARS:
            raise InvalidMetricError(
                f"table metric {_q(name)}: a cell of column {column!r} is {len(v)} characters; the limit is "
                f"{MAX_CELL_CHARS}"
            )
        return v
    if t is float:
        if v != v:
            return None  # pandas' missing value
        if not math.isfinite(v):
            raise InvalidMetricError(
                f"table metric {_q(name)}: column {column!r} holds {v!r}; a table holds finite numbers "
                "(NaN is stored as null)"
            )
        return v
    if isinstance(v, (bool, int, float, str)):  # numpy scalars, str subclasses
        return _cell(name, column, v.item() if hasattr(v, "item") else t.__mro__[1](v))
    item = getattr(v, "item", None)
    if item is not None and getattr(v, "ndim", 0) == 0:
        return _cell(name, column, item())
    raise TypeError(
        f"table metric {_q(name)}: column {column!r} holds a {type(v).__name__} {short_repr(v)}; cells are "
        "numbers, bools, strings or None"
    )


def _column_name(name: str, c: Any) -> str:
    if not isinstance(c, str) or not c:
        raise TypeError(f"table metric {_q(name)}: column name {short_repr(c)} is not a non-empty str")
    return str(c)


def table_input(name: str, folder: str, data: Any) -> PendingTable:
    """Check and copy a table for ``log_table``: a dict of equal-length columns, or a DataFrame."""
    if isinstance(data, dict):
        columns = data
    elif hasattr(data, "columns") and hasattr(data, "to_dict"):  # a pandas DataFrame
        columns = {c: data[c].tolist() for c in data.columns}
    else:
        raise TypeError(
            f"table metric {_q(name)}: cannot log a {type(data).__name__} as a table; pass a dict of "
            "equal-length columns or a pandas DataFrame"
        )
    if not columns:
        raise InvalidMetricError(f"table metric {_q(name)}: the table has no columns")
    if len(columns) > MAX_TABLE_COLUMNS:
        raise InvalidMetricError(
            f"table metric {_q(name)}: {len(columns)} columns; the limit is {MAX_TABLE_COLUMNS}"
        )
    names = [_column_name(name, c) for c in columns]
    if len(set(names)) != len(names):
        raise InvalidMetricError(f"table metric {_q(name)}: two columns have the same name")
    cols = []
    length = None
    for c, col in zip(names, columns.values()):
        arr = as_array(col)
        if arr is not None:
            if len(arr.shape) != 1:
                raise InvalidMetricError(
                    f"table metric {_q(name)}: column {c!r} has shape {short_repr(tuple(arr.shape))}; a column is 1-D"
                )
            col = arr.tolist()
        elif isinstance(col, (str, bytes)) or not hasattr(col, "__len__"):
            raise TypeError(
                f"table metric {_q(name)}: column {c!r} is a {type(col).__name__}; a column is a list or 1-D array"
            )
        if length is None:
            length = len(col)
        elif len(col) != length:
            raise InvalidMetricError(
                f"table metric {_q(name)}: column {c!r} has {len(col)} rows and column {names[0]!r} {length}; "
                "columns must be of equal length"
            )
        if length > MAX_TABLE_ROWS:
            raise InvalidMetricError(
                f"table metric {_q(name)}: {length} rows; the limit is {MAX_TABLE_ROWS}: log a sample, or "
                "upload the whole table as an artifact"
            )
        cols.append([_cell(name, c, v) for v in col])
    rows = [list(r) for r in zip(*cols)]
    size = sum(len(r) for r in rows) * 16 + 64
    return PendingTable(folder, names, rows, size)


def row_input(name: str, cells: dict[str, Any]) -> dict[str, Any]:
    """``log_row``'s record value: a table of one row, kept inline."""
    if not cells:
        raise InvalidMetricError(f"table metric {_q(name)}: log_row() got no cells; pass them as col=value")
    if len(cells) > MAX_TABLE_COLUMNS:
        raise InvalidMetricError(
            f"table metric {_q(name)}: {len(cells)} columns; the limit is {MAX_TABLE_COLUMNS}"
        )
    return {
        "kind": "table",
        "columns": list(cells),
        "data": [[_cell(name, c, v) for c, v in cells.items()]],
    }


def _numbers(name: str, what: str, value: Any, kind: str = "histogram") -> Any:
    """A numpy float64 copy of ``value`` (1-D), or a list of floats when it is not an array."""
    arr = as_array(value)
    if arr is not None:
        if len(arr.shape) != 1:
            arr = arr.reshape(-1)  # a histogram of a weight tensor: every element counts
        dtype = str(arr.dtype)
        if not (dtype.startswith(("float", "int", "uint")) or dtype == "bool"):
            raise TypeError(f"{kind} metric {_q(name)}: {what} is an array of {dtype[:40]}, not of numbers")
        return arr.astype("float64")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{kind} metric {_q(name)}: {what} is a {type(value).__name__}; pass a list or an array of numbers"
        )
    out = []
    for i, v in enumerate(value):
        if type(v) is not float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
                raise TypeError(
                    f"{kind} metric {_q(name)}: {what} element {i} is a {type(v).__name__} {short_repr(v)}, not a number"
                )
            v = float(v)
        out.append(v)
    return out


def histogram_input(name: str, folder: str, values: Any, bins: Any, counts: Any, edges: Any) -> Any:
    """A pending histogram of ``values``, or the value of one already computed (``counts``, ``edges``)."""
    if type(bins) is not int:
        if isinstance(bins, bool) or not hasattr(bins, "__index__"):
            raise TypeError(f"histogram metric {_q(name)}: bins is a {type(bins).__name__}, not an int")
        bins = bins.__index__()
    if not 1 <= bins <= MAX_BINS:
        raise InvalidMetricError(f"histogram metric {_q(name)}: bins={bins}; it must be 1 to {MAX_BINS}")
    if values is not None:
        if counts is not None or edges is not None:
            raise TypeError(f"histogram metric {_q(name)}: pass values, or counts= and edges=, not both")
        v = _numbers(name, "values", values)
        return PendingHistogram(folder, v, bins, len(v) * 8)
    if counts is None or edges is None:
        raise TypeError(f"histogram metric {_q(name)}: pass values, or both counts= and edges=")
    c = _numbers(name, "counts", counts)
    e = _numbers(name, "edges", edges)
    c = c if isinstance(c, list) else c.tolist()
    e = e if isinstance(e, list) else e.tolist()
    if not 1 <= len(c) <= MAX_BINS:
        raise InvalidMetricError(f"histogram metric {_q(name)}: {len(c)} counts; give 1 to {MAX_BINS}")
    if len(e) != len(c) + 1:
        raise InvalidMetricError(
            f"histogram metric {_q(name)}: {len(e)} edges for {len(c)} counts; give one edge more than counts"
        )
    if not all(math.isfinite(x) and x >= 0 for x in c):
        raise InvalidMetricError(f"histogram metric {_q(name)}: counts must be finite and >= 0")
    if not all(math.isfinite(x) for x in e) or any(b <= a for a, b in zip(e, e[1:])):
        raise InvalidMetricError(f"histogram metric {_q(name)}: edges must be finite and increasing")
    return _histogram([int(x) if x == int(x) else x for x in c], e, 0, 0, 0)


def confusion_input(name: str, matrix: Any, labels: Any) -> dict[str, Any]:
    """The record value of a confusion matrix: square, of finite counts >= 0, one label a row."""
    arr = as_array(matrix)
    rows = arr.tolist() if arr is not None else matrix
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise TypeError(
            f"confusion matrix metric {_q(name)}: labels is a {type(labels).__name__}; pass a list of str"
        )
    labels = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    if not 1 <= len(labels) <= MAX_LABELS:
        raise InvalidMetricError(
            f"confusion matrix metric {_q(name)}: {len(labels)} labels; give 1 to {MAX_LABELS}"
        )
    labels = [str(x) if isinstance(x, (int, str)) and not isinstance(x, bool) else None for x in labels]
    if None in labels:
        raise TypeError(f"confusion matrix metric {_q(name)}: labels must be str or int")
    n = len(labels)
    if not isinstance(rows, (list, tuple)) or len(rows) != n:
        raise InvalidMetricError(
            f"confusion matrix metric {_q(name)}: the matrix must be {n} x {n}, one row and one column a label"
        )
    out = []
    for i, r in enumerate(rows):
        r = list(r) if isinstance(r, (list, tuple)) else None
        if r is None or len(r) != n:
            raise InvalidMetricError(
                f"confusion matrix metric {_q(name)}: row {i} is not {n} long; the matrix must be {n} x {n}"
            )
        for x in r:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                raise InvalidMetricError(
                    f"confusion matrix metric {_q(name)}: row {i} holds {short_repr(x)}; cells are finite counts >= 0"
                )
        out.append([int(x) if x == int(x) else float(x) for x in r])
    return {"kind": "confusion_matrix", "labels": labels, "matrix": out}


# ------------------------------------------------------------------ what readers get


class _Value(dict[str, Any]):
    """A record's value, as ``metrics.jsonl`` holds it, with the artifacts folder of its run."""

    __slots__ = ("_dir",)

    def __init__(self, value: dict[str, Any], artifacts: Path | None = None) -> None:
        super().__init__(value)
        self._dir = artifacts

    def _file(self, what: str) -> Path:
        path = self.get("path")
        if self._dir is None or type(path) is not str:
            raise LookupError(f"this {what} has no file: read it through Store().run(...).metric(name)")
        return self._dir / path


class Image(_Value):
    """An image point's value: ``width``, ``height``, ``format`` (png or jpeg), ``caption``, and the
    file, read only when asked.

        img = run.metric("samples")[-1].value
        img.path, img.width, img.caption; img.read_bytes(); img.open()   # a PIL image
    """

    __slots__ = ()

    @property
    def path(self) -> str:
        """The artifact path of its file (``history info -a PATH`` gets it)."""
        return self["path"]

    @property
    def width(self) -> int:
        return self["width"]

    @property
    def height(self) -> int:
        return self["height"]

    @property
    def caption(self) -> str | None:
        return self.get("caption")

    @property
    def file(self) -> Path:
        """Where the file is on disk."""
        return self._file("image")

    def read_bytes(self) -> bytes:
        """The stored PNG or JPEG bytes."""
        return self.file.read_bytes()

    def open(self) -> Any:
        """The image as a PIL image, its file open until it is loaded or closed (``with img.open()
        as im:``); needs ``amltrack[media]``."""
        Image = pillow("Image.open()")
        return Image.open(self.file)

    def to_numpy(self) -> Any:
        """The pixels as a numpy array, H x W [x C] of uint8 (needs numpy and Pillow)."""
        import numpy as np

        with self.open() as img:
            return np.asarray(img)


class Table(_Value):
    """A table point's value: ``columns`` and ``data`` (rows), read from its file when first asked
    for a table from ``log_table``, or held inline for a row from ``log_row``.

        t = run.metric("predictions")[-1].value
        t.columns, t.data[:5], t.to_pandas()
    """

    __slots__ = ("_body",)

    def __init__(self, value: dict[str, Any], artifacts: Path | None = None) -> None:
        super().__init__(value, artifacts)
        self._body: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if "data" in self:
            return self
        if self._body is None:
            import orjson

            self._body = orjson.loads(self._file("table").read_bytes())
        return self._body

    @property
    def path(self) -> str | None:
        return self.get("path")

    @property
    def columns(self) -> list[str]:
        return list(self["columns"])

    @property
    def data(self) -> list[list[Any]]:
        return self._load()["data"]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.data, columns=self.columns)


class Histogram(_Value):
    """A histogram point's value: ``counts`` of the finite values in the bins between ``edges``
    (one more than counts), and the NaN (``nan``) and infinities (``inf``, ``ninf``) counted apart."""

    __slots__ = ()

    @property
    def counts(self) -> list[Any]:
        return self["counts"]

    @property
    def edges(self) -> list[float]:
        return self["edges"]

    @property
    def nan(self) -> int:
        return self.get("nan", 0)

    @property
    def inf(self) -> int:
        return self.get("inf", 0)

    @property
    def ninf(self) -> int:
        return self.get("-inf", 0)


class ConfusionMatrix(_Value):
    """A confusion matrix point's value: ``labels`` and ``matrix`` (row: true label, column: predicted)."""

    __slots__ = ()

    @property
    def labels(self) -> list[str]:
        return self["labels"]

    @property
    def matrix(self) -> list[list[Any]]:
        return self["matrix"]
