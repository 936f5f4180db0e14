"""The HTTP routes of the history server; ``docs/sync.md`` describes the protocol they make up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from .. import __version__
from .._summary import POINTS
from .._web._app import create_app
from .._web._auth import TokenCheck
from .._web._errors import API_VERSION, ERROR_CODES
from .._web._guard import LOOPBACK_NAMES
from ._assets import ServerAssets
from ._errors import HANDLERS, SECURITY_HEADERS
from ._faults import Faults
from ._guard import check_same_site
from ._limits import DEFAULT_MAX_BODY, BodyLimit
from ._storage import ServerStore, check_run_id
from ._team import TeamAssets, TeamStore

OPENAPI_URL = "/openapi.json"

_RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_ERROR_SCHEMA = {
    "description": "an error, in the one shape every error has",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                            "message": {"type": "string"},
                            "committed": {"description": "the server's length, to resume from"},
                        },
                    }
                },
            }
        }
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {"4XX": _ERROR_SCHEMA, "5XX": _ERROR_SCHEMA}

_HISTORY_RUN = {
    "type": "object",
    "required": ["id", "status", "run", "summary"],
    "properties": {
        "id": {"type": "string"},
        "status": {
            "type": "string",
            "description": "as a reader of the store computes it: a run still running on file whose "
            "process is gone (same host) or whose heartbeat is over 120 s old is crashed",
        },
        "run": {"type": "object", "description": "run.json"},
        "summary": {"type": "object", "description": "summary.json ({} if the run has none)"},
    },
}
_HISTORY_LIST = {
    "type": "object",
    "required": ["runs"],
    "properties": {"runs": {"type": "array", "items": _HISTORY_RUN}},
}
_HISTORY_SUMMARY = {
    "type": "object",
    "required": ["id", "metrics_bytes", "skipped", "metrics"],
    "properties": {
        "id": {"type": "string"},
        "metrics_bytes": {"type": "integer", "description": "the bytes of metrics.jsonl summarised"},
        "skipped": {"type": "integer", "description": "lines of metrics.jsonl that could not be read"},
        "metrics": {
            "type": "object",
            "description": "per metric: kind, count, last, min, max, points (bucket means of its finite "
            "numbers, or of a list metric's last list), and nonfinite: which of last, min and max are "
            "NaN or infinities written as in metrics.jsonl",
        },
    },
}
_ASSET = {
    "type": "object",
    "required": ["name", "version", "files"],
    "description": "asset.json: name, version, source_run, experiment, prefix, files [{path, size, sha256}], "
    "size, created; a pushed version also origin (the SHA-256 of the asset.json pushed), pushed_version "
    "(its version where it was promoted) and pushed (when)",
}
_ASSET_LIST = {
    "type": "object",
    "required": ["assets"],
    "properties": {"assets": {"type": "array", "items": _ASSET}},
}
_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_BYTES_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file's bytes", "content": _BYTES},
    **_ERRORS,
}
_STREAM_BLOCK = 1 << 20


def _json_answer(schema: dict[str, Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}, **_ERRORS}


def _json(obj: Any) -> Response:
    # orjson, as the store's own reader: what it parsed it writes back unchanged.
    return Response(orjson.dumps(obj), media_type="application/json")


def _stream(f: BinaryIO, size: int) -> StreamingResponse:
    """The first ``size`` bytes of ``f``: a file that grows meanwhile (an append) still matches its length."""

    def blocks() -> Iterator[bytes]:
        with f:
            left = size
            while left > 0:
                block = f.read(min(left, _STREAM_BLOCK))
                if not block:
                    return
                left -= len(block)
                yield block

    headers = {"Content-Length": str(size), "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    return StreamingResponse(blocks(), media_type="application/octet-stream", headers=headers)


def server_app(
    store: str | os.PathLike[str],
    *,
    tokens: TokenCheck | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    faults: Faults | None = None,
    team: TeamStore | None = None,
) -> FastAPI:
    """The server as an ASGI app over ``store``; ``tokens`` None means no auth (loopback only).
    ``faults`` is a test's seam (``amltrack.server._faults``): None for a server that does its job.
    With ``team`` (runs in PostgreSQL and a bucket), the routes write there, and ``store`` is only
    the folder the web UI reads: this replica's copy of the published runs (``TeamStore.mirror``).

    app = create_app("/srv/amltrack", tokens=Tokens.parse("write:" + token))
    uvicorn.run(app, host="127.0.0.1", port=8765)

    Without tokens the server is on loopback, where any web page could read it through DNS
    rebinding: then the whole app, /v1 and the UI, answers only to loopback host names.
    """
    storage: ServerStore | TeamStore = team if team is not None else ServerStore(store, faults=faults)
    app = create_app(
        FastAPI,
        headers=SECURITY_HEADERS,
        handlers=HANDLERS,
        allowed_hosts=LOOPBACK_NAMES if tokens is None else None,
        # RootToUi innermost: its redirect gets the security headers and the Host check.
        inner=[Middleware(BodyLimit, max_body=max_body), Middleware(RootToUi)],
        title="amltrack history server",
        version=__version__,
        description="Receives amltrack runs pushed by `amltrack sync`; see docs/sync.md.",
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
    )
    app.state.storage = storage
    bearer = HTTPBearer(auto_error=False, description="a token with the read or the write scope")

    def scope(needed: str) -> Any:
        def check(
            request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
        ) -> None:
            if tokens is not None:
                tokens.require(None if credentials is None else credentials.credentials, needed)
            # With tokens or without: a token in a browser's hands (pasted into a page) must not write either.
            if needed == "write":
                check_same_site(request.scope)

        return Depends(check)

    read = [scope("read")]
    write = [scope("write")]

    @app.get("/v1/health", tags=["server"], responses=_ERRORS)
    def health() -> dict[str, Any]:
        """The server's version and limits; needs no token."""
        return {
            "server": "amltrack",
            "version": __version__,
            "api": API_VERSION,
            "max_body": max_body,
            "auth": "none" if tokens is None else "token",
        }

    @app.get("/v1/runs", tags=["runs"], dependencies=read, responses=_ERRORS)
    async def list_runs() -> dict[str, Any]:
        """Every run on the server; ``published`` is false for a run whose first push is unfinished."""
        return {"runs": await run_in_threadpool(storage.list_runs)}

    @app.get("/v1/runs/{run_id}", tags=["runs"], dependencies=read, responses=_ERRORS)
    async def get_run(run_id: str, hashes: bool = Query(False)) -> dict[str, Any]:
        """Sizes and SHA-256 of the run's files and artifacts; ``hashes`` adds them for the JSON Lines files."""
        return await run_in_threadpool(storage.state, check_run_id(run_id), hashes=hashes)

    @app.put("/v1/runs/{run_id}", tags=["runs"], dependencies=write, responses=_ERRORS)
    async def create_run(run_id: str) -> JSONResponse:
        """Create the run (staged, invisible to readers until finalised) unless the server has it."""
        created = await run_in_threadpool(storage.create, check_run_id(run_id))
        state = await run_in_threadpool(storage.state, run_id)
        return JSONResponse(state, status_code=201 if created else 200)

    @app.post(
        "/v1/runs/{run_id}/append/{name}",
        tags=["runs"],
        dependencies=write,
        responses=_ERRORS,
        openapi_extra=_RAW_BODY,
    )
    async def append(request: Request, run_id: str, name: str, offset: int = Query(ge=0)) -> dict[str, Any]:
        """Append bytes to metrics.jsonl or artifacts.jsonl if ``offset`` is its committed length (else 409)."""
        body = await request.body()
        size = await run_in_threadpool(storage.append, check_run_id(run_id), name, offset, body)
        return {"file": name, "size": size}

    @app.get("/v1/runs/{run_id}/blobs/{sha256}", tags=["artifacts"], dependencies=read, responses=_ERRORS)
    async def get_blob(run_id: str, sha256: str) -> dict[str, Any]:
        """How much of an upload the server holds, and whether it is complete and checked."""
        return await run_in_threadpool(storage.blob_state, check_run_id(run_id), sha256)

    @app.post(
        "/v1/runs/{run_id}/blobs/{sha256}",
        tags=["artifacts"],
        dependencies=write,
        responses=_ERRORS,
        openapi_extra=_RAW_BODY,
    )
    async def put_blob(
        request: Request, run_id: str, sha256: str, offset: int = Query(ge=0), size: int = Query(ge=0)
    ) -> dict[str, Any]:
        """Append a chunk of the content with this SHA-256 (``size`` bytes in all) at ``offset``."""
        body = await request.body()
        return await run_in_threadpool(storage.put_blob, check_run_id(run_id), sha256, offset, size, body)

    @app.put(
        "/v1/runs/{run_id}/artifacts/{path:path}", tags=["artifacts"], dependencies=write, responses=_ERRORS
    )
    async def put_artifact(run_id: str, path: str, sha256: str = Query()) -> dict[str, Any]:
        """Place the complete upload ``sha256`` at the artifact path."""
        return await run_in_threadpool(storage.commit_artifact, check_run_id(run_id), path, sha256)

    @app.delete(
        "/v1/runs/{run_id}/artifacts/{path:path}", tags=["artifacts"], dependencies=write, responses=_ERRORS
    )
    async def delete_artifact(run_id: str, path: str) -> dict[str, Any]:
        """Remove an artifact file whose path is no longer stored locally."""
        deleted = await run_in_threadpool(storage.delete_artifact, check_run_id(run_id), path)
        return {"path": path, "deleted": deleted}

    @app.put(
        "/v1/runs/{run_id}/summary.json",
        tags=["runs"],
        dependencies=write,
        responses=_ERRORS,
        openapi_extra=_RAW_BODY,
    )
    async def put_summary(request: Request, run_id: str) -> dict[str, Any]:
        """Replace summary.json with the client's, byte for byte."""
        body = await request.body()
        await run_in_threadpool(storage.put_summary, check_run_id(run_id), body)
        return {"file": "summary.json", "size": len(body)}

    @app.put(
        "/v1/runs/{run_id}/run.json",
        tags=["runs"],
        dependencies=write,
        responses=_ERRORS,
        openapi_extra=_RAW_BODY,
    )
    async def finalise(
        request: Request, run_id: str, metrics_bytes: int = Query(ge=0), manifest_bytes: int = Query(ge=0)
    ) -> dict[str, Any]:
        """Finalise: check the lengths pushed, replace run.json, and publish the run if it was staged."""
        body = await request.body()
        return await run_in_threadpool(
            storage.finalise, check_run_id(run_id), body, metrics_bytes, manifest_bytes
        )

    _add_history_routes(app, storage, read)
    assets = TeamAssets(team) if team is not None else ServerAssets(storage)  # type: ignore[arg-type]
    _add_asset_routes(app, assets, read, write)
    _mount_ui(app, store, tokens)
    return app


