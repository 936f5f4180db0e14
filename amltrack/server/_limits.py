"""A request body limit, enforced before a route reads the body."""

from __future__ import annotations

from typing import Any

from .._web._errors import ApiError, error_response
from ._errors import SECURITY_HEADERS

DEFAULT_MAX_BODY = 16 * 1024 * 1024


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Pure ASGI middleware: 413 in the error shape when a body is over ``max_body`` bytes.

    A declared Content-Length over the limit is refused before a byte is read; a body without
    one (chunked) is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: Any, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    def _error(self, size: int | None) -> ApiError:
        got = f"of {size} bytes " if size is not None else ""
        return ApiError(
            413,
            "body_too_large",
            f"the request body {got}is over this server's limit of {self.max_body} bytes; "
            "send it in smaller chunks (GET /v1/health gives the limit)",
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
        if declared is not None and (declared < 0 or declared > self.max_body):
            await error_response(self._error(declared if declared >= 0 else None), SECURITY_HEADERS)(
                scope, receive, send
            )
            return
        received = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await error_response(self._error(None), SECURITY_HEADERS)(scope, receive, send)
