"""``amltrack``: argument parsing, dispatch, and turning errors into one line and an exit code."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import Any

from .. import __version__
from .._errors import AmltrackError
from . import _assets, _history, _metrics, _remote, _run, _server, _sync, _ui
from ._output import guarded

# One module per command group, each with add_parser(subparsers); the order is the order of --help.
COMMAND_MODULES = [_history, _metrics, _assets, _run, _sync, _remote, _server, _ui]

EPILOG = """examples:
  amltrack history list --limit 5
  amltrack history info -r last --json
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that refuses unknown arguments itself.

    argparse hands a subcommand's unknown options up to the top-level parser, which then prints
    its own usage (``amltrack [-h] [--version] COMMAND``), not the subcommand's. Every subparser is
    of this class (argparse makes them of their parent's), so the subcommand that met the unknown
    option prints its usage line and the error, and exits 2.
    """

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads; this takes what argparse passes
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        args = _dash_values(sys.argv[1:] if args is None else list(args))
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


# Options whose value may start with "-": `--sort -metrics.acc` means descending, not an option.
DASH_VALUES = ("--sort",)


def _dash_values(args: list[str]) -> list[str]:
    """``--sort -KEY`` as ``--sort=-KEY``, which argparse would otherwise read as an unknown option."""
    out = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in DASH_VALUES and i + 1 < len(args) and args[i + 1].startswith("-") and len(args[i + 1]) > 1:
            out.append(f"{a}={args[i + 1]}")
            i += 2
            continue
        if a == "--":
            return out + args[i:]
        out.append(a)
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="amltrack",
        description="Inspect, run, promote and sync amltrack runs: plain files in a local store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"amltrack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    # The library warns about what it skipped (a damaged line, a run it cannot read); on the
    # command line that is one line, like an error, not Python's file, line and source.
    text = str(message).removeprefix("amltrack: ").removeprefix("amltrack ")
    print(f"amltrack: warning: {text}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return guarded(handler)(args)  # every command group: OS errors and a closed pipe handled alike
    except AmltrackError as e:
        print(f"amltrack: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        return 130
