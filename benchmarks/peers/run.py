"""amltrack against MLflow, W&B offline, tensorboardX, DVCLive, Aim and trackio, side by side in one run.

    python benchmarks/peers/run.py                         # install the peers, run, print the table
    python benchmarks/peers/run.py --write-docs            # ... and write docs/benchmarks.md and its chart
    python benchmarks/peers/run.py --peers amltrack,tensorboardx --repeat 5
    python benchmarks/peers/run.py --smoke                 # tiny sizes: amltrack plus peers already installed
    python benchmarks/peers/run.py --peers amltrack,tensorboardx,wandb,mlflow --workloads images

Each peer gets its own virtual environment under --venvs (installed by package name on first use,
reused afterwards; amltrack is installed there from this checkout on every run). A peer that will
not install or import is skipped with a one-line reason. Every measurement is a fresh process
started by this script: workloads.py, run by the peer's interpreter, in an empty directory.

  lat    N scalar log calls, each timed in-process: median and p99
  train  10 metrics per step: whole-process wall and CPU time (os.wait4, helper processes
         included), peak resident memory, and the bytes the run left on disk
  read   the "loss" series read back by the tool's own reader in a fresh process: only the
         read call is timed
  images 1,000 images of 256 x 256 RGB uint8, each call timed in-process (median, p99), then the
         tool's close: whole-process wall and CPU until every image is durable, peak memory, bytes

Repeats are interleaved (every tool once, then every tool again) and the median is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORKLOADS = HERE / "workloads.py"
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks-peers.svg"
HEADING = "## Peers: `python benchmarks/peers/run.py`"
BEGIN, END = "<!-- peers:begin (written by benchmarks/peers/run.py) -->", "<!-- peers:end -->"
DEFAULT_VENVS = Path.home() / ".cache" / "amltrack-bench" / "venvs"
FULL_POINTS = 100_000  # the size every figure is stated for
FULL_STEPS = 10_000
SMOKE_POINTS, SMOKE_STEPS = 300, 30
FULL_IMAGES, IMAGE_SIDE = 1000, 256  # the images workload: 1,000 images of 256 x 256 x 3 uint8
SMOKE_IMAGES, SMOKE_SIDE = 20, 32
WORKLOAD_NAMES = ("lat", "train", "read", "images")


@dataclass
class Variant:
    """One way of using one tool: an adapter in workloads.py, with its sizes for the full run."""

    adapter: str
    short: str  # the chart's label
    label: str  # the table's
    train_call: str
    lat_n: int = FULL_POINTS
    steps: int = FULL_STEPS
    reader: str | None = "lat"  # "lat": read the lat run's series; "own": write one with write_series
    no_reader: str = ""  # why there is no read figure
    train_budget: float | None = None  # seconds, if less than --budget
    image_call: str = ""  # the tool's image call, for the images workload; "" runs none


@dataclass
class Peer:
    name: str
    packages: list[str]
    variants: list[Variant] = field(default_factory=list)


PEERS = {
    p.name: p
    for p in [
        Peer(
            "amltrack",
            ["<this checkout>[media]", "numpy"],
            [
                Variant(
                    "amltrack",
                    "amltrack",
                    "amltrack `log()`",
                    "`log_metrics(dict, step=)`",
                    image_call="`log_image(name, array, step=)`",
                )
            ],
        ),
        Peer(
            "mlflow",
            ["mlflow", "Pillow"],
            [
                Variant(
                    "mlflow",
                    "MLflow",
                    "MLflow `log_metric`, SQLite (its default)",
                    "`log_metrics(dict, step=)`",
                    lat_n=2_000,
                    steps=1_000,
                    reader="own",
                    image_call="`mlflow.log_image(array, key=, step=)` (asynchronous by default)",
                ),
                Variant(
                    "mlflow-async",
                    "MLflow async",
                    "MLflow `log_metric(synchronous=False)`, SQLite",
                    "`log_metrics(dict, step=, synchronous=False)`",
                    lat_n=2_000,
                    steps=1_000,
                    reader=None,
                    no_reader="same store and reader as MLflow above",
                ),
            ],
        ),
        Peer(
            "wandb",
            ["wandb", "numpy", "Pillow"],
            [
                Variant(
                    "wandb",
                    "W&B offline",
                    "W&B offline `run.log`",
                    "`run.log(dict, step=)`",
                    reader=None,
                    no_reader="wandb has no reader for offline runs: `wandb sync` uploads them to a server",
                    image_call="`run.log({name: wandb.Image(array)}, step=)`",
                )
            ],
        ),
        Peer(
            "tensorboardx",
            ["tensorboardX", "tensorboard", "crc32c", "Pillow"],
            [
                Variant(
                    "tensorboardx",
                    "tensorboardX",
                    "tensorboardX `add_scalar` (+ crc32c)",
                    "10 x `add_scalar`",
                    image_call='`add_image(name, array, step, dataformats="HWC")`',
                )
            ],
        ),
        Peer(
            "dvclive",
            ["dvclive"],
            [
                # next_step() re-reads every TSV file it wrote (to post to DVC Studio, even when Studio is not
                # configured): the steps get slower as the run grows, and 10k steps take over half an hour.
                Variant(
                    "dvclive",
                    "DVCLive",
                    "DVCLive `log_metric`",
                    "10 x `log_metric`, `next_step()`",
                    train_budget=300,
                )
            ],
        ),
        Peer("aim", ["aim"], [Variant("aim", "Aim", "Aim `run.track`", "`run.track(dict, step=)`")]),
        Peer(
            "trackio",
            ["trackio"],
            [Variant("trackio", "trackio", "trackio `log`", "`trackio.log(dict, step=)`")],
        ),
    ]
}

# Children must not phone home or prompt: no network here, and a timeout would be measured.
QUIET_ENV = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- installing


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return (lines[-1] if lines else "no output")[:200]


def _pip(py: Path, args: list[str], logfile: Path, timeout: float) -> str | None:
    """Run pip; None if it worked, else the one-line reason."""
    with open(logfile, "a") as f:
        try:
            rc = subprocess.run(
                [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            return f"pip install did not finish in {timeout:.0f} s"
    return None if rc == 0 else f"pip install failed: {_last_line(logfile.read_text())}"


def _amltrack_source(tmp: Path) -> Path:
    # Build from a copy, so that pip's in-tree build leaves nothing behind in the checkout.
    src = tmp / "amltrack-src"
    shutil.copytree(ROOT / "amltrack", src / "amltrack", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    return src


def ensure_venv(peer: Peer, venvs: Path, smoke: bool, tmp: Path) -> tuple[Path | None, str]:
    """The peer's interpreter, installing it if needed; (None, reason) if the peer is skipped."""
    venv = venvs / peer.name
    py = venv / "bin" / "python"
    marker = venv / "amltrack-bench.json"
    ready = marker.exists() and json.loads(marker.read_text()).get("packages") == peer.packages
    if peer.name == "amltrack":
        if smoke:
            return Path(sys.executable), ""  # the current interpreter: CI needs no venv
    elif ready:
        return py, ""
    elif smoke:
        return None, f"no venv in {venvs} (--smoke installs nothing)"
    if not ready:
        log(f"installing {peer.name} into {venv} ...")
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"cannot create a venv: {_last_line(r.stderr)}"
    logfile = venv / "install.log"
    if peer.name == "amltrack":
        src = str(_amltrack_source(tmp))
        # Dependencies first (a no-op once there), then this checkout's code, replacing the last one.
        # The media extra (Pillow) and numpy are for the images workload, as the peers' venvs have them.
        reason = _pip(py, [f"{src}[media]", "numpy"], logfile, 900) or _pip(
            py, ["--no-deps", "--force-reinstall", src], logfile, 900
        )
    else:
        reason = _pip(py, peer.packages, logfile, 1800)
    if reason:
        shutil.rmtree(venv, ignore_errors=True)  # not reused half-installed
        return None, reason
    marker.write_text(json.dumps({"packages": peer.packages}))
    return py, ""


