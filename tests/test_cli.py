"""The command line, run as a real process against real stores."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack
from amltrack.cli._output import json_safe

from .conftest import child_env, wait_until

SAMPLE = Path(__file__).resolve().parent.parent / ".amltrack-sample"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amltrack", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env(),
        timeout=60,
    )


def test_history_list_table_and_json() -> None:
    out = cli("history", "list", "--store", str(SAMPLE))
    assert out.returncode == 0, out.stderr
    assert "crashed" in out.stdout and "failed" in out.stdout and "completed" in out.stdout
    rows = json.loads(cli("history", "list", "--store", str(SAMPLE), "--json").stdout)
    assert [r["id"] for r in rows] == [r.id for r in amltrack.Store(SAMPLE).runs()]
    assert {"id", "experiment", "name", "status", "created", "duration_s", "metrics", "last"} <= set(rows[0])
    crashed = json.loads(
        cli("history", "list", "--store", str(SAMPLE), "--status", "crashed", "--json").stdout
    )
    assert [r["status"] for r in crashed] == ["crashed"]


def test_history_last_and_info() -> None:
    last = cli("history", "last", "--store", str(SAMPLE))
    assert last.returncode == 0 and amltrack.Store(SAMPLE).last().id in last.stdout
    failed = amltrack.Store(SAMPLE).runs(status="failed")[0]
    info = json.loads(
        cli("history", "info", "-r", failed.id.split("-")[1][:10], "--store", str(SAMPLE), "--json").stdout
    )
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
    (tmp_path / "empty").mkdir()
    out = cli("history", "last", "--store", str(tmp_path / "empty"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "no run" in out.stderr
    out = cli("history", "list", "--store", str(tmp_path / "empty"))
    assert (out.returncode, out.stdout) == (0, "") and out.stderr == f"no runs in {tmp_path / 'empty'}\n"
    out = cli("history", "list", "-e", "nosuch", "--store", str(SAMPLE))
    assert out.returncode == 0 and out.stderr.startswith("no runs of experiment 'nosuch' in ")


@pytest.mark.parametrize(
    "command",
    [
        ["history", "list"],
        ["history", "last"],
        ["history", "info", "-r", "last"],
        ["history", "info", "-r", "last", "-a", "x"],
        ["history", "promote", "-r", "last", "-ap", "x", "-n", "m"],
        ["asset", "list"],
        ["asset", "show", "m"],
        ["asset", "download", "m", "d"],
        ["metrics", "-r", "last"],
    ],
)
def test_a_missing_store_is_a_one_line_error(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nope"
    out = cli(*command, "--store", str(missing), cwd=tmp_path)
    assert out.returncode == 1, out
    assert (
        out.stderr
        == f"amltrack: no store at {missing}: check --store (a store is made by the first run logged into it)\n"
    )
    env = {k: v for k, v in child_env().items() if k != "AMLTRACK_STORE"}
    out = subprocess.run(
        [sys.executable, "-m", "amltrack", *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1 and "no .amltrack folder was found here or above" in out.stderr
    assert out.stderr.count("\n") == 1 and not missing.exists() and not (tmp_path / ".amltrack").exists()


def test_o_writes_into_a_symlink_or_a_device_instead_of_replacing_it(
    made: amltrack.Run, tmp_path: Path
) -> None:
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    args = ("history", "info", "-r", made.id, "-a", "bin/every_byte.bin", "--store", str(made.store.path))
    assert cli(*args, "-o", str(link)).returncode == 0
    assert link.is_symlink() and target.read_bytes() == EVERY_BYTE
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert cli(*args, "-o", str(fifo)).returncode == 0
    assert reader.communicate(timeout=30)[0] == EVERY_BYTE
    assert fifo.is_fifo()


def test_console_script_and_version() -> None:
    out = cli("--version")
    assert out.returncode == 0 and amltrack.__version__ in out.stdout
    assert cli().returncode == 2  # no command: help and a usage error


# ----------------------------------------------------------------- shared by the tests below


def cli_bytes(*args: str, store: Path | None = None, **kw) -> subprocess.CompletedProcess:
    extra = ("--store", str(store)) if store is not None else ()
    return subprocess.run(
        [sys.executable, "-m", "amltrack", *args, *extra],
        capture_output=True,
        env=kw.pop("env", child_env()),
        timeout=60,
        **kw,
    )


def one_line_error(out: subprocess.CompletedProcess, *needles: str) -> None:
    err = out.stderr if isinstance(out.stderr, str) else out.stderr.decode()
    assert out.returncode == 1, (out.returncode, err)
    assert err.startswith("amltrack: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)


EVERY_BYTE = bytes(range(256)) * 4 + b"\r\n\x00tail"


@pytest.fixture
def made(store: Path) -> amltrack.Run:
    """A finished run made here: scalar, list, string and bool metrics, text and binary artifacts."""
    logger = amltrack.get_logger("made", name="here", store=store, outputs=None, params={"lr": 0.1})
    for i in range(30):
        logger.log("loss", 1.0 / (i + 1))
    logger.log("loss", float("nan"))
    logger.log("hist", [3, 1, 2])
    logger.log("hist", [0.5, 9.0, float("inf")])
    logger.log("stage", "warmup")
    logger.log("stage", "train")
    logger.log("done", True)
    logger.upload("bin/every_byte.bin", EVERY_BYTE)
    logger.upload("notes.txt", "hello")
    logger.finish()
    from amltrack._files import Artifacts

    Artifacts(logger.run_dir).record("huge.bin", "failed", source="outputs", size=10**10, reason="too large")
    return amltrack.Store(store).run(logger.run_id)


# ----------------------------------------------------------------- history list


def test_history_list_limit_experiment_and_bad_limit() -> None:
    rows = json.loads(cli("history", "list", "--store", str(SAMPLE), "--limit", "2", "--json").stdout)
    assert [r["id"] for r in rows] == [r.id for r in amltrack.Store(SAMPLE).runs()][:2]
    rows = json.loads(cli("history", "list", "--store", str(SAMPLE), "-e", "classifier", "--json").stdout)
    assert {r["experiment"] for r in rows} == {"classifier"} and len(rows) == 3
    assert all(len(r["last"]) <= 3 for r in rows)
    one_line_error(cli("history", "list", "--store", str(SAMPLE), "--limit", "-1"), "--limit -1")


def test_store_from_the_environment() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amltrack", "history", "last", "--json"],
        capture_output=True,
        text=True,
        env=child_env(AMLTRACK_STORE=str(SAMPLE)),
        timeout=60,
    )
    assert json.loads(out.stdout)["id"] == amltrack.Store(SAMPLE).last().id


# ----------------------------------------------------------------- history info


def test_info_json_agrees_with_the_read_api(made: amltrack.Run) -> None:
    out = cli("history", "info", "-r", made.id.split("-")[1][:6], "--store", str(made.store.path), "--json")
    d = json.loads(out.stdout)
    assert set(d) == {
        "id",
        "experiment",
        "name",
        "status",
        "duration_s",
        "info",
        "metrics",
        "artifacts",
        "skipped_lines",
    }
    assert (d["id"], d["experiment"], d["name"], d["status"]) == (made.id, "made", "here", "completed")
    assert d["info"]["params"] == {"lr": 0.1}
    summary = made.summary()
    assert set(d["metrics"]) == set(summary)
    for name, m in d["metrics"].items():
        assert {k: m[k] for k in ("count", "last", "min", "max")} == json_safe(summary[name]), name
    assert d["metrics"]["loss"]["kind"] == "number" and d["metrics"]["loss"]["last"] == "NaN"
    assert d["metrics"]["hist"] == {
        "kind": "list",
        "count": 2,
        "last": [0.5, 9.0, "Infinity"],
        "min": 0.5,
        "max": "Infinity",
        "sparkline": "▁█",
    }  # of the latest list
    assert d["metrics"]["stage"]["kind"] == "string" and d["metrics"]["stage"]["last"] == "train"
    assert d["metrics"]["done"]["kind"] == "bool" and d["metrics"]["done"]["sparkline"] == ""
    assert len(d["metrics"]["loss"]["sparkline"]) == 24
    assert d["artifacts"] == made.artifacts()
    assert d["skipped_lines"] == 0


def test_info_text_shows_metrics_strings_and_rejected_artifacts(made: amltrack.Run) -> None:
    out = cli("history", "info", "-r", "last", "--store", str(made.store.path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("stage ") and "train" in line for line in lines)
    assert any(line.startswith("hist ") and "▁█" in line for line in lines)
    (huge,) = [line for line in lines if line.startswith("huge.bin")]
    assert "failed" in huge and "too large" in huge
    (binary,) = [line for line in lines if line.startswith("bin/every_byte.bin")]
    assert str(len(EVERY_BYTE)) in binary and "stored" in binary


def test_info_a_is_byte_exact_to_stdout_and_to_a_file(made: amltrack.Run, tmp_path: Path) -> None:
    store = made.store.path
    out = cli_bytes("history", "info", "-r", made.id, "-a", "bin/every_byte.bin", store=store)
    assert out.returncode == 0 and out.stdout == EVERY_BYTE and out.stderr == b""
    dest = tmp_path / "copy.bin"
    out = cli_bytes("history", "info", "-r", "last", "-a", "bin/every_byte.bin", "-o", str(dest), store=store)
    assert out.returncode == 0 and out.stdout == b"" and dest.read_bytes() == EVERY_BYTE
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".copy.bin")] == []


def test_info_a_on_the_sample_binary_artifact() -> None:
    run = amltrack.Store(SAMPLE).run("f6c16d03")
    out = cli_bytes("history", "info", "-r", "f6c16d03", "-a", "data/blob.bin", store=SAMPLE)
    assert out.returncode == 0 and out.stdout == run.read_artifact("data/blob.bin")
    entry = {a["path"]: a for a in run.artifacts()}["data/blob.bin"]
    assert (
        hashlib.sha256(out.stdout).hexdigest() == entry["sha256"] and len(out.stdout) == entry["size"] == 1024
    )


def test_info_a_errors_are_one_line(made: amltrack.Run, tmp_path: Path) -> None:
    store = str(made.store.path)
    one_line_error(cli("history", "info", "-r", "last", "-a", "nope.txt", "--store", store), "'nope.txt'")
    one_line_error(
        cli("history", "info", "-r", "last", "-a", "huge.bin", "--store", store),
        "'huge.bin'",
        "not stored",
        "too large",
    )
    for bad in ("../run.json", "/etc/passwd", "a\\b", "bin/../notes.txt"):
        one_line_error(cli("history", "info", "-r", "last", "-a", bad, "--store", store), repr(bad))
    one_line_error(cli("history", "info", "-r", "last", "-o", "x", "--store", store), "-o x", "-a")
    one_line_error(
        cli("history", "info", "-r", "last", "-a", "notes.txt", "--json", "--store", store), "--json"
    )
    one_line_error(
        cli(
            "history",
            "info",
            "-r",
            "last",
            "-a",
            "notes.txt",
            "-o",
            str(tmp_path / "no" / "f"),
            "--store",
            store,
        ),
        "does not exist",
    )
    one_line_error(
        cli("history", "info", "-r", "last", "-a", "notes.txt", "-o", str(tmp_path), "--store", store),
        "is a directory",
    )


def test_ambiguous_prefix_and_missing_run_are_one_line() -> None:
    one_line_error(cli("history", "info", "-r", "2026", "--store", str(SAMPLE)), "'2026'", "matches 5 runs")
    one_line_error(cli("metrics", "-r", "zzz", "--store", str(SAMPLE)), "'zzz'")
    one_line_error(
        cli("history", "promote", "-r", "zzz", "-ap", "x", "-n", "a", "--store", str(SAMPLE)), "'zzz'"
    )


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    long_curve = amltrack.Store(SAMPLE).runs(experiment="showcase")[0].id
    for args in (
        ("metrics", "-r", long_curve),
        ("metrics", "-r", long_curve, "-f", "jsonl"),
        ("history", "info", "-r", long_curve, "--json"),
        ("history", "list"),
        ("history", "info", "-r", "f6c16d03", "-a", "data/blob.bin"),
    ):
        r, w = os.pipe()
        os.close(r)  # the reader is gone before the first write
        try:
            out = subprocess.run(
                [sys.executable, "-m", "amltrack", *args, "--store", str(SAMPLE)],
                stdout=w,
                stderr=subprocess.PIPE,
                env=child_env(),
                timeout=60,
            )
        finally:
            os.close(w)
        assert out.returncode == 141 and out.stderr == b"", (args, out.stderr)


# ----------------------------------------------------------------- metrics


def test_metrics_csv_jsonl_and_json_are_the_full_series(made: amltrack.Run) -> None:
    store = str(made.store.path)
    loss = made.metric("loss")
    out = cli("metrics", "-r", "last", "loss", "hist", "--store", store)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["name", "step", "value", "timestamp"]
    assert len(rows) == 1 + len(loss) + 2
    assert rows[1] == ["loss", "0", "1.0", repr(loss.timestamps[0])]
    assert [float(r[2]) for r in rows[1:31]] == loss.values[:30]
    assert rows[31][2] == "NaN" and rows[32][2] == "[3,1,2]" and rows[33][2] == '[0.5,9.0,"Infinity"]'

    lines = [
        json.loads(x)
        for x in cli("metrics", "-r", "last", "--format", "jsonl", "--store", store).stdout.splitlines()
    ]
    assert len(lines) == sum(len(m) for m in made.metrics().values())
    assert lines[0] == {"name": "loss", "step": 0, "value": 1.0, "timestamp": loss.timestamps[0]}
    assert lines[30] == {
        "name": "loss",
        "step": 30,
        "value": "NaN",
        "timestamp": loss.timestamps[30],
        "nonfinite": True,
    }
    assert {x["name"] for x in lines} == {"loss", "hist", "stage", "done"}
    assert [x["value"] for x in lines if x["name"] == "stage"] == ["warmup", "train"]

    data = json.loads(
        cli("metrics", "-r", "last", "stage", "loss", "stage", "--json", "--store", store).stdout
    )
    assert data["run"] == made.id and list(data["metrics"]) == ["stage", "loss"]
    assert data["metrics"]["loss"]["steps"] == loss.steps
    assert (
        data["metrics"]["loss"]["values"][:30] == loss.values[:30]
        and data["metrics"]["loss"]["values"][30] == "NaN"
    )
    assert data["metrics"]["loss"]["timestamps"] == loss.timestamps
    assert data == json.loads(
        cli("metrics", "-r", "last", "stage", "loss", "-f", "json", "--store", store).stdout
    )


def test_metrics_on_the_sample_long_curve() -> None:
    run = [r for r in amltrack.Store(SAMPLE).runs() if r.name == "long-curve"][0]
    out = cli("metrics", "-r", run.id, "--store", str(SAMPLE))
    rows = list(csv.reader(io.StringIO(out.stdout)))[1:]
    assert len(rows) == 10_000 and [float(r[2]) for r in rows] == run.metric("loss").values


def test_metrics_errors(made: amltrack.Run) -> None:
    store = str(made.store.path)
    one_line_error(cli("metrics", "-r", "last", "loss", "nope", "--store", store), "'nope'")
    one_line_error(
        cli("metrics", "-r", "last", "--json", "--format", "csv", "--store", store), "--format csv"
    )
    assert cli("metrics", "-r", "last", "--format", "xml", "--store", store).returncode == 2


def test_help_does_not_load_the_library() -> None:
    # `amltrack --help` must stay fast (benchmarks/bench_cli.py): building the whole parser may not
    # import the reader, the writer or orjson, which the handlers import when a command runs.
    code = (
        "import sys; from amltrack.cli._main import build_parser; build_parser(); "
        "print(sorted(m for m in ('orjson', 'amltrack._store', 'amltrack._writer', 'amltrack._assets', "
        "'amltrack._logger', 'amltrack._format', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_parsers_statuses_are_the_stores() -> None:
    from amltrack import _format as fmt
    from amltrack.cli import _history

    assert _history.STATUSES == fmt.STATUSES


@pytest.mark.parametrize(
    "values",
    [
        [3, 1.5, 2**40, -4],  # ints and floats, all finite: the C fast path
        [1.0, float("nan"), -2.0, float("inf")],  # non-finite: min/max skip NaN, keep infinities
        [float("-inf"), float("nan")],
        [1e308, 1e308, -5.0],  # finite values whose sum overflows
        [1.0, True, 0.5],  # a bool among numbers: the general path
    ],
)
def test_info_min_max_and_sparkline_agree_with_the_read_api(store: Path, values: list) -> None:
    logger = amltrack.get_logger("mm", store=store, outputs=None)
    for v in values:
        logger.log("m", v)
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    d = json.loads(cli("history", "info", "-r", run.id, "--store", str(store), "--json").stdout)["metrics"][
        "m"
    ]
    assert {k: d[k] for k in ("count", "min", "max")} == json_safe(
        {k: run.summary()["m"][k] for k in ("count", "min", "max")}
    )
    finite = [v for v in values if type(v) in (int, float) and v - v == 0]
    assert len(d["sparkline"]) == len(finite)


def on_a_terminal(*args: str, **env: str) -> str:
    """The command's output as a terminal shows it (stdout is a pseudo-terminal)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "amltrack", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=child_env(**env),
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the command has exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    shown = on_a_terminal("history", "list", "--store", str(SAMPLE), COLUMNS="200")  # wide: every column
    assert "\x1b[32mcompleted\x1b[0m" in shown
    lines = shown.replace("\r", "").splitlines()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", lines[2])
    assert plain.index("2026-") == lines[0].index("STARTED")  # colour codes do not shift columns
    assert "\x1b[" not in on_a_terminal("history", "list", "--store", str(SAMPLE), NO_COLOR="1")
    assert "\x1b[" in on_a_terminal("history", "last", "--store", str(SAMPLE))
    assert "\x1b[" not in cli("history", "list", "--store", str(SAMPLE)).stdout
    assert "\x1b[" not in cli("history", "last", "--store", str(SAMPLE)).stdout


