"""The workloads, run by each peer's own interpreter: one fresh process per measurement.

    python workloads.py ADAPTER lat    DIR N         # N scalar log calls, each timed in-process
    python workloads.py ADAPTER train  DIR STEPS     # 10 metrics per step, then close
    python workloads.py ADAPTER series DIR N         # N points of "loss" for the read workload
    python workloads.py ADAPTER read   DIR N REF     # read "loss" back; only the read call is timed
    python workloads.py ADAPTER images DIR N SIDE    # N images of SIDE x SIDE RGB uint8, each timed, then close
    python workloads.py ADAPTER check  DIR 0         # import the tool, print its versions

``run.py`` starts these with DIR as the working directory (an empty directory whose size is measured
after the process exits) and times the whole process from outside. Each mode prints one JSON line.
Standard library only, apart from the tool an adapter measures (and numpy for the images mode, which
makes its pictures with it): this file runs in every peer's venv.

An adapter is one way of using one tool: ``imports()`` (timed as the import phase), ``open(dir)``
(returns a reference the reader needs later), ``log(name, value, step)``, ``log_step(metrics,
step)`` for a dict of metrics at one step, ``close()``, and ``read(dir, ref, name)`` that returns
the values of a series; ``log_image(name, array, step)`` for the images mode, an H x W x 3 uint8
numpy array in the tool's own image call.
"""

from __future__ import annotations

import json
import os
import sys
import time

T_START = time.perf_counter()

#: The metrics of one training step: ten names, as a model would log them.
STEP_METRICS = (
    "loss",
    "accuracy",
    "lr",
    "grad_norm",
    "val_loss",
    "val_accuracy",
    "epoch",
    "throughput",
    "weight_norm",
    "gpu_mem",
)


class Adapter:
    """The interface; see the module docstring."""

    #: distributions whose versions are recorded
    dists: tuple[str, ...] = ()

    def imports(self) -> None:
        raise NotImplementedError

    def open(self, d: str) -> str:
        raise NotImplementedError

    def log(self, name: str, value: float, step: int) -> None:
        raise NotImplementedError

    def log_step(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.log(k, v, step)

    def close(self) -> None:
        raise NotImplementedError

    def write_series(self, n: int) -> None:
        log = self.log
        for i in range(n):
            log("loss", 1.0 / (i + 1), i)

    def read(self, d: str, ref: str, name: str) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__} has no reader")

    def log_image(self, name: str, image: object, step: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} logs no images")


def sample_images(side: int, count: int = 8) -> list:
    """Pictures like sample predictions: smooth shapes with a little noise, H x W x 3 uint8, as
    ``benchmarks/bench_media.py`` makes them (pure noise does not compress, and is no one's sample)."""
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    out = []
    for k in range(count):
        base = np.stack([np.sin(6 * xx + k), np.cos(5 * yy - k), np.sin(4 * (xx + yy) + k)], axis=-1)
        out.append(np.clip((base + 1) * 127 + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8))
    return out


class Amltrack(Adapter):
    dists = ("amltrack", "orjson", "pillow", "numpy")

    def imports(self) -> None:
        global amltrack
        import amltrack

    def open(self, d: str) -> str:
        self.logger = amltrack.get_logger("bench", store=os.path.join(d, "store"), outputs=None)
        # log() takes the step as a keyword: bind it once, as the other adapters bind their methods.
        _log = self.logger.log

        def log(name: str, value: float, step: int) -> None:
            _log(name, value, step=step)

        self.log = log  # type: ignore[method-assign]
        return self.logger.run_id

    def log_step(self, metrics: dict[str, float], step: int) -> None:
        self.logger.log_metrics(metrics, step=step)

    def log_image(self, name: str, image: object, step: int) -> None:
        self.logger.log_image(name, image, step=step)

    def close(self) -> None:
        self.logger.finish()

    def read(self, d: str, ref: str, name: str) -> list[float]:
        # Metric keeps its points as columns; .values is the plain list (no Point objects made).
        return amltrack.Store(os.path.join(d, "store")).run(ref).metric(name).values