# ----------------------------------------------------------------- measuring one process


def _set_subreaper() -> bool:
    """Become the parent of orphaned descendants (wandb's helpers), so their CPU time can be counted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    return out


def _tree(root: int) -> list[int]:
    seen, todo = [], [root]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return "?"


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _du(path: Path) -> int:
    """``du -sb``: apparent sizes of every file and directory, hard links counted once."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [".", *dirnames, *filenames]:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


_running: set[int] = set()  # process groups of the workloads running now, ended if this script is stopped


def _end_running(signum: int = 0, frame: object = None) -> None:
    for pgid in list(_running):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    if signum:
        raise SystemExit(128 + signum)


@dataclass
class Child:
    ok: bool
    result: dict
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_mib: float = 0.0
    helpers: list[str] = field(default_factory=list)
    helper_cpu_s: float = 0.0
    reason: str = ""


def run_child(
    py: Path, argv: list[str], cwd: Path, env: dict[str, str], budget: float, logs: Path | None = None
) -> Child:
    """Run one workload process and measure it from outside.

    Wall: start to exit of the process. CPU: user+sys of the process and of every descendant, from
    os.wait4 (descendants the process waited for are in its own figure; helpers it left running are
    reaped here as their subreaper and added). Peak memory: the larger of the process's ru_maxrss and
    the sampled sum of resident memory of its whole tree (helpers included).
    """
    logs = logs or cwd
    out_path, err_path = logs.with_suffix(".out"), logs.with_suffix(".err")
    progress = logs.with_suffix(".progress")
    env = {**env, "BENCH_PROGRESS_FILE": str(progress)}
    me = os.getpid()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            [str(py), str(WORKLOADS), *argv],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _running.add(p.pid)
    timed_out = threading.Event()
    done = threading.Event()
    peak = [0]
    comms: set[str] = set()

    def watch() -> None:
        # Resident memory of the process plus its helper processes: other programs it started that
        # live for two samples or more (wandb-core). A fork of the process itself, or a short-lived
        # command (git), is not added: its pages are the parent's or too few to matter.
        deadline = time.monotonic() + budget
        exe = _exe(p.pid)
        seen: dict[int, int] = {}
        while not done.wait(0.05):
            total = _rss_kib(p.pid)
            for q in _tree(p.pid)[1:]:
                comms.add(_comm(q))
                if _exe(q) != exe:
                    seen[q] = seen.get(q, 0) + 1
                    if seen[q] >= 2:
                        total += _rss_kib(q)
            peak[0] = max(peak[0], total)
            if time.monotonic() > deadline:
                timed_out.set()
                with contextlib.suppress(OSError):
                    os.killpg(p.pid, signal.SIGKILL)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    watcher.join()
    # Helpers still running (reparented to this process, or still in the process group): give them
    # a few seconds to finish on their own, then end them; their CPU time counts.
    helper_cpu = 0.0
    deadline = time.monotonic() + 10
    while True:
        left = [q for q in _children(me)]
        for q in left:
            with contextlib.suppress(ChildProcessError):
                pid, st, hru = os.wait4(q, os.WNOHANG)
                if pid:
                    helper_cpu += hru.ru_utime + hru.ru_stime
                    comms.add(f"{_comm(q)}")
        left = [q for q in _children(me) if os.path.exists(f"/proc/{q}")]
        if not left:
            break
        if time.monotonic() > deadline:
            for q in left:
                with contextlib.suppress(OSError):
                    os.kill(q, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        os.killpg(p.pid, signal.SIGKILL)  # nothing of it outlives its measurement
    _running.discard(p.pid)
    child = Child(
        ok=False,
        result={},
        wall_s=wall,
        cpu_s=ru.ru_utime + ru.ru_stime + helper_cpu,
        rss_mib=max(ru.ru_maxrss, peak[0]) / 1024,
        helper_cpu_s=helper_cpu,
        helpers=sorted(c for c in comms if c not in ("?", "python", "python3")),
    )
    stdout = out_path.read_text(errors="replace").strip().splitlines()
    if timed_out.is_set():
        done_n = progress.read_text().strip() if progress.exists() else ""
        child.reason = f"timed out after {budget:.0f} s" + (f", {int(done_n):,} done" if done_n else "")
        child.result = {"timed_out": True, "budget_s": budget}
    elif p.returncode != 0:
        child.reason = f"exit {p.returncode}: {_last_line(err_path.read_text(errors='replace'))}"
    else:
        try:
            child.result = json.loads(stdout[-1])
            child.ok = True
        except (IndexError, json.JSONDecodeError):
            child.reason = f"no result: {_last_line(err_path.read_text(errors='replace'))}"
    return child


# ----------------------------------------------------------------- the run


def child_env(home: Path, cwd: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AMLTRACK_", "MLFLOW_", "WANDB_", "TRACKIO_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(QUIET_ENV)
    env.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "HF_HOME": str(home / ".cache" / "huggingface"),
            "TRACKIO_DIR": str(cwd),
        }
    )
    return env


