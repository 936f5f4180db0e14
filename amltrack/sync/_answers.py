"""Checking a remote's JSON answers before a field of them is used.

A server that answers with the wrong shape (``200 {}`` from a proxy, a list, a size of -1) must fail
the run it was asked about with one line naming the remote and the route, never a KeyError or a
TypeError from deep in a push. Each remote's client reads the fields it uses through these helpers,
at the one place where it receives the answer.

    at = Route(url, "POST /v1/runs/RID/append/metrics.jsonl")
    size = count(obj(answer, at), "size", at)
"""

from __future__ import annotations

from typing import Any, Literal, overload

from .._errors import short_repr
from ._errors import SyncError


class BadAnswerError(SyncError, ValueError):
    """A remote answered a request with JSON that lacks a field the client uses, or holds one of the
    wrong type. The run it was about fails; the next one is tried."""

    def __init__(self, url: str, route: str, what: str) -> None:
        self.url = url
        self.route = route
        self.what = what
        super().__init__(
            f"{url} answered {route} with {what}, not what the server should answer; "
            "check that the URL is the server itself and not a proxy or another service"
        )


class Route:
    """Where an answer came from: the remote's URL and the request (``METHOD /path``)."""

    __slots__ = ("url", "route")

    def __init__(self, url: str, route: str) -> None:
        self.url = url
        self.route = route

    def bad(self, what: str) -> BadAnswerError:
        return BadAnswerError(self.url, self.route, what)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def obj(value: Any, at: Route, name: str = "") -> dict[str, Any]:
    """``value`` if it is a JSON object, else BadAnswerError (``name`` is the field it came from)."""
    if type(value) is not dict:
        where = f"{name!r} as " if name else ""
        raise at.bad(f"{where}{_kind(value)}, not an object")
    return value


def _name(key: str, within: str) -> str:
    return f"{within}.{key}" if within else key


def field(d: dict[str, Any], key: str, at: Route, within: str = "") -> Any:
    """``d[key]``; BadAnswerError if it is missing (``within`` names ``d`` in the message)."""
    if key not in d:
        raise at.bad(f"no {_name(key, within)!r} in its object")
    return d[key]


def count(d: dict[str, Any], key: str, at: Route, within: str = "") -> int:
    """``d[key]`` as a whole number >= 0 (a size, an offset); a bool or a float is not one."""
    v = field(d, key, at, within)
    if type(v) is not int or v < 0:
        raise at.bad(f"{_name(key, within)!r} = {short_repr(v, 60)}, not a whole number >= 0")
    return v


def flag(d: dict[str, Any], key: str, at: Route, within: str = "") -> bool:
    """``d[key]`` as true or false."""
    v = field(d, key, at, within)
    if type(v) is not bool:
        raise at.bad(f"{_name(key, within)!r} = {short_repr(v, 60)}, not true or false")
    return v


@overload
def text(
    d: dict[str, Any], key: str, at: Route, within: str = "", *, optional: Literal[False] = False
) -> str: ...
@overload
def text(d: dict[str, Any], key: str, at: Route, within: str = "", *, optional: bool) -> str | None: ...
def text(d: dict[str, Any], key: str, at: Route, within: str = "", *, optional: bool = False) -> str | None:
    """``d[key]`` as a string; with ``optional``, also None when it is null or missing."""
    v = d.get(key) if optional else field(d, key, at, within)
    if v is None and optional:
        return None
    if type(v) is not str:
        raise at.bad(f"{_name(key, within)!r} = {short_repr(v, 60)}, not a string")
    return v


def table(d: dict[str, Any], key: str, at: Route) -> dict[str, Any]:
    """``d[key]`` as an object (a table by name or path)."""
    return obj(field(d, key, at), at, key)


def objects(d: dict[str, Any], key: str, at: Route, *, optional: bool = False) -> list[dict[str, Any]]:
    """``d[key]`` as a list of objects; with ``optional``, an empty list when it is null or missing."""
    v = d.get(key) if optional else field(d, key, at)
    if v is None and optional:
        return []
    if type(v) is not list:
        raise at.bad(f"{key!r} as {_kind(v)}, not a list")
    return [obj(x, at, f"an item of {key}") for x in v]
