"""The UI as an ASGI app: pages, the JSON API, static files, and the guard in front of them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import AmltrackError
from .._store import Store
from . import _api
from ._api import Api, ApiError, error_response
from ._auth import AuthHook
from ._pages import SECURITY_HEADERS, Pages, route_path
from ._static import static

# Reachable without the auth hook: code and styles (no data), and the liveness check.
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = ("/api/health",)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def adding_headers(send: Send, added: dict[str, str]) -> Send:
    """``send`` that adds ``added`` to the response's headers, except those the response sets itself."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for k, v in added.items():
                if k not in headers:
                    headers[k] = v
        await send(message)

    return send_with_headers


class HostCheck:
    """Answers 400 ``invalid_host`` to a request whose Host header is not one of ``allowed_hosts``.

    A server on loopback is reachable from any web page the browser opens: a page at
    ``attacker.example`` whose DNS name is then rebound to 127.0.0.1 reads it with the browser's
    same-origin blessing, but its requests carry ``Host: attacker.example``. The address the
    connection came in on is always allowed too: an IP literal cannot be rebound.

        app.add_middleware(HostCheck, allowed_hosts=LOOPBACK_NAMES)   # a whole app
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts}

    def allows(self, scope: Scope) -> bool:
        host = _hostname(Headers(scope=scope).get("host", "")).lower()
        server = scope.get("server") or ("",)
        return host in self.allowed or (bool(host) and host == str(server[0]).lower())

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        names = ", ".join(sorted(self.allowed))
        response = error_response(
            400, "invalid_host", f"this server answers only to {names}; open it by that address"
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allows(scope):
            await self.refuse(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Guard:
    """Checks the Host header (``HostCheck``), runs the auth hook, and adds the security headers."""

    def __init__(self, app: ASGIApp, *, auth: AuthHook | None, allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.auth = auth
        self.hosts = None if allowed_hosts is None else HostCheck(app, allowed_hosts=allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        send_with_headers = adding_headers(send, SECURITY_HEADERS)
        if self.hosts is not None and not self.hosts.allows(scope):
            await self.hosts.refuse(scope, receive, send_with_headers)
            return
        if self.auth is not None:
            route = route_path(scope)
            if route not in PUBLIC_PATHS and not route.startswith(PUBLIC_PREFIXES):
                denied = await self.auth(Request(scope, receive))
                if denied is not None:
                    await denied(scope, receive, send_with_headers)
                    return
        await self.app(scope, receive, send_with_headers)


def create_app(
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
        Route("/api/runs/{ref}/poll", api.poll),
        Route("/api/runs/{ref}/artifacts/{path:path}", api.artifact),
        Route("/api/assets", api.assets),
        Route("/api/assets/{name}/{version}/files/{path:path}", api.asset_file),
    ]
    handlers: dict[Any, Any] = {
        ApiError: _api.on_api_error,
        AmltrackError: _api.on_amltrack_error,
        HTTPException: _api.on_http_error,
        Exception: _api.on_internal_error,
    }
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        middleware=[Middleware(Guard, auth=auth, allowed_hosts=allowed_hosts)],
    )
    app.state.store = st
    app.state.api = api
    return app