class MLflow(Adapter):
    """MLflow 3.x with its default tracking URI: ``sqlite:///mlflow.db`` in the working directory."""

    dists = ("mlflow", "mlflow-skinny", "sqlalchemy", "pillow", "numpy")
    synchronous = True

    def imports(self) -> None:
        global mlflow
        import mlflow

    def open(self, d: str) -> str:
        self.run = mlflow.start_run()
        sync = self.synchronous
        _log, _log_metrics = mlflow.log_metric, mlflow.log_metrics

        def log(name: str, value: float, step: int) -> None:
            _log(name, value, step=step, synchronous=sync)

        def log_step(metrics: dict[str, float], step: int) -> None:
            _log_metrics(metrics, step=step, synchronous=sync)

        self.log, self.log_step = log, log_step  # type: ignore[method-assign]
        return self.run.info.run_id

    def close(self) -> None:
        mlflow.end_run()

    def write_series(self, n: int) -> None:
        # MLflow's batch call, 1,000 points a call, so that the series for the reader is quick to make.
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client, rid, ts = MlflowClient(), self.run.info.run_id, int(time.time() * 1000)
        for start in range(0, n, 1000):
            client.log_batch(
                rid,
                metrics=[Metric("loss", 1.0 / (i + 1), ts, i) for i in range(start, min(n, start + 1000))],
            )

    def read(self, d: str, ref: str, name: str) -> list[float]:
        from mlflow.tracking import MlflowClient

        return [m.value for m in MlflowClient().get_metric_history(ref, name)]

    def log_image(self, name: str, image: object, step: int) -> None:
        # Its defaults: synchronous=False (MLflow 3), so end_run() waits for the uploads.
        mlflow.log_image(image, key=name, step=step)


class MLflowAsync(MLflow):
    synchronous = False


class Wandb(Adapter):
    """W&B offline (``mode="offline"``); it starts its ``wandb-core`` helper process."""

    dists = ("wandb", "pillow", "numpy")

    def imports(self) -> None:
        global wandb
        import wandb

    def open(self, d: str) -> str:
        self.run = wandb.init(project="bench", mode="offline", dir=d)
        _log = self.run.log

        def log(name: str, value: float, step: int) -> None:
            _log({name: value}, step=step)

        def log_step(metrics: dict[str, float], step: int) -> None:
            _log(metrics, step=step)

        self.log, self.log_step = log, log_step  # type: ignore[method-assign]
        return self.run.id

    def close(self) -> None:
        self.run.finish()

    def log_image(self, name: str, image: object, step: int) -> None:
        # wandb.Image encodes the PNG into the run's media folder at the call.
        self.run.log({name: wandb.Image(image)}, step=step)


class TensorBoardX(Adapter):
    """tensorboardX's ``SummaryWriter`` (with the native ``crc32c`` package installed); TensorBoard reads."""

    dists = ("tensorboardX", "tensorboard", "crc32c", "protobuf", "pillow", "numpy")

    def imports(self) -> None:
        global SummaryWriter
        from tensorboardX import SummaryWriter

    def open(self, d: str) -> str:
        self.writer = SummaryWriter(os.path.join(d, "tb"))
        self.log = self.writer.add_scalar  # type: ignore[method-assign]
        return "tb"

    def close(self) -> None:
        self.writer.close()

    def log_image(self, name: str, image: object, step: int) -> None:
        # add_image encodes the PNG at the call (through Pillow); the event is written by its thread.
        self.writer.add_image(name, image, step, dataformats="HWC")

    def read(self, d: str, ref: str, name: str) -> list[float]:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(os.path.join(d, ref), size_guidance={"scalars": 0})
        acc.Reload()
        return [e.value for e in acc.Scalars(name)]


