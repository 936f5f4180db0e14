"""Defects a new user hits first: get_logger() in a sweep, run names as RUN, the CLI's defaults,
usage errors, binary artifacts on a terminal, table widths, and the default steps of log()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import amltrack

from .conftest import child_env


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amltrack", *args],
        capture_output=True,
        text=True,
        env=env or child_env(),
        timeout=60,
    )


# ----------------------------------------------------------------- item 2: get_logger() in a sweep


def test_get_logger_in_a_sweep_loop_makes_one_run_per_call(store: Path) -> None:
    ids = []
    for i, lr in enumerate((0.1, 0.01, 0.001)):
        lg = amltrack.get_logger("sweep", name=f"lr={lr}", params={"lr": lr}, store=store, outputs=None)
        ids.append(lg.run_id)
        for step in range(3):
            lg.log("loss", lr * (i + 10) + step)
    lg.finish()
    assert len(set(ids)) == 3
    runs = {r.id: r for r in amltrack.Store(store).runs()}
    assert set(runs) == set(ids)
    for i, (rid, lr) in enumerate(zip(ids, (0.1, 0.01, 0.001))):
        run = runs[rid]
        assert run.status == "completed"
        assert run.name == f"lr={lr}" and run.info["params"] == {"lr": lr}
        assert run.metric("loss").values == [lr * (i + 10) + step for step in range(3)]


def test_get_logger_without_arguments_or_with_matching_ones_returns_the_open_run(store: Path) -> None:
    a = amltrack.get_logger("exp", name="one", params={"lr": 0.1}, tags={"t": "x"}, store=store, outputs=None)
    assert amltrack.get_logger() is a
    assert amltrack.get_logger() is a
    assert amltrack.get_logger("exp") is a
    assert amltrack.get_logger("exp", name="one", params={"lr": 0.1}, store=store) is a
    assert amltrack.get_logger(tags={"t": "x"}, run_id=a.run_id, outputs=None) is a
    assert not a.finished


def test_get_logger_with_another_run_id_finishes_the_open_run_and_joins(store: Path) -> None:
    with amltrack.start_run("other", store=store, outputs=None) as other:
        other_id = other.run_id
    a = amltrack.get_logger("exp", store=store, outputs=None)
    b = amltrack.get_logger(run_id=other_id, store=store, outputs=None)
    assert b is not a and b.run_id == other_id
    assert a.finished
    assert amltrack.Store(store).run(a.run_id).status == "completed"
    assert amltrack.get_logger() is b
    b.log("late", 1).wait()
    b.finish()
    assert amltrack.Store(store).run(other_id).metric("late").values == [1]


def test_get_logger_with_another_experiment_or_store_starts_a_new_run(tmp_path: Path, store: Path) -> None:
    a = amltrack.get_logger("exp", store=store, outputs=None)
    b = amltrack.get_logger("exp2", store=store, outputs=None)
    assert b is not a and a.finished
    c = amltrack.get_logger("exp2", store=tmp_path / "elsewhere", outputs=None)
    assert c is not b and b.finished and c.store == (tmp_path / "elsewhere").absolute()


def test_get_logger_with_bad_new_arguments_leaves_the_open_run_open(store: Path) -> None:
    a = amltrack.get_logger("exp", store=store, outputs=None)
    with pytest.raises(ValueError):
        amltrack.get_logger("bad\nname", store=store, outputs=None)
    assert not a.finished and amltrack.get_logger() is a


# ----------------------------------------------------------------- item 11: a run's name as RUN


def _named_runs(store: Path) -> dict[str, str]:
    ids = {}
    for name in ("lr=0.05", "lr=0.1", "twin", "twin"):
        with amltrack.start_run("names", name=name, store=store, outputs=None) as lg:
            lg.log("loss", 0.5)
        ids.setdefault(name, lg.run_id)
    return ids


def test_a_unique_run_name_is_accepted_as_run(store: Path) -> None:
    ids = _named_runs(store)
    assert amltrack.Store(store).run("lr=0.05").id == ids["lr=0.05"]
    out = cli("history", "info", "-r", "lr=0.05", "--store", str(store), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["id"] == ids["lr=0.05"]


def test_an_ambiguous_run_name_is_an_error_listing_short_ids(store: Path) -> None:
    _named_runs(store)
    twins = [r.id for r in amltrack.Store(store).runs() if r.name == "twin"]
    with pytest.raises(amltrack.AmbiguousRunError) as e:
        amltrack.Store(store).run("twin")
    assert sorted(e.value.matches) == sorted(twins)
    assert all(rid.split("-", 1)[1][:8] in str(e.value) for rid in twins)
    out = cli("history", "info", "-r", "twin", "--store", str(store))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "twin" in out.stderr, out.stderr


def test_ids_and_prefixes_take_precedence_over_names(store: Path) -> None:
    with amltrack.start_run("names", name="other", store=store, outputs=None) as first:
        pass
    short = first.run_id.split("-", 1)[1][:8]
    with amltrack.start_run("names", name=short, store=store, outputs=None) as second:
        pass
    with amltrack.start_run("names", name=first.run_id[:4], store=store, outputs=None):
        pass
    s = amltrack.Store(store)
    assert s.run(short).id == first.run_id  # the short id, not the run named so
    assert s.run(second.run_id).id == second.run_id
    with pytest.raises(amltrack.AmbiguousRunError):
        s.run(first.run_id[:4])  # a prefix of every id: never the run named so


# ----------------------------------------------------------------- item 12: metrics defaults to last


def test_metrics_without_run_reads_the_newest_run(store: Path) -> None:
    with amltrack.start_run("m", store=store, outputs=None) as old:
        old.log("loss", 9.0)
    with amltrack.start_run("m", store=store, outputs=None) as new:
        new.log("loss", 1.5)
    out = cli("metrics", "loss", "--json", "--store", str(store))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run"] == new.run_id and doc["metrics"]["loss"]["values"] == [1.5]


# ----------------------------------------------------------------- item 13: a subcommand's own usage


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["history", "list", "--bogus"], "usage: amltrack history list "),
        (["metrics", "--nope"], "usage: amltrack metrics "),
        (["remote", "list", "-x"], "usage: amltrack remote list "),
        (["--bogus"], "usage: amltrack [-h]"),
    ],
)
def test_an_unknown_option_prints_its_subcommands_usage(argv: list[str], usage: str) -> None:
    out = cli(*argv)
    assert out.returncode == 2, out
    assert out.stderr.startswith(usage), out.stderr
    prog = usage.removeprefix("usage: ").removesuffix(" [-h]").strip()
    assert f"{prog}: error: unrecognized arguments: {argv[-1]}" in out.stderr, out.stderr
    assert out.stdout == ""


# ----------------------------------------------------------------- item 5: binary bytes and a terminal


def cli_on_tty(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    """Run the CLI with a pseudo-terminal as its stdout: the exit code, what reached the terminal, stderr."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amltrack", *args],
            stdout=slave,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env or child_env(),
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:  # read until the child's end of the terminal is closed (EIO on Linux)
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        err = proc.stderr.read().decode()
        proc.stderr.close()
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return code, b"".join(chunks), err