def test_library_warnings_are_one_line(store: Path) -> None:
    logger = amltrack.get_logger("w", store=store, outputs=None)
    logger.log("x", 1)
    logger.finish()
    with open(logger.run_dir / "metrics.jsonl", "ab") as f:
        f.write(b"this is not json\n")
    out = cli("history", "info", "-r", "last", "--store", str(store))
    assert out.returncode == 0
    warning = [line for line in out.stderr.splitlines() if line]
    assert len(warning) == 1 and warning[0].startswith("amltrack: warning: skipped 1"), out.stderr
    assert "UserWarning" not in out.stderr and ".py:" not in out.stderr


def test_history_list_shows_what_the_read_api_says(store: Path) -> None:
    a = amltrack.get_logger("exp-a", name="first", store=store, outputs=None)
    for i in range(5):
        a.log("loss", 1.0 / (i + 1))
    a.log("hist", [1, 2, 3])
    a.log("acc", 0.5)
    a.log("zeta", 9)  # the fourth name: not among the three shown
    a.finish()
    b = amltrack.get_logger("exp-b", store=store, outputs=None)
    b.log("loss", 2.0)
    b.finish(status="failed")
    rows = json.loads(cli("history", "list", "--store", str(store), "--json").stdout)
    runs = amltrack.Store(store).runs()
    assert [r["id"] for r in rows] == [r.id for r in runs] == [b.run_id, a.run_id]
    for row, run in zip(rows, runs):
        assert (row["experiment"], row["name"], row["status"], row["created"]) == (
            run.experiment,
            run.name,
            run.status,
            run.created,
        )
        assert row["duration_s"] == pytest.approx(run.duration()) and row["duration_s"] > 0
    assert rows[1]["metrics"] == 4 and rows[0]["metrics"] == 1
    assert rows[1]["last"] == {"acc": 0.5, "hist": 3, "loss": 0.2}
    assert rows[1]["kinds"] == {"acc": "number", "hist": "list", "loss": "number"}
    assert rows[1]["lengths"] == {"hist": 3}
    text = cli("history", "list", "--store", str(store)).stdout
    assert "acc=0.5, hist=[3 values], loss=0.2" in text and "zeta" not in text
    assert f"{b.run_id.split('-', 1)[1][:8]}  exp-b       -      failed" in text  # the short id


