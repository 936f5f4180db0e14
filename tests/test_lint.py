"""The code keeps the project's rules (pyproject.toml): ruff's lint and format, and mypy over the
package. The tools come with the test extras; a missing one fails, as any other broken setup would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREES = ["amltrack", "tests", "examples", "benchmarks"]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_passes() -> None:
    out = run("ruff", "check", *TREES)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    out = run("ruff", "format", "--check", *TREES)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_finds_nothing_in_the_package() -> None:
    out = run("mypy")  # files and options: [tool.mypy] in pyproject.toml
    assert out.returncode == 0, out.stdout + out.stderr
