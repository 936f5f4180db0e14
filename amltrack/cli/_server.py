"""``amltrack server``: serve a store over HTTP to ``amltrack sync`` (needs the server extra)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

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
            "it listens on loopback only. It also serves the web UI (the pages of 'amltrack ui') at "
            "/ui/, to holders of a read or write token. See docs/sync.md.",
            width=90,
        ),
        epilog=(
            "examples:\n"
            "  amltrack server --new-token write        # prints a token and its tokens-file line\n"
            "  amltrack server --store .amltrack        # the web UI at http://127.0.0.1:8765/ui/\n"
            "  amltrack server --store /srv/amltrack --host 0.0.0.0 --tokens-file /etc/amltrack/tokens"
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
    if not args.store:
        args.parser.error("--store DIR is required to serve")
    server.serve(
        args.store,
        host=args.host,
        port=args.port,
        tokens=server.load_tokens(args.tokens_file),
        max_body=args.max_body if args.max_body is not None else server.DEFAULT_MAX_BODY,
    )
    return 0
