"""``amltrack server``: serve a store over HTTP to ``amltrack sync`` (needs the server extra)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any, cast

from . import _output as out
from ._web import add_listen_args

DEFAULT_PORT = 8765


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "server",
        help="receive runs pushed by 'amltrack sync' into a store",
        description=textwrap.fill(
            "Serve an amltrack store over HTTP: 'amltrack sync' pushes runs into it, and it stays an "
            "ordinary store that 'amltrack history --store DIR' reads. Tokens come from --tokens-file "
            "or $AMLTRACK_SERVER_TOKENS (entries 'read:TOKEN' or 'write:sha256:HEX'); without tokens "
            "it listens on loopback only. With --database, tokens are rows of a PostgreSQL database "
            "instead ('amltrack server token create'; the runs stay in --store: see docs/deploy.md). It "
            "also serves the web UI (the pages of 'amltrack ui') at /ui/, to holders of a read or write "
            "token. See docs/sync.md.",
            width=90,
        ),
        epilog=(
            "examples:\n"
            "  amltrack server --new-token write        # prints a token and its tokens-file line\n"
            "  amltrack server --store .amltrack        # the web UI at http://127.0.0.1:8765/ui/\n"
            "  amltrack server --store /srv/amltrack --host 0.0.0.0 --tokens-file /etc/amltrack/tokens\n"
            "  amltrack server --store /srv/amltrack --host 0.0.0.0 --database postgresql://amltrack@db/amltrack\n"
            "  amltrack server --host 0.0.0.0 --database postgresql://amltrack@db/amltrack "
            "--objects s3://team-runs/amltrack   # a replica"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--store", metavar="DIR", default=None, help="the store to receive runs into (created if missing)"
    )
    add_listen_args(p, DEFAULT_PORT)
    p.add_argument(
        "--tokens-file",
        metavar="FILE",
        default=None,
        help="tokens, one 'SCOPE:TOKEN' or 'SCOPE:sha256:HEX' per line (default: $AMLTRACK_SERVER_TOKENS)",
    )
    p.add_argument(
        "--database",
        metavar="URL",
        default=None,
        help="check tokens against this PostgreSQL database (postgresql://USER@HOST/DB; needs the team "
        "extra), instead of --tokens-file; its schema is created or upgraded at start",
    )
    p.add_argument(
        "--objects",
        metavar="URL",
        default=None,
        help="keep the runs in PostgreSQL (--database) and their bytes in this S3-compatible bucket, "
        "s3://BUCKET/PREFIX, instead of --store: any number of servers so started serve one team "
        "(docs/deploy.md); credentials and region the standard AWS way",
    )
    p.add_argument(
        "--objects-endpoint",
        metavar="URL",
        default=None,
        help="the S3 endpoint of a store other than AWS (MinIO, Cloudflare R2, Ceph), e.g. "
        "http://minio.internal:9000 (default: $AWS_ENDPOINT_URL, else AWS)",
    )
    p.add_argument(
        "--max-body",
        metavar="BYTES",
        type=int,
        default=None,
        help="the largest request body accepted (default 16 MiB); clients send chunks that fit",
    )
    p.add_argument(
        "--new-token",
        metavar="SCOPE",
        choices=["read", "write"],
        default=None,
        help="print a new random token with this scope and its hashed tokens-file line, and exit",
    )
    p.set_defaults(handler=cmd_server, parser=p)
    _add_token_parsers(p)


def _add_token_parsers(server: argparse.ArgumentParser) -> None:
    ssub = server.add_subparsers(dest="server_command", metavar="token|migrate|gc")
    token = ssub.add_parser(
        "token",
        help="the tokens of a server whose --database holds them",
        description="Tokens kept in the team server's PostgreSQL database, as SHA-256 digests.",
        epilog="example:\n  amltrack server token create --database postgresql://amltrack@db/amltrack "
        "--scope write --name ci",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tsub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    db = "postgresql://amltrack@db/amltrack"

    def add_database(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database",
            metavar="URL",
            required=True,
            help="the server's PostgreSQL database, postgresql://USER@HOST/DB (schema created if missing)",
        )

    p = out.command_parser(
        tsub,
        "create",
        "make a token and print it, once: the database keeps only its digest",
        f"amltrack server token create --database {db} --scope write --name ci",
    )
    add_database(p)
    p.add_argument("--scope", choices=["read", "write"], required=True, help="what the token may do")
    p.add_argument("--name", metavar="NAME", required=True, help="a name unique among the live tokens")
    out.add_json_arg(p)
    p.set_defaults(handler=cmd_token_create)

    p = out.command_parser(
        tsub, "list", "the tokens (never their secrets)", f"amltrack server token list --database {db} --json"
    )
    add_database(p)
    p.add_argument("--all", action="store_true", help="include revoked tokens")
    out.add_json_arg(p)
    p.set_defaults(handler=cmd_token_list)

    p = out.command_parser(
        tsub,
        "revoke",
        "revoke a token by name or id: the server refuses it from the next request on",
        f"amltrack server token revoke --database {db} ci",
    )
    add_database(p)
    p.add_argument("token", metavar="NAME|ID", help="the token's name, or its id from 'token list'")
    out.add_json_arg(p)
    p.set_defaults(handler=cmd_token_revoke)

    team = f"--database {db} --objects s3://team-runs/amltrack"
    p = out.command_parser(
        ssub,
        "migrate",
        "copy an embedded server's runs and assets into a team server's database and bucket",
        f"amltrack server migrate --from-store /srv/amltrack {team}",
        description="Copy the published runs (with their artifacts) and the assets of an embedded "
        "server's store into a team server's database and bucket, through the same writes a push makes, "
        "then compare every file with DIR's by size and SHA-256. Run it again after an interruption: it "
        "continues where it stopped. DIR is only read; its server may go on serving it. Exit code 1 if "
        "anything failed or differs. See docs/deploy-migrate.md.",
    )
    p.add_argument(
        "--from-store", metavar="DIR", required=True, help="the store an embedded 'amltrack server' serves"
    )
    _add_team_args(p)
    p.add_argument(
        "--verify-only", action="store_true", help="copy nothing: only compare the team's copy with DIR"
    )
    out.add_json_arg(p)
    p.set_defaults(handler=cmd_migrate)

    p = out.command_parser(
        ssub,
        "gc",
        "remove bucket objects, uploads and contents that no row of a team server names",
        f"amltrack server gc {team} --dry-run",
        description="Remove what a team server no longer needs: objects in the bucket that no row of the "
        "database names (left by a replica killed between its write to the bucket and its commit), "
        "uploads abandoned for --uploads-older-than, and contents no artifact or asset names. Objects "
        "and contents younger than --older-than are kept: a write in flight holds one for a moment "
        "before its row commits. See docs/deploy-migrate.md.",
    )
    _add_team_args(p)
    p.add_argument(
        "--older-than",
        metavar="SECONDS",
        type=float,
        default=3600.0,
        help="take only objects and contents at least this old (default 3600)",
    )
    p.add_argument(
        "--uploads-older-than",
        metavar="SECONDS",
        type=float,
        default=7 * 86400.0,
        help="remove uploads untouched for this long (default 604800, 7 days)",
    )
    p.add_argument("--dry-run", action="store_true", help="remove nothing: say what would be removed")
    out.add_json_arg(p)
    p.set_defaults(handler=cmd_gc)


def _add_team_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        metavar="URL",
        required=True,
        help="the team server's PostgreSQL database, postgresql://USER@HOST/DB (schema created if missing)",
    )
    p.add_argument(
        "--objects",
        metavar="URL",
        required=True,
        help="the team server's bucket, s3://BUCKET/PREFIX (credentials and region the standard AWS way)",
    )
    p.add_argument(
        "--objects-endpoint",
        metavar="URL",
        default=None,
        help="the S3 endpoint of a store other than AWS (MinIO, R2, Ceph) (default: $AWS_ENDPOINT_URL, else AWS)",
    )


def _team_store(args: argparse.Namespace) -> Any:
    """The team server's TeamStore, as a replica opens it; a one-line error if either part fails."""
    try:
        from ..server import Database, Objects, TeamStore
    except ImportError as e:
        raise out.CliError(
            f"the team server needs its extra ({e.name} is missing): pip install 'amltrack[team]'"
        ) from None
    db = Database.open(args.database)
    try:
        return TeamStore(db, Objects.open(args.objects, endpoint=args.objects_endpoint))
    except BaseException:
        db.close()
        raise


