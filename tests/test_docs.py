"""The examples in docs/format.md run as written against a real run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack

DOC = Path(__file__).resolve().parent.parent / "docs" / "format.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def run_dir(store: Path) -> Path:
    logger = amltrack.get_logger("docs", store=store, outputs=None, params={"lr": 0.1})
    for i in range(5):
        logger.log("loss", 1.0 / (i + 1))
        logger.log("acc", i / 10)
    logger.log("lr", [0.1, 0.01, float("nan")])
    logger.log("note", "NaN")
    logger.log("inf", float("inf"))
    logger.log_metrics({"loss": 0.1, "acc": 0.5, "val": float("nan")}, step=5)  # a row
    logger.upload("notes/config.txt", "lr=0.1")
    logger.finish()
    return logger.run_dir


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_jq_examples(run_dir: Path) -> None:
    (script,) = blocks("sh")
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "RUN": str(run_dir)},
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "completed docs"
    assert '  "loss": 0.1,' in lines  # the last loss, from the row
    assert '  "val": "NaN"' in lines  # a metric logged only in a row
    assert "4,0.2" in lines and "5,0.1" in lines  # the CSV rows of steps 4 and 5
    assert "6\tnotes/config.txt" in lines


def test_python_examples(run_dir: Path) -> None:
    code = [b for b in blocks("python") if "os.environ" in b]
    expected = [("loss", "completed", "inf", "val"), ("0.1",)]
    assert len(code) == len(expected)
    for block, wanted in zip(code, expected):
        out = subprocess.run(
            [sys.executable, "-c", block],
            capture_output=True,
            text=True,
            env={**os.environ, "RUN": str(run_dir)},
        )
        assert out.returncode == 0, out.stderr
        for w in wanted:
            assert w in out.stdout, (w, out.stdout)


def test_duckdb_reads_nonfinite_values(run_dir: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(
        f"SELECT name, TRY_CAST(value AS DOUBLE) FROM read_json('{run_dir}/metrics.jsonl', "
        "format='newline_delimited', columns={'name':'VARCHAR','value':'JSON'}) WHERE name='inf'"
    ).fetchall()
    assert rows == [("inf", float("inf"))]


def test_amltrack_example_names_exist() -> None:
    (block,) = [b for b in blocks("python") if "amltrack.Store()" in b]
    for attr in re.findall(r"run\.(\w+)", block):
        assert hasattr(amltrack.Run, attr) or attr in ("status", "info"), attr


def test_the_project_cites_no_file_outside_it() -> None:
    """A clone is read without the notes it was built from: what it needs of them is in docs/."""
    root = DOC.parent.parent
    found = []
    for top in ("amltrack", "docs", "benchmarks", "examples", "README.md", "pyproject.toml"):
        paths = [root / top] if (root / top).is_file() else sorted((root / top).rglob("*"))
        for path in paths:
            if path.is_file() and path.suffix in (".py", ".md", ".toml", ".js", ".css", ".html", ".txt"):
                if re.search(r"\.\./shared\b|shared/notes", path.read_text(errors="replace")):
                    found.append(str(path.relative_to(root)))
    assert found == []