class DVCLive(Adapter):
    """DVCLive's ``Live`` outside any git or DVC repository, with ``dvcyaml=None`` (it does not run
    ``dvc init`` then) and no report."""

    dists = ("dvclive", "dvc")

    def imports(self) -> None:
        global Live
        from dvclive import Live

    def open(self, d: str) -> str:
        self.live = Live(os.path.join(d, "dvclive"), dvcyaml=None, report=None, save_dvc_exp=False)
        live, _log = self.live, self.live.log_metric

        def log(name: str, value: float, step: int) -> None:
            # The step is the Live object's attribute; next_step() would also rewrite the summary
            # file, which is the per-step cost measured by the training loop, not by one scalar.
            live.step = step
            _log(name, value)

        def log_step(metrics: dict[str, float], step: int) -> None:
            for k, v in metrics.items():
                _log(k, v)
            live.next_step()

        self.log, self.log_step = log, log_step  # type: ignore[method-assign]
        return "dvclive"

    def close(self) -> None:
        self.live.end()

    def read(self, d: str, ref: str, name: str) -> list[float]:
        # DVCLive's own TSV parser (what its read_history() uses, without opening a Live run).
        from dvclive.utils import parse_tsv

        return [
            float(row[name]) for row in parse_tsv(os.path.join(d, ref, "plots", "metrics", f"{name}.tsv"))
        ]


class Aim(Adapter):
    """Aim's ``Run`` on a repository in the working directory (RocksDB plus an SQLite index)."""

    dists = ("aim", "aimrocks")

    def imports(self) -> None:
        global aim
        import aim

    def open(self, d: str) -> str:
        self.run = aim.Run(
            repo=d,
            experiment="bench",
            system_tracking_interval=None,
            log_system_params=False,
            capture_terminal_logs=False,
        )
        _track = self.run.track

        def log(name: str, value: float, step: int) -> None:
            _track(value, name=name, step=step)

        def log_step(metrics: dict[str, float], step: int) -> None:
            _track(metrics, step=step)

        self.log, self.log_step = log, log_step  # type: ignore[method-assign]
        return self.run.hash

    def close(self) -> None:
        self.run.close()

    def read(self, d: str, ref: str, name: str) -> list[float]:
        # A run written by another process is not visible to read-only readers until the repo's
        # index has it: the Aim UI's index manager does that in the background; do it here, timed.
        from aim.sdk.index_manager import RepoIndexManager
        from aim.storage.context import Context

        repo = aim.Repo.from_path(d)
        RepoIndexManager.get_index_manager(repo).index(ref)
        metric = aim.Run(run_hash=ref, repo=repo, read_only=True).get_metric(name, Context({}))
        if metric is None:
            raise LookupError(f"aim: run {ref} has no metric {name!r}")
        _steps, (values, _epochs, _times) = metric.data.items_list()  # sorted by step, as dataframe() does
        return values


class Trackio(Adapter):
    """trackio, local only: its SQLite database under ``TRACKIO_DIR`` (set to the working directory)."""

    dists = ("trackio",)

    def imports(self) -> None:
        global trackio
        import trackio

    def open(self, d: str) -> str:
        self.run = trackio.init(
            project="bench", name="bench", embed=False, auto_log_cpu=False, auto_log_gpu=False
        )
        _log = trackio.log

        def log(name: str, value: float, step: int) -> None:
            _log({name: value}, step=step)

        def log_step(metrics: dict[str, float], step: int) -> None:
            _log(metrics, step=step)

        self.log, self.log_step = log, log_step  # type: ignore[method-assign]
        return "bench"

    def close(self) -> None:
        trackio.finish()

    def read(self, d: str, ref: str, name: str) -> list[float]:
        from trackio.sqlite_storage import SQLiteStorage

        return [r["value"] for r in SQLiteStorage.get_metric_values("bench", ref, name)]


ADAPTERS: dict[str, type[Adapter]] = {
    "amltrack": Amltrack,
    "mlflow": MLflow,
    "mlflow-async": MLflowAsync,
    "wandb": Wandb,
    "tensorboardx": TensorBoardX,
    "dvclive": DVCLive,
    "aim": Aim,
    "trackio": Trackio,
}


class Progress:
    """Where the loop is, in the file run.py names, so that a run killed at its time budget says how far
    it got."""

    def __init__(self) -> None:
        path = os.environ.get("BENCH_PROGRESS_FILE")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if path else None

    def __call__(self, n: int) -> None:
        if self.fd is not None:
            os.pwrite(self.fd, f"{n:<20}".encode(), 0)