def _api_error(e: Any) -> out.CliError:
    return out.CliError(e.message)


class _MigrateBars:
    """The rich progress bar of a migration on stderr: one phase (copying, verifying) at a time."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[items]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None
        self._items = self._done = 0
        self._phase = ""

    def __enter__(self) -> _MigrateBars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def begin(self, phase: str, items: int, total_bytes: int) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._phase, self._items, self._done = phase, items, 0
        self._task = self._progress.add_task(phase, total=total_bytes, items=f"0/{items}")

    def item(self, name: str, total_bytes: int) -> None:
        self._progress.update(self._task, description=f"{self._phase} {name}")

    def advance(self, nbytes: int) -> None:
        self._progress.advance(self._task, nbytes)

    def end(self) -> None:
        self._done += 1
        self._progress.update(self._task, items=f"{self._done}/{self._items}")


def cmd_migrate(args: argparse.Namespace) -> int:
    from .._web._errors import ApiError
    from ..server import migrate_store
    from ..server._migrate import check_server_store

    check_server_store(args.from_store)  # before connecting: the likeliest mistake, said first
    team = _team_store(args)
    try:
        if not args.json and sys.stderr.isatty():
            with _MigrateBars() as bars:
                report = migrate_store(
                    args.from_store, team, verify_only=args.verify_only, progress=cast(Any, bars)
                )
        else:
            report = migrate_store(args.from_store, team, verify_only=args.verify_only)
    except ApiError as e:
        raise _api_error(e) from None
    finally:
        team.close()
    if args.json:
        out.print_json(report.to_dict())
        return 0 if report.ok else 1
    from ._sync import human_bytes

    d = report.to_dict()
    for run_id in report.staged:
        print(f"skipped   run {run_id}: staged (pushed, never finalised) in DIR")
    for run_id, why in report.skipped.items():
        print(f"skipped   run {run_id}: {why}")
    for what, why in report.failures.items():
        print(f"FAILED    {what}: {why}")
    for line in report.differences:
        print(f"DIFFERS   {line}")
    r, a = d["run_counts"], d["asset_counts"]
    head = "verified" if args.verify_only else f"{r['copied']} runs copied ({human_bytes(report.bytes)} sent)"
    print(
        f"{head}; runs: {r['up_to_date']} already there, {r['failed']} failed, {len(report.staged)} staged "
        f"left out; assets: {a['placed']} placed, {a['up_to_date']} already there, {a['failed']} failed; "
        f"checked {report.verified_runs} runs and {report.verified_assets} asset versions, "
        f"{len(report.differences)} differences; {report.source} -> {report.target}"
    )
    return 0 if report.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    from .._web._errors import ApiError
    from ..server import collect_garbage

    team = _team_store(args)
    try:
        report = collect_garbage(
            team,
            older_than=args.older_than,
            uploads_older_than=args.uploads_older_than,
            dry_run=args.dry_run,
        )
    except ValueError as e:
        raise out.CliError(str(e)) from None
    except ApiError as e:
        raise _api_error(e) from None
    finally:
        team.close()
    if args.json:
        out.print_json(report.to_dict())
        return 0
    from ._sync import human_bytes

    verb = "would remove" if args.dry_run else "removed"
    for label, t in (
        ("objects no row names", report.objects),
        ("abandoned uploads", report.uploads),
        ("contents nothing names", report.blobs),
    ):
        print(f"{verb} {t.count} {label} ({human_bytes(t.bytes)})")
    if report.kept.count:
        print(
            f"kept {report.kept.count} objects no row names yet ({human_bytes(report.kept.bytes)}): younger "
            f"than --older-than {args.older_than:g} s, perhaps a write in flight"
        )
    return 0


def _database_tokens(url: str) -> Any:
    try:
        from ..server import Database, DatabaseTokens
    except ImportError as e:
        raise out.CliError(
            f"the team server needs its extra ({e.name} is missing): pip install 'amltrack[team]'"
        ) from None
    return DatabaseTokens(Database.open(url))


def cmd_token_create(args: argparse.Namespace) -> int:
    tokens = _database_tokens(args.database)
    try:
        secret, info = tokens.create(args.name, args.scope)
    finally:
        tokens.db.close()
    if args.json:
        out.print_json({**info.to_json(), "token": secret})
    else:
        print(f"token: {secret}")
        print(
            f"{info.scope} token {info.name!r} (id {info.id}); this is the only time it is shown",
            file=sys.stderr,
        )
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    tokens = _database_tokens(args.database)
    try:
        rows = [t.to_json() for t in tokens.list(revoked=args.all)]
    finally:
        tokens.db.close()
    if args.json:
        out.print_json(rows)
    elif rows:
        print(
            out.table(
                ["ID", "NAME", "SCOPE", "CREATED", "REVOKED"],
                [
                    [str(r["id"]), r["name"], r["scope"], r["created"][:19], (r["revoked"] or "-")[:19]]
                    for r in rows
                ],
            )
        )
    else:
        print("no tokens; make one with 'amltrack server token create'")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    tokens = _database_tokens(args.database)
    try:
        info = tokens.revoke(args.token)
    finally:
        tokens.db.close()
    if args.json:
        out.print_json(info.to_json())
    else:
        print(f"revoked {info.scope} token {info.name!r} (id {info.id})")
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    try:
        from .. import server
    except ImportError as e:
        print(
            f"amltrack: the server needs its extra ({e.name} is missing): pip install 'amltrack[server]'",
            file=sys.stderr,
        )
        return 1
    if args.new_token:
        token = server.new_token()
        print(f"token: {token}")
        print(f"tokens-file line: {server.entry_for(args.new_token, token)}")
        return 0
    if args.objects is not None or args.objects_endpoint is not None:
        if args.objects is None:
            args.parser.error("--objects-endpoint needs --objects s3://BUCKET/PREFIX")
        if args.database is None:
            args.parser.error(
                "--objects needs --database: the runs' index lives there, their bytes in the bucket"
            )
        if args.store:
            args.parser.error(
                "--store and --objects both say where runs go; give --store DIR alone (one server), or "
                "--database and --objects (replicas); 'amltrack server migrate --from-store DIR' moves runs"
            )
    elif not args.store:
        args.parser.error(
            "--store DIR is required to serve (or --database URL and --objects s3://BUCKET/PREFIX)"
        )
    tokens: server.TokenCheck | None
    team = None
    if args.database is None:
        tokens = server.load_tokens(args.tokens_file)
    else:
        server.check_token_sources(args.tokens_file)
        db = server.Database.open(args.database)
        tokens = server.DatabaseTokens(db)
        if args.objects is not None:
            try:
                team = server.TeamStore(db, server.Objects.open(args.objects, endpoint=args.objects_endpoint))
            except BaseException:
                db.close()
                raise
    try:
        server.serve(
            args.store,
            host=args.host,
            port=args.port,
            tokens=tokens,
            max_body=args.max_body if args.max_body is not None else server.DEFAULT_MAX_BODY,
            team=team,
        )
    finally:
        if team is not None:
            team.close()
        elif isinstance(tokens, server.DatabaseTokens):
            tokens.db.close()
    return 0
