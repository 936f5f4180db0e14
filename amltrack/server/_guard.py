"""Refuses writes that a web page could have sent cross-site.

A browser sends a "simple" request (a POST with a form or text/plain body, or none) to any origin
without asking first, and a server on 127.0.0.1 with no tokens would act on it: any page the user
visits could append to their runs. A request that changes the store is therefore refused unless

- it names no foreign origin: no ``Origin`` header other than the server's own, and no
  ``Sec-Fetch-Site`` other than ``same-origin`` or ``none`` (browsers send these, scripts don't), and
- it carries what no page can send cross-site without a CORS preflight, which this server never
  grants: the ``X-Amltrack-Client`` header that ``amltrack sync`` sends, or a ``Content-Type``
  other than the three a form can send.

Reads change nothing and are left to the auth check and, without tokens, the Host check.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import Headers

from .._web._errors import ApiError

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CLIENT_HEADER = "x-amltrack-client"
# The content types an HTML form (so a simple request) can send; anything else needs a preflight.
SIMPLE_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
_SAME_SITE_OK = frozenset({"same-origin", "none"})


def _same_origin(origin: str, headers: Headers) -> bool:
    # Host and port, not the scheme: behind a proxy that ends TLS the server sees http for https.
    netloc = origin.partition("://")[2]
    return bool(netloc) and netloc.lower() == headers.get("host", "").lower()


def cross_site_problem(scope: MutableMapping[str, Any]) -> str | None:
    """Why this request could have come from another site's page, or None for one that cannot."""
    if scope.get("method", "GET").upper() not in WRITE_METHODS:
        return None
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, headers):
        return f"it comes from the page at {origin[:100]!r}"
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAME_SITE_OK:
        return f"the browser says it is {fetch_site[:40]!r}"
    if headers.get(CLIENT_HEADER):
        return None
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and media not in SIMPLE_TYPES:
        return None
    return f"it has neither an X-Amltrack-Client header nor a Content-Type other than {media or 'none'!r}"


def check_same_site(scope: MutableMapping[str, Any]) -> None:
    """Raise 403 ``cross_site`` for a write that a web page could have sent (the write scope's check)."""
    problem = cross_site_problem(scope)
    if problem is not None:
        raise ApiError(
            403,
            "cross_site",
            f"refused {scope['method']} {scope['path']}: {problem}, so a web page could have sent it; "
            "amltrack sync sends X-Amltrack-Client (upgrade an older amltrack)",
        )
