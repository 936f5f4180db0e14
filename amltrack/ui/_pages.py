"""The UI's HTML pages: small shells that ``static/ui.js`` fills from the JSON API.

No user data is written into the HTML: a page carries only its kind, the URL prefix it is served
under and, on a run page, the run id (checked by the store's run id rules, and escaped anyway). An
error page for a browser (``error_page``) says what the URL asked for, escaped.
Everything else (metric names, tags, file names) reaches the page through JSON and is inserted as
text by ``ui.js``.
"""

from __future__ import annotations

import html
from collections.abc import MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from .._store import Store
from ._static import SCRIPTS, plotly_available, url

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# On every answer, error answers included: those of a crash are sent from outside every middleware.
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "content-security-policy": PAGE_CSP,
}

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · amltrack</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
{scripts}
</head>
<body data-page="{kind}" data-base="{base}"{extra}>
<header class="top">
  <a class="brand" href="{base}/">amltrack</a>
  <nav>
    <a href="{base}/"{cur_runs}>Runs</a>
    <a href="{base}/compare"{cur_compare}>Compare</a>
    <a href="{base}/assets"{cur_assets}>Assets</a>
  </nav>
</header>
<main id="app">{main}</main>
</body>
</html>
"""


def base_path(request: Request) -> str:
    """The prefix the app is mounted under ("" at the root, "/ui" when mounted there)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def route_path(scope: MutableMapping[str, Any]) -> str:
    """The request path below the mount point."""
    path = scope.get("path", "")
    root = str(scope.get("root_path", "")).rstrip("/")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def render(
    request: Request,
    kind: str,
    title: str,
    *,
    charts: bool = False,
    data: dict[str, str] | None = None,
    main: str = '<p class="loading">Loading…</p>',
    status_code: int = 200,
) -> HTMLResponse:
    base = html.escape(base_path(request), quote=True)
    raw_base = base_path(request)
    scripts = []
    data = dict(data or {})
    if plotly_available():
        data["plotly"] = url(raw_base, "plotly.min.js")
        if charts:
            scripts.append(f'<script src="{html.escape(data["plotly"], quote=True)}" defer></script>')
    for name in SCRIPTS:  # every page loads every page's script: links between pages do not reload
        scripts.append(f'<script src="{html.escape(url(raw_base, name), quote=True)}" defer></script>')
    extra = "".join(f' data-{k}="{html.escape(v, quote=True)}"' for k, v in data.items())
    current = {f"cur_{k}": "" for k in ("runs", "compare", "assets")}
    nav = {"runs": "runs", "run": "runs", "compare": "compare", "assets": "assets"}.get(kind)
    if nav:
        current[f"cur_{nav}"] = ' aria-current="page"'
    page = _TEMPLATE.format(
        title=html.escape(title),
        base=base,
        css=html.escape(url(raw_base, "ui.css"), quote=True),
        scripts="\n".join(scripts),
        kind=kind,
        extra=extra,
        main=main,
        **current,
    )
    return HTMLResponse(
        page,
        status_code=status_code,
        headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
    )


def wants_html(request: Request) -> bool:
    """Whether an error should be a page: a browser's navigation names ``text/html`` in ``Accept``.

    API routes answer JSON whatever they are asked, and so does every request that does not ask
    for HTML (curl, httpx and ``fetch()`` send ``*/*``).
    """
    if route_path(request.scope).startswith("/api/"):
        return False
    return "text/html" in request.headers.get("accept", "").lower()


def error_page(request: Request, status_code: int, title: str, text: str) -> HTMLResponse:
    """An error as a page for a person: what was not found, in plain words, and the way back.

    ``text`` may hold what the URL said (a run ref, a path): it is escaped like everything else here.
    The security headers are set here too, for a crash is answered from outside the UI's guard.
    """
    base = html.escape(base_path(request), quote=True)
    main = (
        f'<section class="error-page"><h1>{html.escape(title)}</h1>'
        f'<p class="error">{html.escape(text)}</p>'
        f'<p><a class="back" href="{base}/">Back to the runs list</a></p></section>'
    )
    response = render(request, "error", title, main=main, status_code=status_code)
    response.headers.update({**SECURITY_HEADERS, "Cache-Control": "no-store"})
    return response


class Pages:
    def __init__(self, store: Store) -> None:
        self.store = store

    def runs(self, request: Request) -> HTMLResponse:
        return render(request, "runs", "Runs")

    def run(self, request: Request) -> HTMLResponse:
        run = self.store.run(request.path_params["ref"])  # a missing run: the error handlers' page
        return render(request, "run", f"Run {run.id}", charts=True, data={"run": run.id})

    def compare(self, request: Request) -> HTMLResponse:
        return render(request, "compare", "Compare runs", charts=True)

    def assets(self, request: Request) -> HTMLResponse:
        return render(request, "assets", "Assets")