def _add_history_routes(app: FastAPI, storage: ServerStore | TeamStore, read: list[Any]) -> None:
    """What `amltrack history list|last|info --remote` reads: finalised runs only, as a reader of the
    server's store sees them."""

    @app.get(
        "/v1/history/runs",
        tags=["history"],
        dependencies=read,
        response_class=Response,
        responses=_json_answer(_HISTORY_LIST, "the runs, newest first"),
    )
    async def history_runs(
        experiment: str | None = Query(None, max_length=1000, description="only this experiment's runs"),
        status: str | None = Query(
            None, description="only runs with this status: running, completed, failed, killed or crashed"
        ),
        limit: int = Query(0, ge=0, description="at most this many runs; 0 for all"),
        filter: str | None = Query(
            None, max_length=10_000, description="only runs that match this expression (docs/query.md)"
        ),
        order_by: list[str] = Query(
            [], description="sort keys, each KEY, 'KEY asc', 'KEY desc' or -KEY; repeatable"
        ),
    ) -> Response:
        """Finalised runs newest first (or sorted by ``order_by``), each with its run.json,
        summary.json and status; a ``filter`` or ``order_by`` that does not parse is a 400
        ``invalid_query`` whose message names the column."""
        runs = await run_in_threadpool(storage.history, experiment, status, limit, filter, order_by)
        return _json({"runs": runs})

    @app.get(
        "/v1/history/runs/{ref}",
        tags=["history"],
        dependencies=read,
        response_class=Response,
        responses=_json_answer(_HISTORY_RUN, "the run"),
    )
    async def history_run(ref: str) -> Response:
        """The finalised run ``ref`` names: its id, a unique prefix of it or of its random part, or ``last``."""
        return _json(await run_in_threadpool(storage.history_run, ref))

    @app.get(
        "/v1/history/runs/{run_id}/files/{name}",
        tags=["history"],
        dependencies=read,
        response_class=Response,
        responses=_BYTES_ANSWER,
    )
    async def history_file(run_id: str, name: str) -> Response:
        """The bytes of run.json, summary.json, metrics.jsonl or artifacts.jsonl of a finalised run."""
        f, size = await run_in_threadpool(storage.open_run_file, run_id, name)
        return _stream(f, size)

    @app.get(
        "/v1/history/runs/{run_id}/summary",
        tags=["history"],
        dependencies=read,
        response_class=Response,
        responses=_json_answer(_HISTORY_SUMMARY, "the run's metrics, summarised"),
    )
    async def history_summary(
        run_id: str,
        points: int = Query(POINTS, ge=1, le=1000, description="points per metric for a sparkline"),
    ) -> Response:
        """Per metric of a finalised run: kind, count, last, min, max and points for a sparkline.

        Computed as the metrics arrive, so it costs the same whatever the run's size.
        """
        return _json(await run_in_threadpool(storage.overview, check_run_id(run_id), points))

    @app.get(
        "/v1/history/runs/{run_id}/artifacts/{path:path}",
        tags=["history"],
        dependencies=read,
        response_class=Response,
        responses={200: {"description": "the artifact's bytes", "content": _BYTES}, **_ERRORS},
    )
    async def history_artifact(run_id: str, path: str) -> Response:
        """The bytes of an artifact file of a finalised run."""
        f, size = await run_in_threadpool(storage.open_artifact, run_id, path)
        return _stream(f, size)