BINARY = b"PK\x03\x04\x00\x00\xff\xfe binary model bytes \x00\x01\x02"


def _artifact_run(store: Path) -> str:
    with amltrack.start_run("a", store=store, outputs=None) as lg:
        lg.upload("outputs/model.npz", BINARY).wait()
        lg.upload("notes.txt", "héllo, plain text\n").wait()
    return lg.run_id


def test_a_binary_artifact_is_not_written_to_a_terminal(store: Path) -> None:
    _artifact_run(store)
    code, shown, err = cli_on_tty(
        "history", "info", "-r", "last", "-a", "outputs/model.npz", "--store", str(store)
    )
    assert code == 1, (code, shown, err)
    assert b"\x00" not in shown and b"binary model" not in shown
    assert err.startswith("amltrack: ") and err.count("\n") == 1 and "-o FILE" in err and "-o -" in err, err


def test_text_artifacts_and_forced_or_piped_binary_still_print(store: Path) -> None:
    _artifact_run(store)
    code, shown, err = cli_on_tty("history", "info", "-r", "last", "-a", "notes.txt", "--store", str(store))
    assert code == 0 and "héllo, plain text".encode() in shown, (code, shown, err)
    code, shown, err = cli_on_tty(
        "history", "info", "-r", "last", "-a", "outputs/model.npz", "-o", "-", "--store", str(store)
    )
    assert code == 0 and b"binary model bytes" in shown, (code, shown, err)
    piped = subprocess.run(
        [
            sys.executable,
            "-m",
            "amltrack",
            "history",
            "info",
            "-r",
            "last",
            "-a",
            "outputs/model.npz",
            "--store",
            str(store),
        ],
        capture_output=True,
        env=child_env(),
        timeout=60,
    )
    assert piped.returncode == 0 and piped.stdout == BINARY, piped.stderr


# ----------------------------------------------------------------- item 10: tables fit the terminal


def _wide_store(store: Path) -> list[str]:
    ids = []
    for i in range(2):
        with amltrack.start_run(
            "an-experiment-with-a-long-name",
            name=f"a rather long run name number {i}",
            params={"lr": 0.1},
            store=store,
            outputs=None,
        ) as lg:
            for name in ("validation/accuracy_top_5", "validation/cross_entropy_loss", "zz" * 30):
                lg.log(name, 0.123456789 * (i + 1))
            lg.log("per-class recall", [0.5] * 10)
            lg.upload("outputs/checkpoints/" + "deep/" * 12 + "weights.bin", b"\x00" * 10).wait()
        ids.append(lg.run_id)
    return ids


