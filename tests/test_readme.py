"""The README's two commands stay true: .ci/run runs the same test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)[:2]


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    demo, tests = commands()
    assert text.index(demo) < 200, "the README begins with the demo command"
    assert "examples/train_demo.py" in demo and "history last" in demo
    assert "'.[test]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands()[1] in ci


def test_every_cli_command_has_help_with_an_example() -> None:
    from amltrack.cli._main import build_parser

    parser = build_parser()
    seen = 0

    def walk(p, path):
        nonlocal seen
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
        if path:
            seen += 1
            assert p.epilog and "example" in p.epilog, f"amltrack {' '.join(path)} --help has no example"

    walk(parser, [])
    assert seen >= 4
