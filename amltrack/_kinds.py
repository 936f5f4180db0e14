"""Value kinds: what a metric value may be, and how each kind is checked, stored and shown.

Each kind is one object in ``KINDS``; the logger, the writer's summary, the readers, the UI cache,
the CLI and the MLflow mapping ask it instead of testing types themselves. To add a kind (images,
tables, histograms), write one class here, add it to ``KINDS``, and give it a JSON form in
``metrics.jsonl`` that is an object ``{"kind": NAME, ...}`` (``docs/format.md``): a reader that
predates it then skips such records quietly, with one warning naming the kind, and does not call
the file damaged (``unknown_kind``).

    kind_of(0.5).name == "number"; kind_of([1, 2]).name == "list"; kind_of({"a": 1}) is None
"""

from __future__ import annotations

from typing import Any

from . import _media
from ._errors import InvalidMetricError, short_repr

MAX_NAME_CHARS = 255
MAX_STRING_CHARS = 1 << 20  # a string metric of 1 Mi characters at most: a line, not a file
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1
_SCALAR_TYPES = (bool, int, float, str)


def quote_name(name: Any) -> str:
    """A metric name for an error message: its repr, of its first 40 characters when it is longer
    than a name may be; a name that is not a str as ``short_repr()`` shows it."""
    if type(name) is not str:
        return short_repr(name)
    return repr(name) if len(name) <= MAX_NAME_CHARS else f"{name[:40]!r}..."


def check_number(name: str, v: Any, where: str = "") -> Any:
    """``v`` as a plain float or int that fits in 64 bits, or raise naming the metric."""
    t = type(v)
    if t is float:
        return v
    if t is int:
        if not _INT_MIN <= v <= _INT_MAX:
            raise InvalidMetricError(
                f"metric {quote_name(name)}{where}: integer {short_repr(v)} does not fit in 64 bits; "
                "log it as a float"
            )
        return v
    if t is bool:
        raise TypeError(f"metric {quote_name(name)}{where}: a list holds numbers, not bool {v!r}")
    if isinstance(v, float):
        return float(v)  # numpy.float64 and other float subclasses
    if isinstance(v, int):
        return check_number(name, int(v), where)
    item = getattr(v, "item", None)
    if item is not None and getattr(v, "ndim", 0) == 0 and getattr(v, "size", 1) == 1:
        return check_number(name, item(), where)
    raise TypeError(f"metric {quote_name(name)}{where}: {type(v).__name__} {short_repr(v)} is not a number")


