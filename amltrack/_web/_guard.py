"""What stands in front of every app: the Host check against DNS rebinding, the auth hook, and the
security headers on every answer.

A server on loopback is reachable from any web page the browser opens: a page at
``attacker.example`` whose DNS name is then rebound to 127.0.0.1 reads it with the browser's
same-origin blessing, but its requests carry ``Host: attacker.example``. Without tokens, both
``amltrack ui`` and ``amltrack server`` therefore answer only to loopback host names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import ApiError, error_response

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

# Awaited with a request: None lets it through, a Response is sent instead.
AuthHook = Callable[[Request], Awaitable[Response | None]]


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def adding_headers(send: Send, added: Mapping[str, str]) -> Send:
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
    """Says whether a request's Host header is one of ``allowed_hosts``; the address the connection
    came in on is always allowed too (an IP literal cannot be rebound)."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self.allowed = {h.lower() for h in allowed_hosts}

    def allows(self, scope: Scope) -> bool:
        host = _hostname(Headers(scope=scope).get("host", "")).lower()
        server = scope.get("server") or ("",)
        return host in self.allowed or (bool(host) and host == str(server[0]).lower())

    def refusal(self, headers: Mapping[str, str]) -> Response:
        names = ", ".join(sorted(self.allowed))
        return error_response(
            ApiError(400, "invalid_host", f"this server answers only to {names}; open it by that address"),
            {"Cache-Control": "no-store", **headers},
        )


class Guard:
    """Pure ASGI middleware: the Host check (if ``allowed_hosts``), the auth hook (if ``auth``, on every
    path that ``public`` does not let through), and ``headers`` on every answer that does not set its own.

        app.add_middleware(Guard, headers=SECURITY_HEADERS, allowed_hosts=LOOPBACK_NAMES)
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: Mapping[str, str],
        allowed_hosts: Iterable[str] | None = None,
        auth: AuthHook | None = None,
        public: Callable[[Scope], bool] = lambda scope: False,
    ) -> None:
        self.app = app
        self.headers = headers
        self.hosts = None if allowed_hosts is None else HostCheck(allowed_hosts)
        self.auth = auth
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send_with_headers = adding_headers(send, self.headers)
        if self.hosts is not None and not self.hosts.allows(scope):
            await self.hosts.refusal(self.headers)(scope, receive, send_with_headers)
            return
        if self.auth is not None and not self.public(scope):
            denied = await self.auth(Request(scope, receive))
            if denied is not None:
                await denied(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)