def sizes(v: Variant, smoke: bool) -> tuple[int, int, int]:
    """(log calls, training steps, points read back)."""
    if smoke:
        return SMOKE_POINTS, SMOKE_STEPS, SMOKE_POINTS
    return v.lat_n, v.steps, FULL_POINTS if v.reader == "own" else v.lat_n


def image_sizes(smoke: bool) -> tuple[int, int]:
    """(images, side) of the images workload."""
    return (SMOKE_IMAGES, SMOKE_SIDE) if smoke else (FULL_IMAGES, IMAGE_SIDE)


def run(
    names: list[str],
    venvs: Path,
    repeat: int,
    smoke: bool,
    budget: float,
    work: Path,
    workloads: tuple[str, ...] = WORKLOAD_NAMES,
) -> dict:
    subreaper = _set_subreaper()
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "repeat": repeat,
        "smoke": smoke,
        "loadavg_start": os.getloadavg(),
        "workloads": list(workloads),
        "cpu_attribution": "subreaper" if subreaper else "direct child only",
    }
    variants: dict[str, dict] = {}
    active: list[tuple[Variant, Path]] = []
    for name in names:
        peer = PEERS[name]
        py, reason = ensure_venv(peer, venvs, smoke, work)
        for v in peer.variants:
            lat_n, steps, read_n = sizes(v, smoke)
            rec = variants[v.adapter] = {
                "peer": name,
                "short": v.short,
                "label": v.label,
                "train_call": v.train_call,
                "lat_n": lat_n,
                "steps": steps,
                "read_n": read_n,
                "no_reader": v.no_reader,
                "image_call": v.image_call,
                "images_n": image_sizes(smoke)[0],
                "lat": [],
                "train": [],
                "read": [],
                "images": [],
            }
            if py is None:
                rec["skipped"] = reason
                log(f"{v.adapter}: skipped: {reason}")
                continue
            d = work / v.adapter
            d.mkdir()
            chk = run_child(
                py,
                [v.adapter, "check", str(d / "check"), "0"],
                _mk(d / "check"),
                child_env(_mk(d / "home"), d / "check"),
                budget,
            )
            if not chk.ok:
                rec["skipped"] = f"does not import: {chk.reason}"
                log(f"{v.adapter}: skipped: {rec['skipped']}")
                continue
            rec["versions"] = chk.result["versions"]
            active.append((v, py))
    series: dict[str, tuple[Path, str] | None] = {}
    for r in range(repeat):
        for mode in [m for m in WORKLOAD_NAMES if m in workloads]:
            for v, py in active:
                rec = variants[v.adapter]
                lat_n, steps, read_n = sizes(v, smoke)
                d = work / v.adapter
                home = d / "home"
                if mode == "images":
                    if not v.image_call:
                        continue
                    n, side = image_sizes(smoke)
                    cwd = _mk(d / f"images-{r}")
                    c = run_child(
                        py,
                        [v.adapter, "images", str(cwd), str(n), str(side)],
                        cwd,
                        child_env(home, cwd),
                        budget,
                    )
                    fig = _figures(c, n)
                    if c.ok:
                        fig["bytes"] = _du(cwd)
                    rec["images"].append(fig)
                elif mode == "read":
                    if v.reader is None:
                        continue
                    if v.adapter not in series:
                        series[v.adapter] = _series(v, py, d, home, read_n, budget, rec)
                    if series[v.adapter] is None:
                        continue
                    src, ref = series[v.adapter]
                    # The reader runs in the run's directory, where the tool's defaults point.
                    c = run_child(
                        py,
                        [v.adapter, "read", str(src), str(read_n), ref],
                        src,
                        child_env(home, src),
                        budget,
                        logs=d / f"read-{r}",
                    )
                    rec["read"].append(_figures(c, read_n))
                else:
                    n = lat_n if mode == "lat" else steps
                    if any(f.get("timed_out") for f in rec[mode]):
                        continue  # once is enough: it would only time out again
                    limit = min(budget, v.train_budget or budget) if mode == "train" else budget
                    cwd = _mk(d / f"{mode}-{r}")
                    c = run_child(py, [v.adapter, mode, str(cwd), str(n)], cwd, child_env(home, cwd), limit)
                    fig = _figures(c, n)
                    if c.ok:
                        fig["bytes"] = _du(cwd)
                        fig["ref"] = c.result.get("ref")
                        fig["dir"] = str(cwd)
                    rec[mode].append(fig)
                status = "ok" if c.ok else c.reason
                log(
                    f"[{r + 1}/{repeat}] {mode:5} {v.adapter:13} n={rec[mode][-1]['n']}: "
                    f"{c.wall_s:.2f} s wall, {c.cpu_s:.2f} s CPU, {c.rss_mib:.0f} MiB ({status})"
                )
    meta["loadavg_end"] = os.getloadavg()
    meta["points"], meta["steps"] = (SMOKE_POINTS, SMOKE_STEPS) if smoke else (FULL_POINTS, FULL_STEPS)
    meta["images"], meta["image_side"] = image_sizes(smoke)
    return {"meta": meta, "variants": variants, "summary": summarize(variants, meta["points"], meta["steps"])}


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _figures(c: Child, n: int) -> dict:
    if not c.ok:
        fig = {"ok": False, "reason": c.reason, "n": n}
        if c.result.get("timed_out"):  # its time is a lower bound
            fig.update(timed_out=True, wall_s=c.wall_s, cpu_s=c.cpu_s)
        return fig
    return {
        "ok": True,
        "n": n,
        "wall_s": c.wall_s,
        "cpu_s": c.cpu_s,
        "rss_mib": c.rss_mib,
        "helpers": c.helpers,
        "helper_cpu_s": c.helper_cpu_s,
        **c.result,
    }


