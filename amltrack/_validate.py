"""Checks of metric names, steps and values, and of run labels, tags and params: each turns what a
caller passed into what the writer stores, or raises an error that names the metric."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _kinds
from ._errors import InvalidMetricError, short_repr

# A value's checks belong to its kind (amltrack/_kinds.py); the Logger calls them by these names,
# and the hot path of log() inlines the number check with the same bounds.
MAX_NAME_CHARS = _kinds.MAX_NAME_CHARS
MAX_STRING_CHARS = _kinds.MAX_STRING_CHARS
_INT_MIN, _INT_MAX = _kinds._INT_MIN, _kinds._INT_MAX
_quote_name = _kinds.quote_name
_check_number = _kinds.check_number
_check_string = _kinds.check_string
_coerce = _kinds.coerce

_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))
_SCALAR_TYPES = (bool, int, float, str)


# ----------------------------------------------------------------- validation
# An error message shows a caller's value through short_repr(), cut to about 100 characters and
# built from its first items only; a name is shown whole up to the limit on names.


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
    assert isinstance(step, int)
    if step < 0 or step > _INT_MAX:
        raise InvalidMetricError(
            f"step {short_repr(step)} of metric {_quote_name(name)} is out of range; steps are 0 .. 2**63-1"
        )
    return step


def _row_value(name: str, value: Any) -> Any:
    """A ``log_metrics()`` value as a plain float, int or bool, or raise naming the metric."""
    if isinstance(value, (str, bytes, list, tuple, Mapping)) or getattr(value, "ndim", False):
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
