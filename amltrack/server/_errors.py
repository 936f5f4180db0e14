"""The server's one error shape, and the handlers that put every failure into it.

Every error response, whatever raised it (a route, the auth check, the body limit, FastAPI's own
validation, an unknown URL), has the body::

    {"error": {"code": "offset_mismatch", "message": "...", ...extra fields}}

``code`` is one of ERROR_CODES; ``message`` is one sentence for a person; the only extra field is
``committed`` (on ``offset_mismatch``, ``incomplete``), the server's current length for the client
to resume from. ``tests/test_server.py`` pins this.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger("amltrack.server")

ERROR_CODES = {
    "unauthorized": "401: no token, or a token the server does not know",
    "forbidden": "403: a read token on a route that writes",
    "cross_site": "403: a write that a web page could have sent cross-site (foreign Origin or Sec-Fetch-Site, "
    "or neither X-Amltrack-Client nor a non-form Content-Type)",
    "not_found": "404: no such URL",
    "run_not_found": "404: no run with that id on the server (create it with PUT /v1/runs/{run})",
    "blob_not_found": "404: no upload of that content for the run or asset",
    "asset_not_found": "404: no asset of that name, or no such version of it",
    "method_not_allowed": "405: the URL does not take that method",
    "invalid_request": "400/422: a malformed query parameter or body",
    "invalid_host": "400: a Host header that is not loopback, on a server without tokens (DNS rebinding)",
    "invalid_run_id": "400: a run id that is not valid",
    "invalid_path": "400: an artifact path that is absolute, has '..', NUL, ...",
    "invalid_asset": "400: an asset name or NAME:VERSION that is not valid",
    "invalid_json": "400: run.json, summary.json or asset.json that is not a JSON object of the documented "
    "shape, or names another run or asset",
    "offset_mismatch": "409: an append or upload whose offset is not the committed length",
    "incomplete": "409: finalising before the metrics and manifest are complete",
    "blob_missing": "409: placing an artifact or asset whose content was not uploaded completely",
    "path_conflict": "409: an artifact path that collides with a directory or a file",
    "body_too_large": "413: a request body over the server's limit",
    "hash_mismatch": "422: uploaded content whose SHA-256 is not the one announced",
    "storage_error": "500/507: the server could not write its store",
    "internal_error": "500: a bug in the server",
}


class ApiError(Exception):
    """An error response: HTTP status, a code from ERROR_CODES, a message, and extra fields."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


# On every answer of the API, errors included (a 500 is sent from outside every middleware): its
# answers are data, never a page to render, frame or sniff.
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "cross-origin-resource-policy": "same-origin",
}


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers={**SECURITY_HEADERS, **(e.headers or {})})


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 401: "unauthorized"}


def install(app: FastAPI) -> None:
    async def on_api_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, ApiError)
        return error_response(e)

    async def on_http_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        code = _HTTP_CODES.get(e.status_code, "invalid_request")
        message = {
            "not_found": f"no such URL: {request.url.path}; the API is described at /openapi.json",
            "method_not_allowed": f"{request.method} is not allowed on {request.url.path}; see /openapi.json",
        }.get(code, str(e.detail))
        return error_response(ApiError(e.status_code, code, message, headers=getattr(e, "headers", None)))

    async def on_validation_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        parts = []
        for err in e.errors()[:3]:
            where = ".".join(str(x) for x in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return error_response(
            ApiError(422, "invalid_request", f"invalid request ({'; '.join(parts)}); see /openapi.json")
        )

    async def on_crash(request: Request, e: Exception) -> JSONResponse:
        return error_response(
            ApiError(
                500,
                "internal_error",
                f"the server failed on {request.method} {request.url.path}: "
                f"{type(e).__name__}; see the server's log",
            )
        )

    async def on_disconnect(request: Request, e: Exception) -> JSONResponse:
        # A sync killed or cut off mid-request: routes read the whole body before they write, so
        # nothing was written, and the client's next push resumes from the committed lengths. Not an
        # error of the server's, so not a traceback in its log; the answer goes nowhere.
        log.info(
            "%s %s: the client went away before sending the whole body; nothing was written",
            request.method,
            request.url.path,
        )
        return error_response(ApiError(400, "invalid_request", "the request body ended early"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_crash)
