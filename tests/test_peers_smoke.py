"""The peers benchmark keeps working: smoke sizes, amltrack from this interpreter, no peer venvs (as in CI)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import child_env

PEERS = Path(__file__).resolve().parent.parent / "benchmarks" / "peers"
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("peers")
    out = subprocess.run(
        [
            sys.executable,
            str(PEERS / "run.py"),
            "--smoke",
            "--peers",
            "amltrack,mlflow",
            "--venvs",
            str(tmp / "no-venvs"),
            "--out",
            str(tmp / "out"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=tmp,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), tmp / "out"


def test_figures_of_amltrack(smoke: tuple[dict, Path]) -> None:
    results, _ = smoke
    amltrack = results["variants"]["amltrack"]
    assert "skipped" not in amltrack
    assert [f["ok"] for f in amltrack["lat"] + amltrack["train"] + amltrack["read"]] == [True] * 3
    figures = results["summary"]["amltrack"]
    for key in ("median_us", "p99_us", "train_wall_s", "train_cpu_s", "rss_mib", "bytes_per_point", "read_s"):
        assert figures[key]["median"] > 0, key
        assert figures[key]["ratio"] == 1.0, key
    assert amltrack["versions"]["amltrack"]
    assert results["meta"]["smoke"] is True and results["meta"]["points"] == amltrack["lat_n"]


def test_images_of_amltrack(smoke: tuple[dict, Path]) -> None:
    results, _ = smoke
    amltrack = results["variants"]["amltrack"]
    (run,) = amltrack["images"]
    assert run["ok"] and run["n"] == results["meta"]["images"] == amltrack["images_n"] == 20
    assert run["side"] == results["meta"]["image_side"] == 32
    assert run["bytes"] > 20 * 32 * 32 * 3 / 100  # 20 PNG files and their records are on disk
    figures = results["summary"]["amltrack"]
    for key in (
        "image_median_us",
        "image_p99_us",
        "images_wall_s",
        "images_inproc_s",
        "images_cpu_s",
        "image_bytes",
    ):
        assert figures[key]["median"] > 0, key
        assert figures[key]["ratio"] == 1.0, key
    assert figures["images_wall_s"]["median"] > figures["images_inproc_s"]["median"]


def test_a_peer_without_venv_is_skipped_with_a_reason(smoke: tuple[dict, Path]) -> None:
    results, _ = smoke
    for name in ("mlflow", "mlflow-async"):
        assert "no venv in" in results["variants"][name]["skipped"]
        assert name not in results["summary"]


def test_markdown_and_chart(smoke: tuple[dict, Path]) -> None:
    _, out = smoke
    md = (out / "peers.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    header = rows[0].split(" | ")
    assert "`log()` median, µs" in header and "reading the series back, s" in rows[0]
    (ours,) = [r for r in rows if r.startswith("| amltrack `log()` | **")]
    assert ours.count("|") == rows[0].count("|")
    assert any(r.startswith("| MLflow `log_metric`, SQLite") and "skipped: no venv" in r for r in rows)
    assert "![amltrack and its peers, log scale](peers.svg)" in md
    svg = ET.parse(out / "peers.svg").getroot()
    texts = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "amltrack" in texts and any("median" in t for t in texts)
    assert json.loads((out / "results.json").read_text())["summary"]["amltrack"]
    images = md.split("\nImages:\n", 1)[1]
    rows = [ln for ln in images.splitlines() if ln.startswith("| ")]
    assert "caller median, µs" in rows[0] and "durable: process wall, s" in rows[0]
    (ours,) = [r for r in rows if r.startswith("| amltrack | `log_image(")]
    assert ours.count("|") == rows[0].count("|") and "**" in ours
    assert any(r.startswith("| MLflow | `mlflow.log_image(") and "skipped: no venv" in r for r in rows)
    assert not any(r.startswith("| MLflow async") for r in rows)  # it has no image call of its own


def test_one_workload_alone(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(PEERS / "run.py"),
            "--smoke",
            "--peers",
            "amltrack",
            "--workloads",
            "images",
            "--venvs",
            str(tmp_path / "no-venvs"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "images amltrack" in out.stderr and " lat " not in out.stderr and "train" not in out.stderr
    assert "\nImages:\n" in out.stdout and "training loop" not in out.stdout
    bad = subprocess.run(
        [sys.executable, str(PEERS / "run.py"), "--smoke", "--workloads", "pictures"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "'pictures'" in bad.stderr and "images" in bad.stderr


def test_write_docs_replaces_only_its_section(smoke: tuple[dict, Path], tmp_path: Path) -> None:
    results, _ = smoke
    spec = importlib.util.spec_from_file_location("peers_run", PEERS / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    sys.modules["peers_run"] = run  # dataclasses look their module up while the class is made
    sys.path.insert(0, str(PEERS))
    try:
        spec.loader.exec_module(run)
        doc, chart = tmp_path / "benchmarks.md", tmp_path / "chart.svg"
        original = DOC.read_text()
        core = original.split(run.HEADING)[0].rstrip("\n")
        doc.write_text(original)
        run.write_docs(results, doc, chart)
        once = doc.read_text()
        run.write_docs(results, doc, chart)
        assert doc.read_text() == once
    finally:
        sys.path.remove(str(PEERS))
        sys.modules.pop("chart", None)
        sys.modules.pop("peers_run", None)
    assert once.startswith(core)
    assert once.count(run.HEADING) == 1 and once.count(run.BEGIN) == 1
    assert "![amltrack and its peers, log scale](chart.svg)" in once
    ET.parse(chart)
