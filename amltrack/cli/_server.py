"""``amltrack server``: serve a store over HTTP to ``amltrack sync`` (needs the server extra)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

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
    ssub = server.add_subparsers(dest="server_command", metavar="token")
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
