"""``amltrack ui``: serve a store's runs, charts, artifacts and assets to a browser (needs the ui extra)."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from ._output import CliError, add_store_arg, is_bucket
from ._web import add_listen_args

DEFAULT_PORT = 8766
MIRROR_EVERY = 10.0  # seconds between refreshes of a bucket's runs (amltrack ui --store s3://...)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ui",
        help="browse runs and their charts in a web browser",
        description=textwrap.fill(
            "Serve a store as web pages: runs (live status, filters), a run's charts, metadata and "
            "artifacts, comparisons and assets. Listens on 127.0.0.1 only, unless --allow-remote; "
            "to share runs with a team, use 'amltrack server', which serves the same pages to "
            "holders of a read token. See docs/ui.md.",
            79,
        ),
        epilog="examples:\n  amltrack ui --store .amltrack --port 8766   # then open http://127.0.0.1:8766/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_arg(p)
    add_listen_args(p, DEFAULT_PORT)
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not loopback: anyone who reaches it can read every run",
    )
    p.set_defaults(handler=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port {args.port} is not a port number; give 0 to 65535")
    try:
        from .. import ui
    except ImportError as e:
        raise CliError(f"the UI needs its extra ({e.name} is missing): pip install 'amltrack[ui]'") from None
    if is_bucket(args.store):
        return _serve_bucket(ui, args)
    ui.serve(args.store, host=args.host, port=args.port, allow_remote=args.allow_remote)
    return 0


def _serve_bucket(ui: Any, args: argparse.Namespace) -> int:
    """Serve a bucket's published runs, read-only: the UI reads a folder, so it serves a local mirror
    of the bucket that a thread refreshes (only new parts and changed artifacts are fetched)."""
    import sys
    import tempfile
    from pathlib import Path

    from ..sync._bucket_reader import BucketReader, Mirror

    def warn(message: str) -> None:
        print(f"amltrack ui: warning: {message}", file=sys.stderr, flush=True)

    with BucketReader(args.store) as bucket, tempfile.TemporaryDirectory(prefix="amltrack-bucket-") as tmp:
        print(
            f"amltrack ui: reading {args.store} into {tmp}, refreshed every {MIRROR_EVERY:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        with Mirror(bucket, Path(tmp), every=MIRROR_EVERY, warn=warn):
            ui.serve(tmp, host=args.host, port=args.port, allow_remote=args.allow_remote)
    return 0
