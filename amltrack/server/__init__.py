"""amltrack's history server: receives runs pushed by ``amltrack sync`` into an ordinary store.

    amltrack server --store /srv/amltrack --tokens-file /etc/amltrack/tokens --host 0.0.0.0

Needs the ``server`` extra (fastapi, uvicorn). ``docs/sync.md`` describes the protocol. Modules:
``_app`` the routes, ``_storage`` and ``_assets`` the writes into the store, ``_faults`` the seam a
test fails writes through, ``_guard`` the cross-site check of writes, ``_limits`` the body limit,
``_errors`` the server's answers to failures, ``_serve`` the process, ``_database`` the team server's
PostgreSQL pool and schema (the ``team`` extra), ``_tokens`` the tokens kept there, ``_team`` the
runs kept there with their bytes in a bucket (``_objects``), for replicas, ``_migrate`` the copy of an
embedded server's store into them, ``_gc`` the removal of what no row names. The app factory, the error
shape, the tokens, the Host check and the serving are ``amltrack._web``'s, shared with the UI.
"""

from .._web._auth import TokenCheck, Tokens, entry_for, new_token
from .._web._errors import ERROR_CODES
from ._app import OPENAPI_URL
from ._app import server_app as create_app
from ._database import SCHEMA_VERSION, Database, DatabaseError, SchemaTooNewError
from ._errors import ServerConfigError
from ._gc import GcReport, collect_garbage
from ._limits import DEFAULT_MAX_BODY
from ._migrate import MigrateProgress, MigrationError, MigrationReport, NotAServerStoreError, migrate_store
from ._objects import Objects
from ._serve import check_token_sources, load_tokens
from ._serve import serve_store as serve
from ._team import TeamStore
from ._tokens import DatabaseTokens, InvalidTokenNameError, TokenInfo, TokenNotFoundError

__all__ = [
    "DEFAULT_MAX_BODY",
    "ERROR_CODES",
    "OPENAPI_URL",
    "SCHEMA_VERSION",
    "Database",
    "DatabaseError",
    "DatabaseTokens",
    "GcReport",
    "InvalidTokenNameError",
    "MigrateProgress",
    "MigrationError",
    "MigrationReport",
    "NotAServerStoreError",
    "Objects",
    "SchemaTooNewError",
    "ServerConfigError",
    "TeamStore",
    "TokenCheck",
    "TokenInfo",
    "TokenNotFoundError",
    "Tokens",
    "check_token_sources",
    "collect_garbage",
    "create_app",
    "entry_for",
    "load_tokens",
    "migrate_store",
    "new_token",
    "serve",
]
