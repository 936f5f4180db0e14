"""The one app factory: an app with the error handlers, the guard and the middleware in one order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import Scope

from ._guard import AuthHook, Guard

App = TypeVar("App", bound=Starlette)


def create_app(
    cls: type[App],
    *,
    headers: Mapping[str, str],
    handlers: Mapping[Any, Callable[..., Any]],
    routes: Sequence[BaseRoute] = (),
    allowed_hosts: Iterable[str] | None = None,
    auth: AuthHook | None = None,
    public: Callable[[Scope], bool] = lambda scope: False,
    inner: Sequence[Middleware] = (),
    **options: Any,
) -> App:
    """An app of class ``cls`` (Starlette for the UI; FastAPI, a Starlette, for the server, which
    describes itself in OpenAPI) whose every answer goes through the ``Guard`` first, then the
    ``inner`` middleware in order, and whose errors the ``handlers`` turn into the one shape.

        app = create_app(Starlette, headers=SECURITY_HEADERS, handlers={ApiError: on_api_error},
                         routes=[Route("/api/health", health)], allowed_hosts=LOOPBACK_NAMES)
    """
    guard = Middleware(Guard, headers=headers, allowed_hosts=allowed_hosts, auth=auth, public=public)
    return cls(routes=list(routes), exception_handlers=dict(handlers), middleware=[guard, *inner], **options)
