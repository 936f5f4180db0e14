"""amltrack's web UI: runs, charts, artifacts and assets of a store, in a browser.

    amltrack ui --store .amltrack            # http://127.0.0.1:8766/

Needs the ``ui`` extra (starlette and uvicorn through fastapi, numpy, and plotly for plotly.js).
``docs/ui.md`` describes the pages, the JSON API, downsampling and security. Modules: ``_app`` the
ASGI app, ``_api`` the JSON routes, ``_cache`` the per-run series cache, ``_series``
downsampling, ``_pages`` the HTML shells, ``_static`` ui.js, ui.css and plotly.js, ``_auth`` the
token hook for a server that mounts the UI, ``_serve`` the process. The app factory, the guard
(Host check, auth hook, security headers), the error shape and the serving are ``amltrack._web``'s,
shared with the server.
"""

from .._web._guard import AuthHook
from ._app import ui_app as create_app
from ._auth import token_auth
from ._serve import DEFAULT_PORT, UiConfigError
from ._serve import serve_ui as serve

__all__ = ["DEFAULT_PORT", "AuthHook", "UiConfigError", "create_app", "serve", "token_auth"]
