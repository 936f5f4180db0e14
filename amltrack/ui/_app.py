"""The UI as an ASGI app: pages, the JSON API and static files, behind ``amltrack._web``'s guard."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from .._errors import AmltrackError
from .._store import Store
from .._web._app import create_app
from .._web._errors import ApiError
from .._web._guard import AuthHook
from . import _api
from ._api import Api
from ._pages import SECURITY_HEADERS, Pages, route_path
from ._static import static

# Reachable without the auth hook: code and styles (no data), and the liveness check.
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = ("/api/health",)


def _public(scope: Any) -> bool:
    route = route_path(scope)
    return route in PUBLIC_PATHS or route.startswith(PUBLIC_PREFIXES)


def ui_app(
    store: str | os.PathLike[str] | None = None,
    *,
    auth: AuthHook | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> Starlette:
    """The UI over ``store`` as an ASGI app, to serve alone or mount under a prefix.

    ``auth`` is awaited with each request (static files and /api/health excepted) and returns None
    to let it through or a Response to send instead; ``token_auth`` makes one. ``allowed_hosts``
    limits the Host header, against DNS rebinding of a UI on 127.0.0.1.

        app = create_app(".amltrack", allowed_hosts=["127.0.0.1", "localhost"])
        uvicorn.run(app, host="127.0.0.1", port=8766)

        server.mount("/ui", create_app(root, auth=token_auth(lambda t: tokens.scope_of(t) is not None)))
    """
    st = Store(store)
    api = Api(st, show_store=auth is None)
    pages = Pages(st)
    routes = [
        Route("/", pages.runs),
        Route("/runs/{ref}", pages.run),
        Route("/compare", pages.compare),
        Route("/assets", pages.assets),
        Route("/static/{name}", static),
        Route("/api/health", api.health),
        Route("/api/runs", api.runs),
        Route("/api/runs/{ref}", api.run),
        Route("/api/runs/{ref}/metrics", api.metrics),
        Route("/api/runs/{ref}/series", api.series),
        Route("/api/runs/{ref}/lists", api.lists),
        Route("/api/runs/{ref}/strings", api.strings),
        Route("/api/runs/{ref}/media", api.media),
        Route("/api/runs/{ref}/media/{path:path}", api.media_file),
        Route("/api/runs/{ref}/poll", api.poll),
        Route("/api/runs/{ref}/artifacts/{path:path}", api.artifact),
        Route("/api/runs/{ref}/preview/{path:path}", api.preview),
        Route("/api/runs/{ref}/images/{path:path}", api.image),
        Route("/api/assets", api.assets),
        Route("/api/assets/{name}/{version}/files/{path:path}", api.asset_file),
    ]
    handlers: dict[Any, Any] = {
        ApiError: _api.on_api_error,
        AmltrackError: _api.on_amltrack_error,
        HTTPException: _api.on_http_error,
        Exception: _api.on_internal_error,
    }
    app = create_app(
        Starlette,
        headers=SECURITY_HEADERS,
        handlers=handlers,
        routes=routes,
        allowed_hosts=allowed_hosts,
        auth=auth,
        public=_public,
    )
    app.state.store = st
    app.state.api = api
    app.state.warmer = api.warmer  # started by the serving process, not by tests' apps
    return app
