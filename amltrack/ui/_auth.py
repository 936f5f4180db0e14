"""Letting only token holders see the UI, for a server that mounts it.

``create_app(store, auth=hook)`` calls ``await hook(request)`` before every request except the static
files and ``/api/health``: ``None`` lets the request through, a ``Response`` is sent instead.
``token_auth`` makes such a hook from a function that says whether a token may read::

    ui = create_app(store, auth=token_auth(lambda token: tokens.scope_of(token) is not None))
    app.mount("/ui", ui)

A browser cannot send a bearer header when it follows a link, so a token also works as the
cookie that the login form (``POST <prefix>/login``) sets: HttpOnly, SameSite=Strict, scoped to the
UI's prefix, and Secure when the request came over https.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .._web._auth import bearer_token
from .._web._errors import ApiError, error_response
from .._web._guard import AuthHook
from ._api import ERROR_HEADERS, json_error
from ._pages import base_path, route_path

COOKIE = "amltrack_ui_token"
MAX_FORM = 4096

_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · amltrack</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{base}/static/ui.css"></head>
<body data-page="login"><main id="app" class="login">
<h1>amltrack</h1>
<p>This server needs a token with the read scope.</p>
{error}
<form method="post" action="{base}/login">
<input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
<button type="submit">Sign in</button>
</form></main></body></html>
"""


def login_page(request: Request, *, next_url: str, error: str = "", status_code: int = 401) -> HTMLResponse:
    base = html.escape(base_path(request), quote=True)
    err = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = _LOGIN.format(base=base, error=err, next=html.escape(next_url, quote=True))
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


def _safe_next(request: Request, target: str) -> str:
    """Only a path inside the UI: never another site (``//evil``), never a scheme."""
    base = base_path(request)
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/"


def token_auth(check: Callable[[str], bool], *, cookie: str = COOKIE) -> AuthHook:
    """An ``auth`` hook for ``create_app``: a bearer header or the login cookie, checked by ``check``."""

    async def hook(request: Request) -> Response | None:
        token = bearer_token(request.headers)
        if token is None:
            token = request.cookies.get(cookie)
        # In a thread: a check may ask a database (the team server's), which must not stall the
        # event loop; and its 503 is answered here, outside the app's error handlers.
        if token:
            try:
                known: bool = await run_in_threadpool(check, token)
            except ApiError as e:
                return error_response(e, ERROR_HEADERS)
            if known:
                return None
        route = route_path(request.scope)
        if route == "/login" and request.method == "POST":
            return await _login(request, check, cookie)
        if route.startswith("/api/"):
            return json_error(
                401,
                "unauthorized",
                "this UI needs a read token: send 'Authorization: Bearer TOKEN' or sign in",
            )
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return login_page(request, next_url=_safe_next(request, here))

    return hook


async def _login(request: Request, check: Callable[[str], bool], cookie: str) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return json_error(413, "invalid_request", "the sign-in form is too large")
    form = parse_qs(body.decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    next_url = _safe_next(request, (form.get("next") or [""])[0])
    known = False
    if token:
        try:
            known = await run_in_threadpool(check, token)
        except ApiError as e:
            return error_response(e, ERROR_HEADERS)
    if not known:
        return login_page(request, next_url=next_url, error="The server does not know this token.")
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        cookie,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=(base_path(request) or "") + "/",
    )
    return response
