"""System metrics: while a run is open, a daemon thread samples the machine and the process every
10 s and logs one row of ``system/`` metrics into the run.

psutil reads CPU, memory, disk and network on every platform amltrack runs on; NVIDIA GPUs are read
through NVML (``pip install nvidia-ml-py``, imported as ``pynvml``) when it is installed and finds a
GPU, and skipped without a word otherwise. Rates (disk and network bytes a second) are the change
since the previous sample over the time between the two; CPU percentages likewise, so the first row
comes one interval after the run starts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from . import _env
from ._errors import short_repr

INTERVAL = 10.0  # seconds between two samples, unless system_metrics= or the environment says
PREFIX = "system/"
_MIB = float(1 << 20)
_OFF = ("0", "false", "no", "off", "none", "")
_ON = ("1", "true", "yes", "on")


def interval_of(system_metrics: bool | float | None) -> float | None:
    """The sampling interval ``system_metrics=`` asks for, or None for no sampling.

    True: every 10 s; False: none; a number: every that many seconds; None: ``AMLTRACK_SYSTEM_METRICS``
    (``0`` or ``off`` for none, ``1`` or a number of seconds), else every 10 s.
    """
    if system_metrics is None:
        raw = os.environ.get(_env.SYSTEM_METRICS)
        if raw is None:
            return INTERVAL
        text = raw.strip().lower()
        if text in _OFF:
            return None
        if text in _ON:
            return INTERVAL
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not seconds > 0 or seconds == float("inf"):
            raise ValueError(
                f"{_env.SYSTEM_METRICS}={short_repr(raw)} is not 0, 1 or a number of seconds > 0; "
                "set it to 0 to turn system metrics off, or to the seconds between two samples"
            )
        return seconds
    if system_metrics is True:
        return INTERVAL
    if system_metrics is False:
        return None
    if type(system_metrics) in (int, float) and 0 < system_metrics < float("inf"):
        return float(system_metrics)
    raise ValueError(
        f"system_metrics={short_repr(system_metrics)} is not True, False, None or a number of seconds > 0"
    )


def open_nvml() -> Any:
    """NVML (``pynvml``, from nvidia-ml-py), initialised, or None: not installed, no driver, no GPU."""
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() > 0:
            return pynvml
        pynvml.nvmlShutdown()
    except Exception:  # ImportError, NVMLError (no driver, no GPU): nothing to sample
        pass
    return None


class Sampler:
    """Reads one row of system metrics at a time; ``nvml`` is the NVML module (``pynvml``) or an
    object with its functions, or None for no GPU part.

        sampler = Sampler(nvml=None)
        sampler.sample()    # {"system/cpu_percent": 12.5, ...}
    """

    def __init__(self, nvml: Any = None) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._nvml = nvml
        self._gpus = (
            [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())] if nvml else []
        )
        # The first call of each cpu_percent() starts its clock and returns 0: make it now.
        psutil.cpu_percent(None)
        self._process.cpu_percent(None)
        self._last = time.monotonic()
        self._io = self._counters()

    def _counters(self) -> tuple[Any, Any]:
        psutil = self._psutil
        disk = net = None
        with contextlib.suppress(Exception):  # none in some containers, and on some systems
            disk = psutil.disk_io_counters()
        with contextlib.suppress(Exception):
            net = psutil.net_io_counters()
        return disk, net

    def sample(self) -> dict[str, float]:
        """One row: the machine's and the process's figures now, and the rates since the last row."""
        psutil = self._psutil
        now = time.monotonic()
        elapsed = max(now - self._last, 1e-9)
        row: dict[str, float] = {
            "system/cpu_percent": float(psutil.cpu_percent(None)),
            "system/process_cpu_percent": float(self._process.cpu_percent(None)),
        }
        mem = psutil.virtual_memory()
        row["system/memory_used_mib"] = (mem.total - mem.available) / _MIB
        row["system/memory_available_mib"] = mem.available / _MIB
        with contextlib.suppress(Exception):
            row["system/process_rss_mib"] = self._process.memory_info().rss / _MIB
        io = self._counters()
        (disk0, net0), (disk, net) = self._io, io
        if disk0 is not None and disk is not None:
            row["system/disk_read_mib_per_s"] = max(0, disk.read_bytes - disk0.read_bytes) / _MIB / elapsed
            row["system/disk_write_mib_per_s"] = max(0, disk.write_bytes - disk0.write_bytes) / _MIB / elapsed
        if net0 is not None and net is not None:
            row["system/network_sent_mib_per_s"] = max(0, net.bytes_sent - net0.bytes_sent) / _MIB / elapsed
            row["system/network_received_mib_per_s"] = (
                max(0, net.bytes_recv - net0.bytes_recv) / _MIB / elapsed
            )
        self._io, self._last = io, now
        for i, handle in enumerate(self._gpus):
            row.update(self._gpu(i, handle))
        return row

    def _gpu(self, i: int, handle: Any) -> dict[str, float]:
        """GPU ``i``'s figures; each one that this GPU or driver does not report is left out."""
        nvml, out, name = self._nvml, {}, f"system/gpu{i}/"
        reads = (
            ("utilization_percent", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            ("memory_used_mib", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / _MIB),
            ("temperature_c", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
            ("power_w", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),  # NVML gives milliwatts
        )
        for key, read in reads:
            with contextlib.suppress(Exception):
                out[name + key] = float(read())
        return out

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()


class Monitor:
    """The sampling thread of one run: ``start()``, then ``stop()``, which joins it.

    It logs through ``log_row`` (the run's ``log_metrics``) at its default steps, 0, 1, 2, ... and on
    after a resumed run's; a failure to read or to log ends the sampling with one warning, and
    training goes on.
    """

    def __init__(self, log_row: Any, run_id: str, interval: float, nvml: Any = "auto") -> None:
        self._log_row = log_row
        self.interval = interval
        self._nvml = nvml
        self._stop = threading.Event()
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name=f"amltrack-system-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        sampler = None
        try:
            # psutil is imported here, off the caller's thread: it costs about 15 ms. Not at once: a
            # module still importing while the interpreter exits after an uncaught KeyboardInterrupt
            # (Ctrl-C right after the start) makes Python exit 1 instead of by SIGINT; a run that
            # ends within this pause stops the thread before it imports anything.
            if self._stop.wait(min(self.interval, 1.0)):
                return
            sampler = Sampler(open_nvml() if self._nvml == "auto" else self._nvml)
            while not self._stop.wait(self.interval):
                self._log_row(sampler.sample())
                self.samples += 1
        except Exception as e:
            if self._stop.is_set():
                return  # the run finished while a row was on its way
            import warnings

            warnings.warn(
                f"amltrack: system metrics stopped ({type(e).__name__}: {e}); training goes on without them",
                UserWarning,
                stacklevel=1,
            )
        finally:
            if sampler is not None:
                sampler.close()
