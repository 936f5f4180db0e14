"""System metrics (``amltrack/_system.py``): a real sampler thread over psutil, a fake NVML for the GPU part."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

import amltrack
from amltrack import _system

from .conftest import wait_until

MACHINE = {
    "system/cpu_percent",
    "system/process_cpu_percent",
    "system/memory_used_mib",
    "system/memory_available_mib",
    "system/process_rss_mib",
}
GPU = ("utilization_percent", "memory_used_mib", "temperature_c", "power_w")


def system_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("amltrack-system-")]


def test_a_run_samples_the_machine_into_system_rows_until_it_ends(store: Path) -> None:
    logger = amltrack.get_logger("sys", store=store, outputs=None, system_metrics=0.05)
    logger.log("loss", 0.5)
    run = amltrack.Store(store).run(logger.run_id)
    wait_until(lambda: len(run.metrics().get("system/cpu_percent", [])) >= 3, what="three samples")
    logger.finish()
    assert system_threads() == []
    metrics = run.metrics()
    names = {n for n in metrics if n.startswith("system/")}
    assert MACHINE <= names
    cpu = metrics["system/cpu_percent"]
    assert cpu.steps == list(range(len(cpu)))  # one row a sample, at steps 0, 1, 2, ...
    for name in names:
        assert metrics[name].steps == cpu.steps, name
    rss = metrics["system/process_rss_mib"].values[-1]
    assert 0.5 * rss < psutil.Process().memory_info().rss / 2**20 < 2 * rss
    assert all(0 <= v <= 100 for v in cpu.values)
    total = psutil.virtual_memory().total / 2**20
    for used, free in zip(
        metrics["system/memory_used_mib"].values, metrics["system/memory_available_mib"].values
    ):
        assert 0 < used < total and 0 < free < total
    if psutil.disk_io_counters() is not None:
        assert all(v >= 0 for v in metrics["system/disk_write_mib_per_s"].values)
    assert metrics["loss"].values == [0.5]


def test_system_metrics_are_on_by_default_every_10_s_and_off_by_false_or_the_environment(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = amltrack.get_logger("sys", store=store, outputs=None)
    assert logger._system.interval == 10.0 and len(system_threads()) == 1
    logger.finish()
    assert system_threads() == []
    with amltrack.start_run("sys", store=store, outputs=None, system_metrics=False) as lg:
        assert lg._system is None and system_threads() == []
    monkeypatch.setenv("AMLTRACK_SYSTEM_METRICS", "0")
    with amltrack.start_run("sys", store=store, outputs=None) as lg:
        assert lg._system is None and system_threads() == []
    monkeypatch.setenv("AMLTRACK_SYSTEM_METRICS", "2.5")
    with amltrack.start_run("sys", store=store, outputs=None) as lg:
        assert lg._system.interval == 2.5
    with amltrack.start_run("sys", store=store, outputs=None, system_metrics=True) as lg:
        assert lg._system.interval == 10.0  # the argument wins over the environment


def test_bad_settings_are_refused_at_the_call_naming_the_value(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in (0, -1, float("nan"), "10"):
        with pytest.raises(ValueError, match=r"system_metrics=.* is not True, False, None or a number"):
            amltrack.get_logger(store=store, outputs=None, system_metrics=bad)  # type: ignore[arg-type]
    monkeypatch.setenv("AMLTRACK_SYSTEM_METRICS", "often")
    with pytest.raises(ValueError, match="AMLTRACK_SYSTEM_METRICS='often' is not 0, 1 or a number"):
        amltrack.get_logger(store=store, outputs=None)
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())


class FakeNVML:
    """The part of pynvml the sampler calls, for ``gpus`` GPUs; GPU 1 reports no power."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: int) -> None:
        self.gpus = gpus
        self.shut = False

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=40 + h, memory=10)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=(h + 1) * 2**30, total=16 * 2**30, free=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 60 + h

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        if h == 1:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return 150_500  # milliwatts

    def nvmlShutdown(self) -> None:
        self.shut = True


def test_each_gpu_is_sampled_through_nvml_and_what_it_cannot_report_is_left_out() -> None:
    nvml = FakeNVML(2)
    sampler = _system.Sampler(nvml=nvml)
    row = sampler.sample()
    assert {k: v for k, v in row.items() if "/gpu" in k} == {
        "system/gpu0/utilization_percent": 40.0,
        "system/gpu0/memory_used_mib": 1024.0,
        "system/gpu0/temperature_c": 60.0,
        "system/gpu0/power_w": 150.5,
        "system/gpu1/utilization_percent": 41.0,
        "system/gpu1/memory_used_mib": 2048.0,
        "system/gpu1/temperature_c": 61.0,
    }
    sampler.close()
    assert nvml.shut


def test_a_monitor_with_a_gpu_logs_its_rows_into_the_run(store: Path) -> None:
    logger = amltrack.get_logger("sys", store=store, outputs=None, system_metrics=False)
    monitor = _system.Monitor(logger.log_metrics, logger.run_id, 0.05, nvml=FakeNVML(1))
    monitor.start()
    try:
        wait_until(lambda: logger.flush() is None and _gpu_rows(store, logger) >= 2)
    finally:
        monitor.stop()
    logger.finish()
    run = amltrack.Store(store).run(logger.run_id)
    assert {f"system/gpu0/{k}" for k in GPU} | MACHINE <= set(run.metrics())


def _gpu_rows(store: Path, logger: amltrack.Logger) -> int:
    return len(amltrack.Store(store).run(logger.run_id).metrics().get("system/gpu0/power_w", []))


def test_without_nvml_or_a_gpu_the_gpu_part_is_skipped() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert _system.open_nvml() is None
        return
    nvml = _system.open_nvml()  # installed: a machine without a GPU or driver gives None
    if nvml is not None:
        nvml.nvmlShutdown()
        pytest.skip("this machine has an NVIDIA GPU")


def test_a_resumed_run_samples_on_after_its_last_system_step(store: Path) -> None:
    with amltrack.start_run("sys", store=store, outputs=None, system_metrics=0.05) as lg:
        run = amltrack.Store(store).run(lg.run_id)
        wait_until(lambda: lg.flush() is None and len(run.metrics().get("system/cpu_percent", [])) >= 2)
    first = len(run.metrics()["system/cpu_percent"])
    with amltrack.start_run(store=store, outputs=None, system_metrics=0.05, resume=lg.run_id) as lg:
        wait_until(lambda: lg.flush() is None and len(run.metrics()["system/cpu_percent"]) >= first + 2)
    steps = run.metrics()["system/cpu_percent"].steps
    assert steps == list(range(len(steps)))
