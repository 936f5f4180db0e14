"""The benchmark scripts keep working (tiny sizes); their figures are not asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import child_env

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def smoke(script: str, *args: str) -> Any:
    """``benchmarks/<script> --smoke --json [args]``: its JSON, once it exited cleanly."""
    out = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_core_benchmark_smoke() -> None:
    figures = smoke("bench_core.py")
    for key in (
        "log_median_us",
        "log_p99_us",
        "throughput_wall_s",
        "read_s",
        "read_json_s",
        "list_runs_s",
        "rows_wall_s",
        "rows_read_s",
    ):
        assert figures[key] > 0, key


def test_breakdown_benchmark_smoke() -> None:
    # It replaces the writer's batch handling with its own, so it breaks when the writer changes.
    times = smoke("bench_breakdown.py")
    assert set(times) == {"caller", "encode", "noindex", "full"} and all(t > 0 for t in times.values())


def test_mirror_benchmark_smoke() -> None:
    figures = smoke("bench_mirror.py")
    assert figures["median_ms"] > 0 and figures["on_s"] > 0 and figures["off_s"] > 0


def test_bytes_benchmark_smoke() -> None:
    per_point = smoke("bench_bytes.py")["bytes_per_point"]
    assert per_point["one line per step with its values"] < per_point["log(): metrics.jsonl as written"]
    assert per_point["log(): the writer's column index (cache/columns.bin)"] >= 28
    rows = (
        per_point["log_metrics(): metrics.jsonl as written"]
        + per_point["log_metrics(): the writer's column index"]
    )
    assert rows < 40


def test_cli_benchmark_smoke() -> None:
    figures = smoke("bench_cli.py")
    for key in ("help_s", "list_s", "list_all_json_s", "info_s", "info_json_s", "floor_python_s"):
        assert figures[key] > 0, key


def test_sync_benchmark_smoke() -> None:
    figures = smoke("bench_sync.py")
    for key in (
        "metrics_push_s",
        "artifact_push_s",
        "artifact_mb_s",
        "first_push_runs_s",
        "resync_s",
        "resync_all_s",
        "import_sync_s",
        "floor_python_s",
    ):
        assert figures[key] > 0, key


def test_listing_benchmark_smoke() -> None:
    figures = smoke("bench_listing.py")
    for store in ("a", "b"):
        assert figures[store]["cli_s"] > 0 and figures[store]["memory_cli_s"] > 0, store


def test_system_benchmark_smoke() -> None:
    figures = smoke("bench_system.py")
    assert figures["per_sample_ms"] >= 0 and figures["core_percent_at_10s"] >= 0


def test_media_benchmark_smoke() -> None:
    figures = smoke("bench_media.py")
    for key in (
        "log_image_median_us",
        "images_durable_s",
        "log_image_batched_median_us",
        "log_histogram_median_us",
        "ui_media_ms",
    ):
        assert figures[key] > 0, key
    copies = smoke("bench_media.py", "--copies")
    assert len(copies) == 5 and all(f["median_us"] > 0 for f in copies.values())


def test_redact_benchmark_smoke() -> None:
    figures = smoke("bench_redact.py")
    assert figures["on_median_ms"] > 0 and figures["off_median_ms"] > 0 and figures["rules_us"] > 0


def test_bucket_benchmark_smoke() -> None:
    figures = smoke("bench_bucket.py")
    for key in (
        "metrics_push_s",
        "artifact_push_s",
        "first_push_runs_s",
        "resync_s",
        "list_s",
        "list_cold_s",
    ):
        assert figures[key] > 0, key


def test_query_benchmark_smoke() -> None:
    figures = smoke("bench_query.py")
    assert figures["runs"] == 40 and figures["matched"][0] > 0
    for key in ("scan", "cold", "warm", "warm, same Store", "min/max cold", "min/max warm", "cli"):
        assert figures[key][0] > 0, key


def test_ui_runs_benchmark_smoke() -> None:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        pytest.skip("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    figures = smoke("bench_ui_runs.py")
    for key in ("first_rows_s", "filtered_s", "workbench_s"):
        assert figures[key] > 0, key


def test_server_query_benchmark_smoke() -> None:
    figures = smoke("bench_server_query.py")
    assert figures["runs"] == 300
    first = figures["param filter, metric sort"]
    assert first["matched"] > 0 and first["page_ms"][0] > 0 and first["count_ms"][0] > 0


@pytest.mark.timeout(300)  # two replicas, moto and an embedded server start: 30 s at a load of 10
def test_server_scale_benchmark_smoke() -> None:
    # Embedded always; the team's replicas too where PostgreSQL, moto and `server --objects` are here.
    figures = smoke("bench_server_scale.py")
    embedded = figures["backends"]["embedded"]
    assert embedded["points_per_s"] > 0 and embedded["artifact_mb_per_s"] > 0
    assert (
        embedded["metrics"]["requests"] > 0 and embedded["metrics"]["p99_ms"] >= embedded["metrics"]["p50_ms"]
    )
    assert set(embedded["metrics"]["statuses"]) <= {"200", "201", "204", "404"}, embedded["metrics"][
        "statuses"
    ]
    team = figures["backends"]["team"]  # the tests' machines have PostgreSQL and moto: never skipped here
    assert "skipped" not in team, team
    assert team["points_per_s"] > 0 and team["artifact_mb_per_s"] > 0, team
    assert all(n > 0 for n in team["metrics"]["per_upstream"]), "a replica took no request"
