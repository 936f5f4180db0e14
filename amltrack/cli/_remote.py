"""``amltrack remote add|list|remove|default``: the remotes ``amltrack sync`` pushes to."""

from __future__ import annotations

import argparse
from typing import Any

from . import _output as out


def _remotes() -> Any:
    from ..sync import Remotes  # imported when used: the CLI starts without httpx

    return Remotes.load()


def _sub(rsub: Any, name: str, help: str, example: str) -> argparse.ArgumentParser:
    return rsub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_parser(sub: Any) -> None:
    remote = sub.add_parser(
        "remote",
        help="the servers 'amltrack sync' pushes to",
        description="Named remotes, one of them the default, kept in remotes.json in $AMLTRACK_CONFIG_DIR, "
        "else ~/.config/amltrack (readable by you only). $AMLTRACK_TOKEN overrides a remote's token.",
        epilog='example:\n  amltrack remote add team https://amltrack.example.org --token "$TOKEN"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = remote.add_subparsers(dest="remote_command", metavar="COMMAND", required=True)

    p = _sub(
        rsub, "add", "add or replace a remote", "amltrack remote add team http://10.0.0.5:8765 --default"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "url",
        metavar="URL",
        help="the server's base URL: http://host:8765 (amltrack) or mlflow+https://host (MLflow), or a "
        "bucket: s3://BUCKET/PREFIX",
    )
    p.add_argument("--token", default=None, help="the remote's token (else $AMLTRACK_TOKEN when syncing)")
    p.add_argument(
        "--endpoint",
        metavar="URL",
        default=None,
        help="for an s3:// bucket: the S3 endpoint of MinIO, R2 or Ceph (else $AWS_ENDPOINT_URL, else "
        "AWS itself); kept in the URL as ?endpoint=",
    )
    p.add_argument("--default", action="store_true", help="make it the default (the first remote is)")
    p.set_defaults(handler=cmd_add)

    p = _sub(rsub, "list", "the configured remotes", "amltrack remote list --json")
    p.add_argument("--json", action="store_true", help="print JSON (tokens are never printed)")
    p.set_defaults(handler=cmd_list)

    p = _sub(rsub, "remove", "forget a remote", "amltrack remote remove team")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_remove)

    p = _sub(rsub, "default", "make a remote the default", "amltrack remote default team")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_default)


def cmd_add(args: argparse.Namespace) -> int:
    url = args.url
    if args.endpoint is not None:
        if not url.startswith("s3://"):
            raise out.CliError(f"--endpoint is for s3:// buckets, and {url!r} is not one")
        from urllib.parse import urlencode

        url += ("&" if "?" in url else "?") + urlencode({"endpoint": args.endpoint}, safe=":/")
    remotes = _remotes()
    entry = remotes.add(args.name, url, token=args.token, default=args.default)
    remotes.save()
    print(f"remote {entry.name} -> {entry.url}{' (default)' if remotes.default == entry.name else ''}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    remotes = _remotes()
    rows = [
        {
            "name": e.name,
            "url": e.url,
            "kind": e.kind,
            "default": n == remotes.default,
            "token": e.token is not None,
        }
        for n, e in sorted(remotes.entries.items())
    ]
    if args.json:
        out.print_json(rows)
    elif rows:
        print(
            out.table(
                ["NAME", "URL", "KIND", "TOKEN", "DEFAULT"],
                [
                    [
                        r["name"],
                        r["url"],
                        r["kind"],
                        "yes" if r["token"] else "-",
                        "*" if r["default"] else "",
                    ]
                    for r in rows
                ],
                flex={"URL": 24, "NAME": 10},
            )
        )
    else:
        print("no remotes; add one with 'amltrack remote add NAME URL'")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    remotes = _remotes()
    remotes.remove(args.name)
    remotes.save()
    print(
        f"removed remote {args.name}" + (f"; the default is now {remotes.default}" if remotes.default else "")
    )
    return 0


def cmd_default(args: argparse.Namespace) -> int:
    remotes = _remotes()
    remotes.set_default(args.name)
    remotes.save()
    print(f"default remote: {args.name}")
    return 0