def versions(dists: tuple[str, ...]) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in dists:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def main(argv: list[str]) -> dict:
    adapter_name, mode, d, n = argv[0], argv[1], os.path.abspath(argv[2]), int(argv[3])
    a = ADAPTERS[adapter_name]()
    pc = time.perf_counter
    cpu = time.process_time
    t0 = pc()
    a.imports()
    t_import = pc() - t0
    out: dict = {
        "adapter": adapter_name,
        "mode": mode,
        "n": n,
        "import_s": t_import,
        "startup_s": t0 - T_START,
    }
    if mode == "check":
        out["versions"] = {"python": sys.version.split()[0], **versions(a.dists)}
        return out
    if mode == "read":
        t = pc()
        values = a.read(d, argv[4], "loss")
        out["read_s"] = pc() - t
        if len(values) != n:
            raise AssertionError(f"read {len(values)} points of 'loss', expected {n}")
        if abs(values[-1] - 1.0 / n) > 1e-6 * (1.0 / n):
            raise AssertionError(f"the last point read is {values[-1]!r}, expected {1.0 / n!r}")
        return out
    t = pc()
    out["ref"] = a.open(d)
    out["init_s"] = pc() - t
    c0 = cpu()
    t = pc()
    if mode == "lat":
        log = a.log
        times = [0] * n
        pcn = time.perf_counter_ns
        for i in range(n):
            v = 1.0 / (i + 1)
            t1 = pcn()
            log("loss", v, i)
            times[i] = pcn() - t1
        out["loop_s"] = pc() - t
        times.sort()
        out["median_us"] = times[n // 2] / 1000
        out["p99_us"] = times[min(n - 1, int(n * 0.99))] / 1000
        out["max_us"] = times[-1] / 1000
        # What the timer pair and the adapter's call cost with nothing behind them.
        nothing = [0] * 10_000

        def noop(name: str, value: float, step: int) -> None:
            pass

        for i in range(10_000):
            t1 = pcn()
            noop("loss", 0.5, i)
            nothing[i] = pcn() - t1
        nothing.sort()
        out["empty_call_us"] = nothing[5_000] / 1000
    elif mode == "train":
        log_step = a.log_step
        names = STEP_METRICS
        progress = Progress()
        for step in range(n):
            x = 1.0 / (step + 1)
            log_step({k: x + j for j, k in enumerate(names)}, step)
            if not step % 500:
                progress(step)
        out["loop_s"] = pc() - t
    elif mode == "series":
        a.write_series(n)
        out["loop_s"] = pc() - t
    elif mode == "images":
        # The pictures are made before the loop (numpy imported, 8 of them): in the process's wall
        # time, the same for every tool, and not in the loop's.
        frames = sample_images(int(argv[4]))
        log_image = a.log_image
        times = [0] * n
        pcn = time.perf_counter_ns
        progress = Progress()
        t = pc()
        c0 = cpu()
        for i in range(n):
            frame = frames[i % len(frames)]
            t1 = pcn()
            log_image("samples", frame, i)
            times[i] = pcn() - t1
            if not i % 50:
                progress(i)
        out["loop_s"] = pc() - t
        times.sort()
        out["median_us"] = times[n // 2] / 1000
        out["p99_us"] = times[min(n - 1, int(n * 0.99))] / 1000
        out["side"] = int(argv[4])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    c1 = cpu()
    t = pc()
    a.close()
    out["close_s"] = pc() - t
    out["loop_cpu_s"] = c1 - c0
    out["close_cpu_s"] = cpu() - c1
    # This process's own CPU time so far, and that of the children it has waited for: what run.py
    # measures from outside beyond these is helpers' time and the interpreter's exit.
    times = os.times()
    out["self_cpu_s"] = times.user + times.system
    out["children_cpu_s"] = times.children_user + times.children_system
    return out


if __name__ == "__main__":
    result = main(sys.argv[1:])
    # The last line of stdout is the result; a tool may print its own lines before it.
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
