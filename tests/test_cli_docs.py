"""docs/cli.md documents every command: its options, its JSON shape (checked against real output) and
its exit codes."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amltrack.cli._main import build_parser

from .conftest import child_env

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"
SAMPLE = ROOT / ".amltrack-sample"


# Commands whose groups are being built alongside this file, documented elsewhere for now. Each one
# gets its section in docs/cli.md when it lands: take it out of this set then. Any other command
# without a section fails the test below.
NOT_YET_IN_CLI_MD: set[str] = set()


def leaf_commands() -> dict[str, argparse.ArgumentParser]:
    """'history list' -> its parser, for every command that runs something."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        # A command whose subcommands are optional ('server', beside 'server token') runs too.
        if path and not any(a.required for a in subs):
            found[" ".join(path)] = p
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, [*path, name])

    walk(build_parser(), [])
    return found


def sections() -> dict[str, str]:
    """'history list' -> the text of the section headed ## `amltrack history list`."""
    parts = re.split(r"^## `amltrack ([a-z ]+)`\n", DOC.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_command_has_a_section_and_every_section_a_command() -> None:
    commands = leaf_commands()
    assert {
        "history list",
        "history last",
        "history info",
        "history promote",
        "asset list",
        "asset show",
        "asset download",
        "metrics",
        "run",
    } <= set(commands)
    assert set(sections()) == set(commands) - NOT_YET_IN_CLI_MD


@pytest.mark.parametrize("command", sorted(set(leaf_commands()) - NOT_YET_IN_CLI_MD))
def test_every_option_is_documented(command: str) -> None:
    text = sections()[command]
    for action in leaf_commands()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            for option in action.option_strings:  # each spelling, as a whole word
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (command, option)
        else:
            assert action.metavar and action.metavar.split()[0] in text, (command, action.metavar)


def test_exit_codes_are_documented() -> None:
    text = DOC.read_text()
    table = text[text.index("### Exit codes") : text.index("## `amltrack history list`")]
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |", "| 141 |"):
        assert code in table
    run = sections()["run"]
    for words in ("128+N", "127", "126", "exit code"):
        assert words in run


def json_example(command: str) -> object:
    blocks = re.findall(r"```json\n(.*?)```", sections()[command], flags=re.S)
    assert len(blocks) == 1, command
    return json.loads(blocks[0])


def keys(obj: object) -> object:
    """The shape of a JSON value: object keys (recursively for nested objects that are records)."""
    if isinstance(obj, list):
        return [keys(obj[0])] if obj else []
    if isinstance(obj, dict):
        return sorted(obj)
    return type(obj).__name__


def cli_json(*args: str) -> object:
    out = subprocess.run(
        [sys.executable, "-m", "amltrack", *args], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_documented_json_shapes_match_real_output(tmp_path: Path) -> None:
    store = tmp_path / "sample"
    shutil.copytree(SAMPLE, store)
    s = ("--store", str(store))
    baseline = "56b8168f"
    promoted = cli_json("history", "promote", "-r", "f6c16d03", "-ap", "config", "-n", "cfg", "--json", *s)
    real = {
        "history list": cli_json("history", "list", "--json", *s),
        "history info": cli_json("history", "info", "-r", baseline, "--json", *s),
        "asset list": cli_json("asset", "list", "--json", *s),
        "asset show": cli_json("asset", "show", "cfg", "--json", *s),
        "asset download": cli_json("asset", "download", "cfg", str(tmp_path / "d"), "--json", *s),
        "metrics": cli_json("metrics", "-r", baseline, "--json", *s),
    }
    assert promoted == real["asset show"]
    assert cli_json("history", "last", "--json", *s).keys() == real["history info"].keys()
    for command, output in real.items():
        documented = json_example(command)
        assert keys(documented) == keys(output), command
    info, doc_info = real["history info"], json_example("history info")
    assert keys(next(iter(info["metrics"].values()))) == keys(next(iter(doc_info["metrics"].values())))
    assert keys(info["artifacts"]) == keys(doc_info["artifacts"])
    doc_asset = json_example("asset show")
    assert keys(real["asset show"]["files"]) == keys(doc_asset["files"])
    doc_metrics = json_example("metrics")
    assert keys(next(iter(real["metrics"]["metrics"].values()))) == keys(
        next(iter(doc_metrics["metrics"].values()))
    )


def test_every_help_ends_with_an_example() -> None:
    for command, parser in leaf_commands().items():
        help_text = parser.format_help().rstrip()
        last = help_text.splitlines()[-1].strip()
        assert "example" in (parser.epilog or "") and last.startswith("amltrack "), (command, last)
