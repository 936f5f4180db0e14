"""The UI's static files: its own ``ui.js`` (with ``runs.js`` and ``compare.js``) and ``ui.css``, and plotly.js from the installed ``plotly`` wheel.

The chart library is never copied into this repository: ``plotly.min.js`` is read from the
``plotly`` package that ``pip install 'amltrack[ui]'`` installs, found without importing it.
Each file is read once, gzipped once (fast level 1: 0.1 s for plotly.js, 1.7 of its 4.8 MB), and answered with an ETag so a browser revalidates cheaply.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

HERE = Path(__file__).resolve().parent / "static"
JS = "text/javascript; charset=utf-8"
OWN = {
    "ui.js": JS,
    "media.js": JS,  # the rich kinds' cards, which ui.js asks for
    "runs.js": JS,
    "compare.js": JS,
    "ui.css": "text/css; charset=utf-8",
}
# The pages' scripts in the order they run (deferred scripts run in order): media.js, runs.js and
# compare.js register themselves for ui.js, which draws the page once it has run.
SCRIPTS = ("media.js", "runs.js", "compare.js", "ui.js")
PLOTLY = "plotly.min.js"


def plotly_path() -> Path | None:
    """``plotly/package_data/plotly.min.js`` of the installed plotly package, or None."""
    try:
        spec = importlib.util.find_spec("plotly")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "package_data" / PLOTLY
        if path.is_file():
            return path
    return None


def plotly_available() -> bool:
    return plotly_path() is not None


@functools.lru_cache(maxsize=8)
def _load(name: str) -> tuple[bytes, bytes, str, str] | None:
    if name in OWN:
        path: Path | None = HERE / name
        media = OWN[name]
    elif name == PLOTLY:
        path = plotly_path()
        media = "text/javascript; charset=utf-8"
    else:
        return None
    if path is None:
        return None
    data = path.read_bytes()
    return data, gzip.compress(data, 1), hashlib.sha256(data).hexdigest()[:24], media


def url(base: str, name: str) -> str:
    """The file's URL with its content digest: a browser keeps it until the file changes."""
    found = _load(name)
    return f"{base}/static/{name}" + (f"?v={found[2]}" if found else "")


def static(request: Request) -> Response:
    name = request.path_params["name"]
    found = _load(name)
    if found is None:
        if name == PLOTLY:
            body = b"/* plotly is not installed: pip install 'amltrack[ui]' */\n"
            return Response(body, status_code=404, media_type="text/javascript")
        return Response(b"not found\n", status_code=404, media_type="text/plain")
    data, packed, digest, media = found
    etag = f'"{digest}"'
    fresh = request.query_params.get("v") == digest
    cache = "public, max-age=31536000, immutable" if fresh else "no-cache"
    headers = {"ETag": etag, "Cache-Control": cache, "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type=media, headers=headers)
    return Response(data, media_type=media, headers=headers)