def _series(
    v: Variant, py: Path, d: Path, home: Path, n: int, budget: float, rec: dict
) -> tuple[Path, str] | None:
    """The directory and reference of an n-point "loss" series for the reader."""
    if v.reader == "lat":
        first = next((f for f in rec["lat"] if f["ok"]), None)
        if first is None:
            rec["read"].append({"ok": False, "reason": "no series to read: the log run failed", "n": n})
            return None
        return Path(first["dir"]), first["ref"]
    cwd = _mk(d / "series")
    c = run_child(py, [v.adapter, "series", str(cwd), str(n)], cwd, child_env(home, cwd), budget)
    rec["series"] = _figures(c, n)
    if not c.ok:
        rec["read"].append({"ok": False, "reason": f"writing the series failed: {c.reason}", "n": n})
        return None
    return cwd, c.result["ref"]


# ----------------------------------------------------------------- figures


#: (key, label, unit, format) of each figure in the table, in order.
FIGURES = [
    ("median_us", "`log()` median", "µs", "{:,.1f}"),
    ("p99_us", "`log()` p99", "µs", "{:,.1f}"),
    ("train_wall_s", "training loop: wall", "s", "{:,.2f}"),
    ("train_cpu_s", "training loop: CPU", "s", "{:,.2f}"),
    ("rss_mib", "peak memory", "MiB", "{:,.0f}"),
    ("bytes_per_point", "bytes on disk per point", "B", "{:,.0f}"),
    ("read_s", "reading the series back", "s", "{:,.3f}"),
]