def check_string(name: str, value: str) -> str:
    if len(value) > MAX_STRING_CHARS:
        raise InvalidMetricError(
            f"string metric {quote_name(name)} is {len(value)} characters; the limit is {MAX_STRING_CHARS}: "
            "upload long text as an artifact"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMetricError(
                f"string metric {quote_name(name)} is not valid Unicode (a lone surrogate)"
            ) from None
    return value


class Kind:
    """One kind of metric value. ``name`` is what summary.json, the CLI and the UI call it;
    ``column`` is where the UI cache keeps it: ``value`` (float64 columns) or the name of an
    offsets column that points at its records' lines; ``counter`` is its count in the UI cache's
    index."""

    name = ""
    column = "value"
    counter = ""

    def accepts(self, v: Any) -> bool:
        """Whether ``v``, as read back from metrics.jsonl (non-finite markers decoded), is of this kind."""
        raise NotImplementedError

    def coerce(self, name: str, v: Any) -> Any:
        """A caller's value of this kind as it is stored, or raise naming the metric."""
        raise NotImplementedError

    def last(self, v: Any) -> tuple[Any, int | None]:
        """What summary.json keeps of a latest value: ``last`` and a ``length`` (None: none)."""
        return v, None

    def mlflow_points(self, step: int, v: Any) -> list[tuple[int, float]] | None:
        """The (step, value) points MLflow gets for ``v``; None for what MLflow cannot hold."""
        return None

    def brief(self, length: Any) -> str | None:
        """How a runs list shows a latest value it holds only a summary of (``last``, ``length``
        in summary.json), when not as the value itself: None."""
        return None


class Number(Kind):
    name = "number"
    counter = "numbers"

    def accepts(self, v: Any) -> bool:
        return type(v) is float or type(v) is int

    def coerce(self, name: str, v: Any) -> Any:
        return check_number(name, v)

    def mlflow_points(self, step: int, v: Any) -> list[tuple[int, float]] | None:
        try:
            return [(step, float(v))]
        except OverflowError:  # an int beyond a double, written by hand
            return None


class Bool(Kind):
    name = "bool"
    counter = "bools"

    def accepts(self, v: Any) -> bool:
        return type(v) is bool

    def coerce(self, name: str, v: Any) -> Any:
        return bool(v)

    def mlflow_points(self, step: int, v: Any) -> list[tuple[int, float]] | None:
        return [(step, float(v))]  # as 1.0 or 0.0


class String(Kind):
    name = "string"
    column = "str"
    counter = "strings"

    def accepts(self, v: Any) -> bool:
        return type(v) is str

    def coerce(self, name: str, v: Any) -> Any:
        return check_string(name, str(v))


class List(Kind):
    """A list of numbers: one record, drawn as a chart; MLflow gets one point per element."""

    name = "list"
    column = "list"
    counter = "lists"

    def accepts(self, v: Any) -> bool:
        return type(v) is list and all(type(x) is float or type(x) is int for x in v)

    def coerce(self, name: str, v: Any) -> Any:
        return [check_number(name, x, f" element {i}") for i, x in enumerate(v)]

    def last(self, v: Any) -> tuple[Any, int | None]:
        return (v[-1] if v else None), len(v)

    def brief(self, length: Any) -> str | None:
        return f"[{length if type(length) is int else '?'} values]"

    def mlflow_points(self, step: int, v: Any) -> list[tuple[int, float]] | None:
        try:
            return [(i, float(x)) for i, x in enumerate(v)]
        except OverflowError:
            return None


class Tagged(Kind):
    """A kind whose values are JSON objects tagged ``{"kind": NAME, ...}`` (docs/format.md, "Rich
    kinds"): images, tables, histograms, confusion matrices. The logger makes them through
    ``_media``'s inputs, never through ``log()``; a reader gets them as ``reads``' type, which keeps
    the record's value and knows the run folder its file is in."""

    column = "media"
    counter = "media"
    reads: type[_media._Value] = _media._Value
    _fields: tuple[tuple[str, tuple[type, ...]], ...] = ()

    def accepts(self, v: Any) -> bool:
        if type(v) is not dict or v.get("kind") != self.name:
            return False
        return all(type(v.get(k)) in types for k, types in self._fields)

    def coerce(self, name: str, v: Any) -> Any:
        raise TypeError(f"metric {quote_name(name)}: log a {self.name} with its own call, not log()")

    def last(self, v: Any) -> tuple[Any, int | None]:
        return None, None  # summary.json keeps single values; the points hold the rest

    def brief(self, length: Any) -> str | None:
        return f"[{self.name.replace('_', ' ')}]"

    def show(self, v: dict[str, Any]) -> str:
        """A value in a line of ``history info``."""
        return self.name

    def read(self, v: dict[str, Any], artifacts: Any) -> Any:
        """The value a reader gets: the record's value, with its run's artifacts folder for its file."""
        return self.reads(v, artifacts)


class ImageKind(Tagged):
    """``log_image``: a PNG or JPEG file under ``artifacts/media/``, the record pointing at it."""

    name = "image"
    reads = _media.Image
    _fields = (("path", (str,)), ("width", (int,)), ("height", (int,)), ("format", (str,)))

    def show(self, v: dict[str, Any]) -> str:
        return f"image {v['width']}x{v['height']} {v['path']}"


class TableKind(Tagged):
    """``log_table``: a JSON file ``{"columns", "data"}`` under ``artifacts/media/``; ``log_row``:
    one row, inline (``"data"`` in the record)."""

    name = "table"
    reads = _media.Table
    _fields = (("columns", (list,)),)

    def accepts(self, v: Any) -> bool:
        return super().accepts(v) and (type(v.get("path")) is str or type(v.get("data")) is list)

    def show(self, v: dict[str, Any]) -> str:
        if "data" in v:
            return f"row of {len(v['columns'])} cells"
        return f"table {v.get('rows')} rows x {len(v['columns'])} columns"


class HistogramKind(Tagged):
    """``log_histogram``: counts between edges, NaN and infinities apart; inline."""

    name = "histogram"
    reads = _media.Histogram
    _fields = (("counts", (list,)), ("edges", (list,)))

    def show(self, v: dict[str, Any]) -> str:
        n = sum(x for x in v["counts"] if type(x) in (int, float))
        return f"histogram of {n:g} values in {len(v['counts'])} bins"


class ConfusionKind(Tagged):
    """``log_confusion_matrix``: labels and a square matrix of counts; inline."""

    name = "confusion_matrix"
    reads = _media.ConfusionMatrix
    _fields = (("labels", (list,)), ("matrix", (list,)))

    def show(self, v: dict[str, Any]) -> str:
        return f"confusion matrix of {len(v['labels'])} labels"


NUMBER, BOOL, STRING, LIST = Number(), Bool(), String(), List()
IMAGE, TABLE, HISTOGRAM, CONFUSION = ImageKind(), TableKind(), HistogramKind(), ConfusionKind()
KINDS: tuple[Kind, ...] = (NUMBER, BOOL, STRING, LIST, IMAGE, TABLE, HISTOGRAM, CONFUSION)
BY_NAME = {k.name: k for k in KINDS}
TAGGED = {k.name: k for k in KINDS if isinstance(k, Tagged)}
# The kinds the UI cache keeps as offsets of their lines, by column: {"str": STRING, "list": LIST,
# "media": IMAGE}; the tagged kinds share one column, their records' "kind" telling them apart.
BY_OFFSETS_COLUMN = {k.column: k for k in KINDS if k.column != "value"}
# A value's JSON type tells its kind; a new kind's values are objects tagged with their "kind".
_BY_TYPE: dict[type, Kind] = {float: NUMBER, int: NUMBER, bool: BOOL, str: STRING, list: LIST}


def kind_of(v: Any) -> Kind | None:
    """The kind of a value as read back, or None if no kind accepts it."""
    k = _BY_TYPE.get(type(v))
    if k is None and type(v) is dict:
        k = TAGGED.get(v.get("kind"))  # type: ignore[arg-type]
    return k if k is not None and k.accepts(v) else None


def kind_by_type(v: Any) -> Kind:
    """A checked value's kind by its JSON type alone (a tagged object by its tag; anything else:
    number), for summaries."""
    if isinstance(v, dict):  # a record's value, or a reader's (_media.Image, ...)
        return TAGGED.get(v.get("kind"), NUMBER)  # type: ignore[arg-type]
    return _BY_TYPE.get(type(v), NUMBER)


def read_value(v: Any, artifacts: Any) -> Any:
    """A value as a reader gets it: a tagged one as its kind's type (``_media.Image``, ...), which
    finds its file in the run's ``artifacts`` folder."""
    if type(v) is dict:
        k = TAGGED.get(v.get("kind"))  # type: ignore[arg-type]
        if k is not None:
            return k.read(v, artifacts)
    return v


def unknown_kind(v: Any) -> str | None:
    """The name of a kind this amltrack does not know, when ``v`` is a value tagged with one
    (written by a newer amltrack); else None."""
    if type(v) is dict:
        kind = v.get("kind")
        if type(kind) is str and kind not in BY_NAME:
            return kind
    return None


def coerce(name: str, value: Any) -> Any:
    """Turn any accepted value that is not a plain float/int/str/bool into one, or raise."""
    t = type(value)
    if t is list or t is tuple:
        return LIST.coerce(name, value)
    if isinstance(value, _SCALAR_TYPES):  # subclasses: numpy.float64, IntEnum, str subclasses
        if isinstance(value, bool):
            return BOOL.coerce(name, value)
        if isinstance(value, str):
            return STRING.coerce(name, value)
        return NUMBER.coerce(name, value)
    tolist = getattr(value, "tolist", None)
    ndim = getattr(value, "ndim", None)
    if tolist is not None and ndim is not None:
        if ndim == 0:
            return _scalar_item(name, value)
        if ndim != 1:
            raise InvalidMetricError(
                f"metric {quote_name(name)}: a {short_repr(ndim, 20)}-D {type(value).__name__} cannot be logged; "
                "log a 1-D array or flatten it"
            )
        dtype = str(getattr(value, "dtype", ""))
        if "bool" in dtype or "complex" in dtype:
            raise TypeError(f"metric {quote_name(name)}: an array of {dtype[:40]} is not an array of numbers")
        items = tolist()
        if not isinstance(items, list):
            raise TypeError(f"metric {quote_name(name)}: {type(value).__name__}.tolist() did not give a list")
        return LIST.coerce(name, items)
    if getattr(value, "item", None) is not None:
        return _scalar_item(name, value)
    raise TypeError(
        f"metric {quote_name(name)}: cannot log a {type(value).__name__}; log a number, str, bool, or a list "
        "or 1-D array of numbers"
    )


def _scalar_item(name: str, value: Any) -> Any:
    v = value.item()
    if type(v) is bool:
        return v
    if type(v) is str:
        return check_string(name, v)
    return check_number(name, v)
