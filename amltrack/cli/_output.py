"""What the CLI commands share: the common options, output (tables, durations, sparklines, JSON), and
turning a failure into one line and an exit code."""

from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import _env
from .._errors import AmltrackError

if TYPE_CHECKING:
    from .._store import Store

# A reader that goes away (``amltrack ... | head``) ends the command the way SIGPIPE ends a shell
# tool: silently, with the exit code a shell shows for it.
EXIT_BROKEN_PIPE = 141


class CliError(AmltrackError):
    """A command cannot do what it was asked; the message is the one line the user sees."""


# What -r RUN accepts, as Store.run resolves it.
RUN_HELP = "a run id, a unique prefix of it or of its short id, a unique run name, or 'last'"


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help="the store (default: $AMLTRACK_STORE, else the nearest .amltrack/)",
    )


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (the shape is in docs/cli.md)")


def command_parser(sub: Any, name: str, help: str, example: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with ``example``."""
    description = kwargs.pop("description", help[0].upper() + help[1:] + ".")
    return sub.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 79),
        epilog="example:\n  " + example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command handler so that no failure reaches the user as a traceback.

    amltrack's own errors pass through to ``main``, which prints them as one line. A closed stdout
    ends the command quietly with EXIT_BROKEN_PIPE, and any other OS error becomes one line naming
    the file.
    """

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except AmltrackError:
            raise
        except BrokenPipeError:
            silence_stdout()
            return EXIT_BROKEN_PIPE
        except OSError as e:
            what = f" {e.filename}" if e.filename else ""
            raise CliError(f"cannot access{what}: {e.strerror or e}") from None

    return wrapper


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


SPARKS = "▁▂▃▄▅▆▇█"


def open_store(path: str | None) -> Store:
    """``amltrack.Store(path)``, imported only when a command runs, so ``--help`` stays fast."""
    from .._store import Store

    store = Store(path)
    if not store.path.is_dir():
        where = "--store" if path is not None else "$AMLTRACK_STORE" if os.environ.get(_env.STORE) else None
        how = (
            f"check {where}"
            if where
            else "no .amltrack folder was found here or above; pass --store DIR or set AMLTRACK_STORE"
        )
        raise CliError(f"no store at {store.path}: {how} (a store is made by the first run logged into it)")
    return store


def print_json(obj: Any) -> None:
    import orjson

    sys.stdout.write(
        orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_default).decode()
        + "\n"
    )


def _default(o: Any) -> Any:
    if isinstance(o, float):
        return None
    raise TypeError


def json_safe(v: Any) -> Any:
    """NaN and infinities as the strings the metrics files use, so --json output is standard JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, list):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    return v


def sparkline(values: Sequence[Any], width: int = 24) -> str:
    """The finite numbers among ``values`` as a line of at most ``width`` bars (bucket means)."""
    from .._summary import bucket_means, finite_numbers

    nums = bucket_means(finite_numbers(list(values)), width)
    if not nums:
        return ""
    lo, hi = min(nums), max(nums)
    if hi == lo:
        return SPARKS[3] * len(nums)
    return "".join(SPARKS[min(7, int((v - lo) / (hi - lo) * 8))] for v in nums)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return f"[{len(v)} values]"
    if v is None:
        return "-"
    if isinstance(v, dict):  # an image, a table, ...: as its kind shows it
        from .._kinds import TAGGED

        kind = TAGGED.get(str(v.get("kind")))
        if kind is not None and kind.accepts(dict(v)):
            return kind.show(v)
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def terminal_width() -> int | None:
    """The width tables fit: ``$COLUMNS`` when set, else the terminal's when stdout is one, else None
    (a pipe or a file gets whole rows; scripts should read ``--json``)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    if sys.stdout.isatty():
        import shutil

        return shutil.get_terminal_size().columns
    return None


def short_id(run_id: Any) -> str:
    """A run id as tables show it: the first 8 hex digits of its random part, which RUN accepts."""
    from .._store import short_id as short

    return short(run_id) if isinstance(run_id, str) else str(run_id)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    flex: dict[str, int] | None = None,
    drop: Sequence[str] = (),
    width: int | None = None,
) -> str:
    """Rows under headers, in columns two spaces apart, fitted to ``width`` (default: the terminal's).

    When the natural table is too wide, the columns named in ``drop`` are left out, in that order,
    until the rest can fit; then the widest of the ``flex`` columns (header: narrowest width) is
    narrowed, a character at a time, its cells cut with "…", until the table fits.
    """
    if width is None:
        width = terminal_width()
    n = len(headers)
    natural = [len(h) for h in headers]
    for row in rows:
        natural = [max(w, _width(c)) for w, c in zip(natural, row)]
    widths = list(natural)
    keep = list(range(n))
    if width is not None:
        flex = flex or {}
        least = [
            min(natural[i], max(flex[h], len(h))) if h in flex else natural[i] for i, h in enumerate(headers)
        ]

        def total(ws: Sequence[int]) -> int:
            return sum(ws[i] for i in keep) + 2 * (len(keep) - 1)

        for h in drop:
            if total(least) <= width:
                break
            keep.remove(headers.index(h))
        # Narrow the widest flex column a character at a time, so the cut is shared out evenly.
        narrowable = [headers.index(h) for h in flex if headers.index(h) in keep]
        for _ in range(total(widths) - width):
            i = max((i for i in narrowable if widths[i] > least[i]), key=lambda i: widths[i], default=None)
            if i is None:
                break
            widths[i] -= 1

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_fit(cells[i], widths[i]) for i in keep).rstrip()

    lines = [line(headers), "  ".join("-" * widths[i] for i in keep)]
    lines += [line(row) for row in rows]
    return "\n".join(lines)


def hanging(head: str, text: str, width: int | None) -> str:
    """``head + text``, with ``text`` wrapped to ``width`` under itself when the line is too long."""
    if width is None or len(head) + len(text) <= width:
        return (head + text).rstrip()
    lines = textwrap.wrap(text, max(width - len(head), 20)) or [""]
    return "\n".join([(head + lines[0]).rstrip(), *(" " * len(head) + rest for rest in lines[1:])])


def _fit(cell: str, w: int) -> str:
    n = _width(cell)
    if n > w:  # only flex columns, whose cells are plain text, are narrower than their cells
        return cell[: max(w - 1, 0)] + "…"
    return cell + " " * (w - n)


def _width(cell: str) -> int:
    return len(_ANSI.sub("", cell)) if "\x1b" in cell else len(cell)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STATUS_COLOURS = {"completed": "32", "running": "36", "failed": "31", "crashed": "1;31", "killed": "33"}


def colour() -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org) or TERM=dumb."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def status(text: str, coloured: bool) -> str:
    """A run's status, in its colour when ``coloured``."""
    code = _STATUS_COLOURS.get(text) if coloured else None
    return f"\x1b[{code}m{text}\x1b[0m" if code else text