#: The images workload's figures, as FIGURES: the summary's keys, each with its ratio to amltrack.
IMAGE_FIGURES = [
    ("image_median_us", "caller median", "µs", "{:,.1f}"),
    ("image_p99_us", "caller p99", "µs", "{:,.1f}"),
    ("images_wall_s", "durable: process wall", "s", "{:,.2f}"),
    ("images_inproc_s", "first call to close() returned", "s", "{:,.2f}"),
    ("images_cpu_s", "CPU", "s", "{:,.2f}"),
    ("images_rss_mib", "peak memory", "MiB", "{:,.0f}"),
    ("image_bytes", "bytes on disk per image", "kB", "{:,.1f}"),
]


def _spread(vals: list[float]) -> dict:
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "runs": len(vals)}


def summarize(variants: dict, points: int, steps: int) -> dict:
    """Median (and spread) of each figure per variant, scaled to the stated sizes, and the ratio to amltrack.

    A slow peer run at a smaller size is scaled to full size so that rows compare: the training loop's
    steps and close are scaled linearly (import and start-up stay as measured), the read time per point.
    """
    out: dict[str, dict] = {}
    for name, rec in variants.items():
        if "skipped" in rec:
            continue
        s: dict[str, dict] = {}
        lat = [f for f in rec["lat"] if f["ok"]]
        if lat:
            s["median_us"] = _spread([f["median_us"] for f in lat])
            s["p99_us"] = _spread([f["p99_us"] for f in lat])
            s["loop_us"] = _spread([f["loop_s"] / f["n"] * 1e6 for f in lat])
        train = [f for f in rec["train"] if f["ok"]]
        late = [f for f in rec["train"] if f.get("timed_out")]
        if not train and late:
            s["train_wall_s"] = {**_spread([f["wall_s"] for f in late]), "lower_bound": True}
            s["train_cpu_s"] = {**_spread([f["cpu_s"] for f in late]), "lower_bound": True}
        if train:
            k = steps / rec["steps"]
            s["train_wall_s"] = _spread([f["wall_s"] + (f["loop_s"] + f["close_s"]) * (k - 1) for f in train])
            s["train_cpu_s"] = _spread(
                [f["cpu_s"] + (f["loop_cpu_s"] + f["close_cpu_s"]) * (k - 1) for f in train]
            )
            s["train_wall_s"]["scaled"] = s["train_cpu_s"]["scaled"] = k != 1
            s["train_wall_measured_s"] = _spread([f["wall_s"] for f in train])
            s["rss_mib"] = _spread([f["rss_mib"] for f in train])
            s["bytes_per_point"] = _spread([f["bytes"] / (f["n"] * 10) for f in train])
            for phase in ("import_s", "init_s", "loop_s", "close_s"):
                s[phase] = _spread([f[phase] for f in train])
        read = [f for f in rec["read"] if f["ok"]]
        if read:
            s["read_s"] = _spread([f["read_s"] * points / f["n"] for f in read])
            s["read_s"]["scaled"] = read[0]["n"] != points
        for key in ("median_us", "p99_us"):
            if key in s:
                s[key]["scaled"] = False
        images = [f for f in rec.get("images", []) if f["ok"]]
        if images:
            s["image_median_us"] = _spread([f["median_us"] for f in images])
            s["image_p99_us"] = _spread([f["p99_us"] for f in images])
            s["images_wall_s"] = _spread([f["wall_s"] for f in images])
            s["images_inproc_s"] = _spread([f["loop_s"] + f["close_s"] for f in images])
            s["images_cpu_s"] = _spread([f["cpu_s"] for f in images])
            s["images_rss_mib"] = _spread([f["rss_mib"] for f in images])
            s["image_bytes"] = _spread([f["bytes"] / f["n"] / 1000 for f in images])
            for phase in ("import_s", "init_s", "loop_s", "close_s"):
                s[f"images_{phase}"] = _spread([f[phase] for f in images])
        out[name] = s
    base = out.get("amltrack", {})
    for s in out.values():
        for key, _, _, _ in FIGURES + IMAGE_FIGURES:
            if key in s and key in base and base[key]["median"] > 0 and not base[key].get("lower_bound"):
                s[key]["ratio"] = s[key]["median"] / base[key]["median"]
    return out


