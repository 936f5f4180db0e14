"""amltrack's history server: receives runs pushed by ``amltrack sync`` into an ordinary store.

    amltrack server --store /srv/amltrack --tokens-file /etc/amltrack/tokens --host 0.0.0.0

Needs the ``server`` extra (fastapi, uvicorn). ``docs/sync.md`` describes the protocol. Modules:
``_app`` the routes, ``_storage`` the writes into the store, ``_auth`` tokens, ``_limits`` the body
limit, ``_errors`` the one error shape, ``_serve`` the process.
"""

from ._app import OPENAPI_URL, create_app
from ._auth import Tokens, entry_for, new_token
from ._errors import ERROR_CODES
from ._limits import DEFAULT_MAX_BODY
from ._serve import ServerConfigError, load_tokens, serve

__all__ = [
    "DEFAULT_MAX_BODY",
    "ERROR_CODES",
    "OPENAPI_URL",
    "ServerConfigError",
    "Tokens",
    "create_app",
    "entry_for",
    "load_tokens",
    "new_token",
    "serve",
]