def _short(run_id: str) -> str:
    return run_id.split("-", 1)[1][:8]


def _assert_fits(text: str, width: int) -> None:
    assert text.strip(), text
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, "\n".join(too_wide)


def test_tables_fit_columns_and_show_short_ids(store: Path, tmp_path: Path) -> None:
    ids = _wide_store(store)
    env = child_env(COLUMNS="80", AMLTRACK_CONFIG_DIR=str(tmp_path / "config"))
    listed = cli("history", "list", "--store", str(store), env=env)
    assert listed.returncode == 0, listed.stderr
    _assert_fits(listed.stdout, 80)
    for rid in ids:
        assert _short(rid) in listed.stdout and rid not in listed.stdout
    info = cli("history", "info", "-r", _short(ids[0]), "--store", str(store), env=env)
    assert info.returncode == 0, info.stderr
    assert info.stdout.splitlines()[0] == f"run         {ids[0]}"  # info shows the full id
    _assert_fits("\n".join(info.stdout.splitlines()[1:]), 80)
    ref = cli(
        "history",
        "promote",
        "-r",
        _short(ids[0]),
        "-ap",
        "outputs",
        "-n",
        "a-long-asset-name-for-a-model",
        "--store",
        str(store),
        env=env,
    ).stdout.strip()
    assets = cli("asset", "list", "--store", str(store), env=env).stdout
    _assert_fits(assets, 80)
    assert _short(ids[0]) in assets and ids[0] not in assets
    shown = cli("asset", "show", ref, "--store", str(store), env=env).stdout
    _assert_fits(shown.split("\n\n", 1)[1], 80)  # the files table; the header shows paths whole
    url = "https://tracking.example.com/" + "a-very-long-path/" * 6
    assert cli("remote", "add", "a-team-server-name", url, env=env).returncode == 0
    _assert_fits(cli("remote", "list", env=env).stdout, 80)
    rows = json.loads(cli("history", "list", "--json", "--store", str(store), env=env).stdout)
    assert sorted(r["id"] for r in rows) == sorted(ids)  # --json keeps the full ids
    wide = cli("history", "list", "--store", str(store), env=child_env(COLUMNS="250")).stdout
    assert "STARTED" in wide and "METRICS" in wide  # nothing dropped when there is room


def test_a_short_id_is_accepted_as_run(store: Path) -> None:
    ids = _wide_store(store)
    assert amltrack.Store(store).run(_short(ids[1])).id == ids[1]


def test_tables_fit_the_terminal_without_columns(store: Path) -> None:
    import fcntl
    import struct
    import termios

    _wide_store(store)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 70, 0, 0))
    env = {k: v for k, v in child_env().items() if k not in ("COLUMNS", "LINES")}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amltrack", "history", "list", "--store", str(store)],
            stdout=slave,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    import re

    shown = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode().replace("\r", ""))
    _assert_fits(shown, 70)
    assert "ID" in shown and "STATUS" in shown


# ----------------------------------------------------------------- item 8: default steps are per name

ROOT = Path(__file__).resolve().parent.parent


def test_default_steps_count_per_name(logger: amltrack.Logger) -> None:
    for step in range(6):
        if step % 2 == 0:
            logger.log("loss", float(step))
        logger.log_metrics({"acc": 0.5, "lr": 0.1})
    logger.log("aligned", 1.0, step=4)
    logger.log("aligned", 2.0)
    logger.finish()
    run = amltrack.Store(logger.store).run(logger.run_id)
    assert run.metric("loss").steps == [0, 1, 2]  # its own calls, not the loop's steps
    assert run.metric("acc").steps == [0, 1, 2, 3, 4, 5]
    assert run.metric("aligned").steps == [4, 5]  # an explicit step, and the counter goes on from it


def test_the_per_name_step_rule_and_its_fix_are_documented() -> None:
    doc = " ".join(amltrack.Logger.log.__doc__.split())
    assert "Each name counts only its own calls" in doc and "pass ``step=``" in doc
    fmt_doc = (ROOT / "docs" / "format.md").read_text()
    assert "Each name counts its own calls" in fmt_doc and "pass `step=`" in fmt_doc
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("logger = get_logger(") : readme.index("logger.log_metrics(")]
    assert "steps count per name" in tour and "step=" in tour


def test_a_long_sync_reason_wraps_under_itself() -> None:
    from amltrack.cli._output import hanging

    head = "FAILED      20261206T101010123-0123456789abcdef  completed  "
    reason = "http://server:8765 refused the request (401 unauthorized): it needs a token; set AMLTRACK_TOKEN"
    text = hanging(head, reason, 80)
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines)
    assert " ".join(line.strip() for line in lines) == (head + reason).strip()
    assert hanging(head, reason, None) == head + reason  # a pipe: one line