def _n(x: int) -> str:
    return f"{x // 1000:,}k" if x >= 1000 and x % 1000 == 0 else f"{x:,}"


def _ratio(r: float) -> str:
    return f"{r:,.0f}×" if r >= 10 else f"{r:.1f}×"


MODES = {"lat": "log calls", "train": "training loop", "read": "read-back"}


def _mode(key: str) -> str:
    return {"median_us": "lat", "p99_us": "lat", "read_s": "read"}.get(key, "train")


def _why_missing(rec: dict, mode: str) -> str:
    if mode == "read" and rec["no_reader"]:
        return rec["no_reader"]
    bad = [f for f in rec[mode] if not f["ok"]]
    if bad:
        if bad[0].get("timed_out"):
            return f"{bad[0]['reason']} of N={bad[0]['n']:,}, then not run again"
        return f"{bad[0]['reason']} at N={bad[0]['n']:,}"
    return "not run"


def table(results: dict) -> str:
    """The main table: each figure's median at the stated size, and the ratio peer / amltrack."""
    variants, summary = results["variants"], results["summary"]
    head = " | ".join(f"{label}, {unit}" for _, label, unit, _ in FIGURES)
    lines = [f"| tool | {head} | N: calls / steps / points read |", "|---|" + "---:|" * len(FIGURES) + "---|"]
    notes: list[str] = []
    for name, rec in variants.items():
        if "skipped" in rec:
            lines.append(f"| {rec['label']} |" + " – |" * len(FIGURES) + f" skipped: {rec['skipped']} |")
            continue
        s = summary.get(name, {})
        cells = []
        for key, _, _, fmt in FIGURES:
            mode = _mode(key)
            f = s.get(key)
            if f is None or f.get("lower_bound"):
                why = _why_missing(rec, mode)
                if why != "not run":
                    notes.append(f"{rec['label']}, {MODES[mode]}: {why}.")
                if f is None:
                    timed_out = any(g.get("timed_out") for g in rec[mode])
                    cells.append(
                        "n/a"
                        if why == rec["no_reader"]
                        else "timed out"
                        if timed_out
                        else "–"
                        if why == "not run"
                        else "failed"
                    )
                    continue
            bound = "> " if f.get("lower_bound") else ""
            text = bound + ("≈" if f.get("scaled") else "") + fmt.format(f["median"])
            if name == "amltrack":
                text = f"**{text}**"
            elif "ratio" in f:
                text += f" ({bound}{_ratio(f['ratio'])})"
            cells.append(text)
        read = _n(rec["read_n"]) if "read_s" in s else "–"
        lines.append(
            f"| {rec['label']} | "
            + " | ".join(cells)
            + f" | {_n(rec['lat_n'])} / {_n(rec['steps'])} / {read} |"
        )
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(f"- {n}" for n in dict.fromkeys(notes))
    return out


def details(results: dict) -> str:
    """Spreads and phases: min / median / max over the repeats, as run (not scaled)."""
    variants, summary = results["variants"], results["summary"]

    def mmm(vals: list[float], fmt: str) -> str:
        if not vals:
            return "–"
        f = _spread(vals)
        return " / ".join(fmt.format(f[k]) for k in ("min", "median", "max"))

    def med(vals: list[float], fmt: str) -> str:
        return fmt.format(statistics.median(vals)) if vals else "–"

    lines = [
        "| tool | `log()` median, µs | `log()` p99, µs | log loop / N, µs | training loop wall, s "
        "| import / init / loop / close, s | CPU: Python at close / whole process, s "
        "| other processes seen | read, s |",
        "|---|---|---|---:|---|---|---|---|---|",
    ]
    for name, rec in variants.items():
        if name not in summary:
            continue
        lat = [f for f in rec["lat"] if f["ok"]]
        train = [f for f in rec["train"] if f["ok"]]
        read = [f for f in rec["read"] if f["ok"]]
        seen = sorted({h for f in rec["lat"] + rec["train"] if f["ok"] for h in f["helpers"]})
        phases = (
            " / ".join(
                med([f[k] for f in train], "{:.2f}") for k in ("import_s", "init_s", "loop_s", "close_s")
            )
            if train
            else "–"
        )
        cpu = (
            f"{med([f['self_cpu_s'] for f in train], '{:.2f}')} / {med([f['cpu_s'] for f in train], '{:.2f}')}"
            if train and all("self_cpu_s" in f for f in train)
            else med([f["cpu_s"] for f in train], "– / {:.2f}")
        )
        wall = mmm([f["wall_s"] for f in train], "{:.2f}") + (f" ({_n(rec['steps'])} steps)" if train else "")
        late = [f for f in rec["train"] if f.get("timed_out")]
        if not train and late:
            wall = f"> {late[0]['wall_s']:.0f} (timed out)"
        read_cell = mmm([f["read_s"] for f in read], "{:.3f}") + (
            f" ({_n(read[0]['n'])} points)" if read else ""
        )
        lines.append(
            f"| {rec['label']} | {mmm([f['median_us'] for f in lat], '{:,.1f}')} "
            f"| {mmm([f['p99_us'] for f in lat], '{:,.1f}')} "
            f"| {med([f['loop_s'] / f['n'] * 1e6 for f in lat], '{:,.1f}')} | {wall} | {phases} | {cpu} "
            f"| {', '.join(seen) or '–'} | {read_cell} |"
        )
    return "\n".join(lines)