def _add_asset_routes(
    app: FastAPI, assets: ServerAssets | TeamAssets, read: list[Any], write: list[Any]
) -> None:
    """What `amltrack sync` pushes promoted assets through, and `amltrack asset ... --remote` reads."""

    @app.get(
        "/v1/assets",
        tags=["assets"],
        dependencies=read,
        response_class=Response,
        responses=_json_answer(_ASSET_LIST, "every version of every asset"),
    )
    async def list_assets() -> Response:
        """Every version of every asset, by name, then version: each one's asset.json."""
        return _json({"assets": await run_in_threadpool(assets.every_version)})

    @app.get(
        "/v1/assets/{ref}",
        tags=["assets"],
        dependencies=read,
        response_class=Response,
        responses=_json_answer(_ASSET, "the version's asset.json"),
    )
    async def get_asset(ref: str) -> Response:
        """The asset version ``NAME:VERSION``, or the latest version of ``NAME``."""
        return _json(await run_in_threadpool(assets.get, ref))

    @app.get(
        "/v1/assets/{ref}/files/{path:path}",
        tags=["assets"],
        dependencies=read,
        response_class=Response,
        responses=_BYTES_ANSWER,
    )
    async def asset_file(ref: str, path: str) -> Response:
        """The bytes of a file of the asset version ``ref`` (``NAME`` or ``NAME:VERSION``)."""
        f, size = await run_in_threadpool(assets.open_file, ref, path)
        return _stream(f, size)

    @app.get("/v1/assets/{name}/blobs/{sha256}", tags=["assets"], dependencies=read, responses=_ERRORS)
    async def get_asset_blob(name: str, sha256: str) -> dict[str, Any]:
        """How much of an upload the server holds; complete if a version of the asset already holds it."""
        return await run_in_threadpool(assets.blob_state, name, sha256)

    @app.post(
        "/v1/assets/{name}/blobs/{sha256}",
        tags=["assets"],
        dependencies=write,
        responses=_ERRORS,
        openapi_extra=_RAW_BODY,
    )
    async def put_asset_blob(
        request: Request, name: str, sha256: str, offset: int = Query(ge=0), size: int = Query(ge=0)
    ) -> dict[str, Any]:
        """Append a chunk of the content with this SHA-256 (``size`` bytes in all) at ``offset``."""
        body = await request.body()
        return await run_in_threadpool(assets.put_blob, name, sha256, offset, size, body)

    @app.put(
        "/v1/assets/{name}", tags=["assets"], dependencies=write, responses=_ERRORS, openapi_extra=_RAW_BODY
    )
    async def put_asset(request: Request, name: str) -> dict[str, Any]:
        """Place the version an asset.json describes, once: the same asset.json again answers the
        version it made, and the latest version's content again answers that version."""
        body = await request.body()
        return await run_in_threadpool(assets.place, name, body)


class RootToUi:
    """Sends a GET of the server's bare address to the web UI at ``/ui/`` (307), whatever it accepts.

    A person who types the server's address lands on its pages. A middleware rather than a route: the
    redirect needs no token (it reveals nothing) and is not part of the API the walk of the routes checks.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        root = str(scope.get("root_path", "")).rstrip("/")
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and scope["path"] in ("/", root + "/")
        ):
            await RedirectResponse(f"{root}/ui/", status_code=307)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _mount_ui(app: FastAPI, store: str | os.PathLike[str], tokens: TokenCheck | None) -> None:
    """The web UI's pages under /ui, for holders of a read (or write) token."""
    from ..ui import create_app as ui_app
    from ..ui import token_auth

    ui = ui_app(store, auth=None if tokens is None else token_auth(tokens.can_read))
    app.mount("/ui", ui)
    app.state.warmer = ui.state.warmer
