"""The HTTP layer that ``amltrack server`` and ``amltrack ui`` share: one app factory, one error
shape, one guard (Host check, auth, security headers) and one way to serve an app.

Modules: ``_errors`` the error shape and its one registry of codes, ``_guard`` the Host check and
the middleware that runs the auth hook and adds the security headers, ``_app`` the app factory,
``_serve`` the uvicorn process on a listening socket. ``amltrack.server`` adds the /v1 routes,
tokens, the body limit and the cross-site check; ``amltrack.ui`` adds the pages and the /api
routes. Neither imports the other's private names.
"""