def image_table(results: dict) -> str:
    """The images workload: each figure's median, and the ratio peer / amltrack."""
    variants, summary, meta = results["variants"], results["summary"], results["meta"]
    n, side = meta.get("images", FULL_IMAGES), meta.get("image_side", IMAGE_SIDE)
    head = " | ".join(f"{label}, {unit}" for _, label, unit, _ in IMAGE_FIGURES)
    lines = [f"| tool | call | {head} |", "|---|---|" + "---:|" * len(IMAGE_FIGURES)]
    notes = []
    for name, rec in variants.items():
        if not rec.get("image_call"):
            continue
        if "skipped" in rec:
            lines.append(
                f"| {rec['short']} | {rec['image_call']} |"
                + " – |" * (len(IMAGE_FIGURES) - 1)
                + f" skipped: {rec['skipped']} |"
            )
            continue
        s = summary.get(name, {})
        cells = []
        for key, _, _, fmt in IMAGE_FIGURES:
            f = s.get(key)
            if f is None:
                cells.append("–")
                continue
            text = fmt.format(f["median"])
            if name == "amltrack":
                text = f"**{text}**"
            elif "ratio" in f:
                text += f" ({_ratio(f['ratio'])})"
            cells.append(text)
        bad = [f for f in rec["images"] if not f["ok"]]
        if bad:
            notes.append(f"{rec['short']}: {bad[0]['reason']} ({len(bad)} of {len(rec['images'])} runs).")
        lines.append(f"| {rec['short']} | {rec['image_call']} | " + " | ".join(cells) + " |")
    out = (
        f"{n:,} images of {side} × {side} RGB uint8 (8 pictures of smooth shapes with a little noise, in "
        "turn), one process per tool and run. The caller's figures time each call in-process; *durable* is "
        "the whole process from outside, start-up, imports and the tool's final close included, so every "
        "image is on disk when it ends; *first call to close() returned* is the same from the first call "
        "on. CPU includes helper processes.\n\n" + "\n".join(lines)
    )
    if notes:
        out += "\n\n" + "\n".join(f"- {x}" for x in notes)
    return out


def behind(
    results: dict, figures: list[tuple[str, str, str, str]] = FIGURES, label: str = "label"
) -> list[str]:
    """The figures on which some peer is ahead of amltrack (a lower median); peers named by ``label``."""
    summary, variants = results["summary"], results["variants"]
    base = summary.get("amltrack", {})
    out = []
    for key, what, unit, fmt in figures:
        if key not in base:
            continue
        best = min(
            ((s[key]["median"], n) for n, s in summary.items() if n != "amltrack" and key in s), default=None
        )
        if best and best[0] < base[key]["median"]:
            out.append(
                f"{what}: {variants[best[1]][label]} {fmt.format(best[0])} {unit} against amltrack's "
                f"{fmt.format(base[key]['median'])} {unit}"
            )
    return out


