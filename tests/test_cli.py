"""The command line, run as a real process against real stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import amltrack

from .conftest import child_env

SAMPLE = Path(__file__).resolve().parent.parent / ".amltrack-sample"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amltrack", *args], capture_output=True, text=True,
                          cwd=cwd, env=child_env(), timeout=60)


def test_history_list_table_and_json() -> None:
    out = cli("history", "list", "--store", str(SAMPLE))
    assert out.returncode == 0, out.stderr
    assert "crashed" in out.stdout and "failed" in out.stdout and "completed" in out.stdout
    rows = json.loads(cli("history", "list", "--store", str(SAMPLE), "--json").stdout)
    assert [r["id"] for r in rows] == [r.id for r in amltrack.Store(SAMPLE).runs()]
    assert {"id", "experiment", "name", "status", "created", "duration_s", "metrics", "last"} <= set(rows[0])
    crashed = json.loads(cli("history", "list", "--store", str(SAMPLE), "--status", "crashed", "--json").stdout)
    assert [r["status"] for r in crashed] == ["crashed"]


def test_history_last_and_info() -> None:
    last = cli("history", "last", "--store", str(SAMPLE))
    assert last.returncode == 0 and amltrack.Store(SAMPLE).last().id in last.stdout
    failed = amltrack.Store(SAMPLE).runs(status="failed")[0]
    info = json.loads(cli("history", "info", "-r", failed.id.split("-")[1][:10], "--store", str(SAMPLE), "--json").stdout)
    assert info["id"] == failed.id and info["status"] == "failed"
    assert info["info"]["error"]["type"]
    for m in info["metrics"].values():
        assert {"count", "last", "min", "max", "sparkline"} <= set(m)


def test_info_json_is_standard_json_with_nonfinite_values(store: Path) -> None:
    logger = amltrack.get_logger(store=store, outputs=None)
    logger.log("x", float("nan"))
    logger.log("l", [1.0, float("inf")])
    logger.finish()
    out = cli("history", "info", "-r", "last", "--store", str(store), "--json")
    data = json.loads(out.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert data["metrics"]["x"]["last"] == "NaN" and data["metrics"]["l"]["last"] == [1.0, "Infinity"]


def test_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    out = cli("history", "info", "-r", "nope", "--store", str(SAMPLE))
    assert out.returncode == 1
    assert out.stderr.startswith("amltrack: no run matches 'nope'") and "Traceback" not in out.stderr
    out = cli("history", "last", "--store", str(tmp_path / "empty"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert cli("history", "list", "--store", str(tmp_path / "empty")).returncode == 0


def test_console_script_and_version() -> None:
    out = cli("--version")
    assert out.returncode == 0 and amltrack.__version__ in out.stdout
    assert cli().returncode == 2  # no command: help and a usage error
