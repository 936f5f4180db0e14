"""How the server answers each kind of failure, in the one error shape (``amltrack._web._errors``).

Every error response, whatever raised it (a route, the auth check, the body limit, FastAPI's own
validation, an unknown URL), has the body ``{"error": {"code": ..., "message": ..., ...}}``;
``tests/test_server.py`` pins this. What is the server's own here: the security headers of an
API whose answers are data, and messages that point at /openapi.json.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from .._errors import AmltrackError
from .._web._errors import ApiError, error_response

log = logging.getLogger("amltrack.server")


class ServerConfigError(AmltrackError, ValueError):
    """The server cannot start as configured; the message says what to change."""


# On every answer of the API, errors included (a 500 is sent from outside every middleware): its
# answers are data, never a page to render, frame or sniff.
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "cross-origin-resource-policy": "same-origin",
}


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 401: "unauthorized"}


async def on_api_error(request: Request, e: Exception) -> Response:
    assert isinstance(e, ApiError)
    return error_response(e, SECURITY_HEADERS)


async def on_http_error(request: Request, e: Exception) -> Response:
    assert isinstance(e, StarletteHTTPException)
    code = _HTTP_CODES.get(e.status_code, "invalid_request")
    message = {
        "not_found": f"no such URL: {request.url.path}; the API is described at /openapi.json",
        "method_not_allowed": f"{request.method} is not allowed on {request.url.path}; see /openapi.json",
    }.get(code, str(e.detail))
    return error_response(
        ApiError(e.status_code, code, message, headers=getattr(e, "headers", None)), SECURITY_HEADERS
    )


async def on_validation_error(request: Request, e: Exception) -> Response:
    assert isinstance(e, RequestValidationError)
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg')}")
    return error_response(
        ApiError(422, "invalid_request", f"invalid request ({'; '.join(parts)}); see /openapi.json"),
        SECURITY_HEADERS,
    )


async def on_crash(request: Request, e: Exception) -> Response:
    return error_response(
        ApiError(
            500,
            "internal_error",
            f"the server failed on {request.method} {request.url.path}: {type(e).__name__}; see the server's log",
        ),
        SECURITY_HEADERS,
    )


async def on_disconnect(request: Request, e: Exception) -> Response:
    # A sync killed or cut off mid-request: routes read the whole body before they write, so
    # nothing was written, and the client's next push resumes from the committed lengths. Not an
    # error of the server's, so not a traceback in its log; the answer goes nowhere.
    log.info(
        "%s %s: the client went away before sending the whole body; nothing was written",
        request.method,
        request.url.path,
    )
    return error_response(ApiError(400, "invalid_request", "the request body ended early"), SECURITY_HEADERS)


HANDLERS: dict[Any, Any] = {
    ApiError: on_api_error,
    ClientDisconnect: on_disconnect,
    StarletteHTTPException: on_http_error,
    RequestValidationError: on_validation_error,
    Exception: on_crash,
}
