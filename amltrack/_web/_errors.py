"""The one error shape of every HTTP answer amltrack sends, and the one registry of its codes.

Every error response, from the server's /v1 API or the UI's /api (a route, the auth check, the
Host check, the body limit, a validation, an unknown URL, a crash), has the body::

    {"error": {"code": "offset_mismatch", "message": "...", ...extra fields}}

``code`` is one of ERROR_CODES; ``message`` is one sentence for a person; the only extra field is
``committed`` (on the server's ``offset_mismatch`` and ``incomplete``), the server's current length
for the client to resume from. ``tests/test_server.py`` and ``tests/test_ui.py`` pin this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

# The version of both JSON APIs: the server's /v1 (GET /v1/health "api") and the UI's /api
# (GET /api/health "ui"). They change together or not at all.
API_VERSION = 1

ERROR_CODES = {
    "unauthorized": "401: no token, or a token the server does not know",
    "forbidden": "403: a read token on a route that writes",
    "cross_site": "403: a write that a web page could have sent cross-site (foreign Origin or Sec-Fetch-Site, "
    "or neither X-Amltrack-Client nor a non-form Content-Type)",
    "not_found": "404: no such URL",
    "run_not_found": "404: no run with that id on the server (create it with PUT /v1/runs/{run})",
    "blob_not_found": "404: no upload of that content for the run or asset",
    "asset_not_found": "404: no asset of that name, or no such version of it",
    "artifact_not_found": "404 (UI): no stored artifact at that path in the run",
    "metric_not_found": "404 (UI): the run has no metric of that name (or no list metric, for /lists)",
    "method_not_allowed": "405: the URL does not take that method",
    "invalid_request": "400/422: a malformed query parameter or body",
    "invalid_query": "400: a filter expression or sort key that does not parse (docs/query.md); the message "
    "names the column",
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
    "store_error": "500 (UI): the store could not be read",
    "internal_error": "500: a bug in the server or the UI",
    "unavailable": "503: the team server cannot reach its database or object storage just now; retry after Retry-After",
}


class ApiError(Exception):
    """An error answer: HTTP status, a code from ERROR_CODES, a message, and extra fields.

    raise ApiError(409, "offset_mismatch", "metrics.jsonl has 10 committed bytes, not 4", committed=10)
    """

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


def error_response(e: ApiError, headers: Mapping[str, str]) -> Response:
    """``e`` in the one shape, with the app's security ``headers`` (an error may be answered from
    outside every middleware, so it carries them itself) and the error's own."""
    return Response(
        orjson.dumps(e.body()),
        status_code=e.status,
        media_type="application/json",
        headers={**headers, **(e.headers or {})},
    )
