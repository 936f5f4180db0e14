"""Torture tests: a quick subset runs in CI; AMLTRACK_TORTURE=1 runs the full sizes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

FULL = os.environ.get("AMLTRACK_TORTURE", "") not in ("", "0")


def size(quick: int, full: int) -> int:
    return full if FULL else quick


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the history server's app has, the mounted UI's too."""
    from starlette.routing import Mount

    from amltrack.server import Tokens, create_app

    with tempfile.TemporaryDirectory() as d:  # the app is only looked at, never served
        app = create_app(Path(d) / "store", tokens=Tokens.parse("write:" + "t" * 32))

    def walk(routes, prefix: str = "") -> Iterator[tuple[str, str]]:
        for r in routes:
            if isinstance(r, Mount):
                yield from walk(r.routes, prefix + r.path)
            else:
                for method in sorted(getattr(r, "methods", None) or ()):
                    yield method, prefix + r.path

    return sorted(set(walk(app.routes)))
