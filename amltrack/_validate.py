"""Checks of metric names, steps and values, and of run labels, tags and params: each turns what a
caller passed into what the writer stores, or raises an error that names the metric."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._errors import InvalidMetricError, short_repr

MAX_NAME_CHARS = 255
MAX_STRING_CHARS = 1 << 20  # a string metric of 1 Mi characters at most: a line, not a file
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))
_SCALAR_TYPES = (bool, int, float, str)


# ----------------------------------------------------------------- validation
# An error message shows a caller's value through short_repr(), cut to about 100 characters and
# built from its first items only; a name is shown whole up to the limit on names.


def _quote_name(name: Any) -> str:
    """A metric name for an error message: its repr, of its first 40 characters when it is longer
    than a name may be; a name that is not a str as ``short_repr()`` shows it."""
    if type(name) is not str:
        return short_repr(name)
    return repr(name) if len(name) <= MAX_NAME_CHARS else f"{name[:40]!r}..."


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"metric name {_quote_name(name)} is a {type(name).__name__}; names are str")
    name = str(name)
    if not name:
        raise InvalidMetricError("metric name is empty; give a name such as 'loss'")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidMetricError(
            f"metric name {_quote_name(name)} is {len(name)} characters; the limit is {MAX_NAME_CHARS}"
        )
    if not _CONTROL.isdisjoint(name):
        raise InvalidMetricError(f"metric name {_quote_name(name)} contains a control character; remove it")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMetricError(
            f"metric name {_quote_name(name)} is not valid Unicode (a lone surrogate)"
        ) from None
    return name


def _check_step(name: str, step: object) -> int:
    if type(step) is not int:
        if isinstance(step, bool) or not hasattr(step, "__index__"):
            raise TypeError(
                f"step {short_repr(step)} of metric {_quote_name(name)} is a {type(step).__name__}; steps are int"
            )
        step = step.__index__()  # numpy and torch integers
    if step < 0 or step > _INT_MAX:
        raise InvalidMetricError(
            f"step {short_repr(step)} of metric {_quote_name(name)} is out of range; steps are 0 .. 2**63-1"
        )
    return step  # type: ignore[return-value]


def _check_number(name: str, v: Any, where: str = "") -> Any:
    t = type(v)
    if t is float:
        return v
    if t is int:
        if not _INT_MIN <= v <= _INT_MAX:
            raise InvalidMetricError(
                f"metric {_quote_name(name)}{where}: integer {short_repr(v)} does not fit in 64 bits; "
                "log it as a float"
            )
        return v
    if t is bool:
        raise TypeError(f"metric {_quote_name(name)}{where}: a list holds numbers, not bool {v!r}")
    if isinstance(v, float):
        return float(v)  # numpy.float64 and other float subclasses
    if isinstance(v, int):
        return _check_number(name, int(v), where)
    item = getattr(v, "item", None)
    if item is not None and getattr(v, "ndim", 0) == 0 and getattr(v, "size", 1) == 1:
        return _check_number(name, item(), where)
    raise TypeError(f"metric {_quote_name(name)}{where}: {type(v).__name__} {short_repr(v)} is not a number")


def _coerce(name: str, value: Any) -> Any:
    """Turn any accepted value that is not a plain float/int/str/bool into one, or raise."""
    t = type(value)
    if t is list or t is tuple:
        return [_check_number(name, v, f" element {i}") for i, v in enumerate(value)]
    if isinstance(value, _SCALAR_TYPES):  # subclasses: numpy.float64, IntEnum, str subclasses
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, str):
            return _check_string(name, str(value))
        return _check_number(name, value)
    tolist = getattr(value, "tolist", None)
    ndim = getattr(value, "ndim", None)
    if tolist is not None and ndim is not None:
        if ndim == 0:
            return _scalar_item(name, value)
        if ndim != 1:
            raise InvalidMetricError(
                f"metric {_quote_name(name)}: a {short_repr(ndim, 20)}-D {type(value).__name__} cannot be logged; "
                "log a 1-D array or flatten it"
            )
        dtype = str(getattr(value, "dtype", ""))
        if "bool" in dtype or "complex" in dtype:
            raise TypeError(
                f"metric {_quote_name(name)}: an array of {dtype[:40]} is not an array of numbers"
            )
        items = tolist()
        if not isinstance(items, list):
            raise TypeError(
                f"metric {_quote_name(name)}: {type(value).__name__}.tolist() did not give a list"
            )
        return [_check_number(name, v, f" element {i}") for i, v in enumerate(items)]
    if getattr(value, "item", None) is not None:
        return _scalar_item(name, value)
    raise TypeError(
        f"metric {_quote_name(name)}: cannot log a {type(value).__name__}; log a number, str, bool, or a list "
        "or 1-D array of numbers"
    )


def _scalar_item(name: str, value: Any) -> Any:
    v = value.item()
    if type(v) is bool:
        return v
    if type(v) is str:
        return _check_string(name, v)
    return _check_number(name, v)


def _row_value(name: str, value: Any) -> Any:
    """A ``log_metrics()`` value as a plain float, int or bool, or raise naming the metric."""
    if isinstance(value, (str, bytes, list, tuple, Mapping)) or getattr(value, "ndim", 0):
        raise TypeError(
            f"metric {_quote_name(name)}: log_metrics() takes numbers and bools, not {type(value).__name__} "
            f"{short_repr(value)}; log strings and lists with log({_quote_name(name)}, value)"
        )
    v = _coerce(name, value)
    if type(v) not in (float, int, bool):  # pragma: no cover - _coerce returns these for scalars
        raise TypeError(
            f"metric {_quote_name(name)}: log_metrics() takes numbers and bools, not {short_repr(v)}"
        )
    return v


def _check_string(name: str, value: str) -> str:
    if len(value) > MAX_STRING_CHARS:
        raise InvalidMetricError(
            f"string metric {_quote_name(name)} is {len(value)} characters; the limit is {MAX_STRING_CHARS}: "
            "upload long text as an artifact"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidMetricError(
                f"string metric {_quote_name(name)} is not valid Unicode (a lone surrogate)"
            ) from None
    return value


def _check_mapping(kind: str, m: Mapping[str, Any] | None) -> dict[str, Any]:
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise TypeError(f"{kind} must be a dict of str to str, number or bool, not {type(m).__name__}")
    out = {}
    for k, v in m.items():
        if not isinstance(k, str) or not k:
            raise TypeError(f"{kind} key {short_repr(k)} must be a non-empty str")
        if v is not None and not isinstance(v, _SCALAR_TYPES):
            item = getattr(v, "item", None)
            if item is None:
                raise TypeError(
                    f"{kind} {short_repr(k)} is a {type(v).__name__}; values are str, int, float, bool or None"
                )
            v = item()
        out[k] = v
    return out


def _check_label(kind: str, v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or not v or len(v) > MAX_NAME_CHARS or not _CONTROL.isdisjoint(v):
        raise InvalidMetricError(
            f"{kind} {short_repr(v)} must be a non-empty str of at most 255 printable characters"
        )
    return v