def versions_line(results: dict) -> str:
    parts = []
    for rec in results["variants"].values():
        v = rec.get("versions")
        if not v:
            continue
        text = ", ".join(f"{k} {x}" for k, x in v.items() if k != "python")
        if text not in parts:
            parts.append(text)
    return "; ".join(parts)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    mem = ""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/meminfo") as f:
            kib = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal")))
            mem = f", {kib / 1024 / 1024:.0f} GiB"
    return (
        f"{platform.machine()} ({cpu}, {os.cpu_count()} cores{mem}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def section(results: dict, chart_name: str | None) -> str:
    meta = results["meta"]
    la, lb = meta["loadavg_start"], meta["loadavg_end"]
    workloads = meta.get("workloads", ["lat", "train", "read"])
    head = (
        f"Measured {meta['date']} on {meta['machine']}; {versions_line(results)}. "
        f"Median of {meta['repeat']} run{'s' if meta['repeat'] != 1 else ''} per figure, each a fresh process, "
        "the tools interleaved; "
        f"load average {la[0]:.1f} at the start and {lb[0]:.1f} at the end."
    )
    images: list[str] = []
    if "images" in workloads:
        lag = behind(results, IMAGE_FIGURES, "short")
        images = [
            "",
            "Images:",
            "",
            image_table(results),
            "",
            "Where a peer is ahead of amltrack on images in this run: "
            + ("; ".join(lag) + "." if lag else "nowhere."),
        ]
    if not {"lat", "train", "read"} & set(workloads):
        return "\n".join([head, *images])
    parts = [
        head,
        "",
        "Each cell is the median, with the ratio peer / amltrack in brackets (higher: amltrack ahead). "
        "≈ marks a figure scaled to the stated size from a smaller run (the last column gives the sizes run): "
        f"the training loop to {meta['steps']:,} steps of 10 metrics, by scaling the loop and the close and "
        f"keeping import and start-up as measured; the read time per point to {meta['points']:,} points.",
        "",
        "Each step of the training loop, in each tool's idiom: "
        + "; ".join(
            f"{rec['short']} {rec['train_call']}"
            for rec in results["variants"].values()
            if "skipped" not in rec
        )
        + ".",
        "",
        table(results),
    ]
    if chart_name:
        parts += ["", f"![amltrack and its peers, log scale]({chart_name})"]
    lag = behind(results)
    parts += [
        "",
        "Where a peer is ahead of amltrack in this run: " + ("; ".join(lag) + "." if lag else "nowhere."),
    ]
    parts += ["", "Spreads (min / median / max) and phases, as run:", "", details(results)]
    return "\n".join(parts + images)


def write_docs(results: dict, doc: Path = DOC, chart: Path = CHART) -> None:
    """Write the generated part of the peers section of docs/benchmarks.md and the chart next to it."""
    import chart as chart_mod

    chart.write_text(chart_mod.svg(results, FIGURES))
    body = f"{BEGIN}\n{section(results, chart.name)}\n{END}"
    text = doc.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + body + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{body}\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one run; amltrack from this interpreter, peers only if their venv exists",
    )
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from: {', '.join(PEERS)}")
    ap.add_argument(
        "--workloads",
        default=",".join(WORKLOAD_NAMES),
        help=f"comma-separated, from: {', '.join(WORKLOAD_NAMES)} (default: all); read needs lat's series",
    )
    ap.add_argument(
        "--venvs", type=Path, default=DEFAULT_VENVS, help="where the peers' venvs live (default: %(default)s)"
    )
    ap.add_argument(
        "--repeat", type=int, default=None, help="runs of each workload (default 3, 1 with --smoke)"
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds one process may take before it is killed (default 900, 120 with --smoke)",
    )
    ap.add_argument(
        "--write-docs", action="store_true", help="write the results into docs/benchmarks.md and the chart"
    )
    ap.add_argument(
        "--out", type=Path, help="also write results.json, peers.md and peers.svg into this directory"
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of markdown")
    ap.add_argument("--keep", action="store_true", help="keep the runs' directories (their path is printed)")
    ap.add_argument("--results", type=Path, help="measure nothing: render a results.json written by --out")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if "amltrack" not in names:
        names.insert(0, "amltrack")  # the ratios are to amltrack
    workloads = tuple(w.strip() for w in a.workloads.split(",") if w.strip())
    if not workloads or set(workloads) - set(WORKLOAD_NAMES):
        ap.error(f"--workloads {a.workloads!r}: choose from {', '.join(WORKLOAD_NAMES)}")
    repeat = a.repeat or (1 if a.smoke else 3)
    budget = a.budget or (120.0 if a.smoke else 900.0)
    if a.results:
        results = json.loads(a.results.read_text())
        results["summary"] = summarize(
            results["variants"], results["meta"]["points"], results["meta"]["steps"]
        )
    else:
        work = Path(tempfile.mkdtemp(prefix="amltrack-peers-"))
        signal.signal(signal.SIGTERM, _end_running)
        try:
            results = run(names, a.venvs.expanduser(), repeat, a.smoke, budget, work, workloads)
        finally:
            _end_running()
            if a.keep:
                log(f"runs kept in {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    sys.path.insert(0, str(HERE))
    import chart as chart_mod

    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.json").write_text(json.dumps(results, indent=1))
        (a.out / "peers.svg").write_text(chart_mod.svg(results, FIGURES))
        (a.out / "peers.md").write_text(section(results, "peers.svg") + "\n")
    if a.write_docs:
        write_docs(results)
        log(f"wrote {DOC.relative_to(ROOT)} and {CHART.relative_to(ROOT)}")
    print(json.dumps(results, indent=1) if a.json else section(results, None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
