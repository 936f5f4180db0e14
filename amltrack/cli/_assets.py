"""``amltrack asset list|show|download``: the named, versioned assets that ``history promote`` makes."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from . import _output as out
from ._history import add_source_args
from ._output import add_json_arg, command_parser, guarded

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    asset = sub.add_parser(
        "asset",
        help="list, show and download promoted assets",
        description="List, show and download the assets 'amltrack history promote' makes.",
        epilog="example:\n  amltrack asset download mnist-cnn:2 deploy/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    asub = asset.add_subparsers(dest="asset_command", metavar="COMMAND", required=True)

    p = command_parser(
        asub,
        "list",
        "every version of every asset",
        "amltrack asset list --json\n  amltrack asset list --remote team",
    )
    add_source_args(p, "assets")
    add_json_arg(p)
    p.set_defaults(handler=cmd_list)

    p = command_parser(
        asub, "show", "one asset version: where it came from and its files", "amltrack asset show mnist-cnn:2"
    )
    add_source_args(p, "assets")
    p.add_argument("ref", metavar="NAME[:VERSION]", help="an asset, at its latest version unless given")
    add_json_arg(p)
    p.set_defaults(handler=cmd_show)

    p = command_parser(
        asub,
        "download",
        "write an asset version's files into a folder",
        "amltrack asset download mnist-cnn deploy/",
        description=(
            "Write an asset version's files into DIR at their paths (DIR is created if needed; files "
            "already there are replaced). Nothing is written outside DIR. With --remote, from an amltrack "
            "server that 'amltrack sync' pushed it to."
        ),
    )
    add_source_args(p, "assets")
    p.add_argument("ref", metavar="NAME[:VERSION]", help="an asset, at its latest version unless given")
    p.add_argument("dir", metavar="DIR", help="the folder to write into")
    add_json_arg(p)
    p.set_defaults(handler=cmd_download)


@contextlib.contextmanager
def _source(args: argparse.Namespace) -> Iterator[tuple[Any, str]]:
    """The local store, or with --remote a reader of the server's assets; and where that is, for messages."""
    if args.remote is None and out.is_bucket(args.store):
        from ..sync._bucket_reader import BucketReader  # boto3 only when a bucket is read

        with BucketReader(args.store) as bucket:
            yield bucket, f"in {bucket.url}"
        return
    if args.remote is None:
        store = out.open_store(args.store)
        yield store, f"in {store}"
        return
    from ..sync._reader import RemoteReader  # httpx is imported only when a command runs

    with RemoteReader.open(args.remote) as reader:
        yield reader, f"on {reader.label}"


@guarded
def cmd_list(args: argparse.Namespace) -> int:
    from .. import _assets
    from .._store import Store

    with _source(args) as (source, where):
        assets = _assets.list_assets(source) if isinstance(source, Store) else source.assets()
    if args.json:
        out.print_json([a.to_json() for a in assets])
        return 0
    if not assets:
        print(f"no assets {where}", file=sys.stderr)
        return 0
    print(
        out.table(
            ["ASSET", "FILES", "SIZE", "SOURCE RUN", "PREFIX", "CREATED"],
            [
                [
                    a.ref,
                    str(len(a.files)),
                    str(a.size),
                    out.short_id(a.info.get("source_run")),
                    str(a.info.get("prefix")),
                    str(a.info.get("created") or "-")[:19].replace("T", " "),
                ]
                for a in assets
            ],
            flex={"ASSET": 16, "PREFIX": 12},
            drop=["FILES", "CREATED"],
        )
    )
    return 0


@guarded
def cmd_show(args: argparse.Namespace) -> int:
    from .. import _assets
    from .._store import Store

    with _source(args) as (source, _):
        asset = _assets.get(source, args.ref) if isinstance(source, Store) else source.asset(args.ref)
    if args.json:
        out.print_json(asset.to_json())
        return 0
    info = asset.info
    print(f"asset       {asset.ref}")
    print(f"source run  {info.get('source_run')} ({info.get('experiment')})")
    print(f"prefix      {info.get('prefix')}")
    print(f"created     {info.get('created')}")
    if isinstance(source, Store):
        print(f"folder      {asset.dir}")
    print()
    print(
        out.table(
            ["FILE", "SIZE", "SHA256"],
            [[f["path"], str(f.get("size")), str(f.get("sha256"))] for f in asset.files],
            flex={"SHA256": 12, "FILE": 24},
        )
    )
    return 0


@guarded
def cmd_download(args: argparse.Namespace) -> int:
    from .. import _assets
    from .._store import Store

    with _source(args) as (source, _):
        asset = _assets.get(source, args.ref) if isinstance(source, Store) else source.asset(args.ref)
        asset.download(args.dir)
    paths = [f["path"] for f in asset.files]
    if args.json:
        out.print_json({"asset": asset.ref, "dir": os.path.abspath(args.dir), "files": paths})
        return 0
    for path in paths:
        print(os.path.join(args.dir, path))
    return 0