def test_a_crashed_runs_row_is_read_from_its_metrics_when_its_summary_is_behind(store: Path) -> None:
    logger = amltrack.get_logger("crash", store=store, outputs=None)
    logger.log("a", 1).wait()
    run_dir = logger.run_dir
    wait_until(lambda: (run_dir / "summary.json").exists(), what="the first summary.json")
    summary = json.loads((run_dir / "summary.json").read_text())
    for v in (2, 3):
        logger.log("a", v)
    logger.log("b", "text").wait()
    logger._writer.close()  # what a SIGKILL leaves: records on disk, summary.json not rewritten
    (run_dir / "summary.json").write_text(json.dumps(summary))
    info = json.loads((run_dir / "run.json").read_text())
    info["pid"], info["hostname"] = 2**22 + 7, info["hostname"]  # a process that is gone
    (run_dir / "run.json").write_text(json.dumps(info))
    os.utime(run_dir / "metrics.jsonl", (summary["heartbeat"] + 5, summary["heartbeat"] + 5))
    [row] = json.loads(cli("history", "list", "--store", str(store), "--json").stdout)
    assert row["status"] == "crashed"
    assert row["metrics"] == 2 and row["last"] == {"a": 3, "b": "text"}
    last_ts = amltrack.Store(store).run(run_dir.name).metric("b").timestamps[-1]
    assert row["duration_s"] == pytest.approx(max(last_ts, summary["heartbeat"]) - info["created_ts"])
