"""System statistics: CPU, RAM, process RSS (psutil) and per-GPU stats (NVML).

No torch here: the TUI lists GPUs for its launch form with it. A machine without an NVIDIA
GPU or driver is a normal case: ``gpus()`` returns an empty list and ``nvml_status()``
says why.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any

import psutil

try:  # nvidia-ml-py; importing it works without a GPU, nvmlInit is what fails
    import pynvml
except ImportError:  # pragma: no cover - a dependency, but degrade cleanly anyway
    pynvml = None


@dataclass
class GpuStats:
    index: int
    name: str
    util: float | None  # percent
    mem_used_mb: float
    mem_total_mb: float
    temperature: float | None  # Celsius
    power_w: float | None

    @property
    def mem_free_mb(self) -> float:
        return self.mem_total_mb - self.mem_used_mb


class _Nvml:
    """Initialises NVML once; remembers why it is unavailable."""

    def __init__(self) -> None:
        self.ok = False
        self.reason = ""
        if pynvml is None:
            self.reason = "nvidia-ml-py is not installed"
            return
        try:
            pynvml.nvmlInit()
            self.ok = True
        except pynvml.NVMLError as exc:
            self.reason = f"no NVIDIA GPU ({exc})"


_nvml: _Nvml | None = None


def _get_nvml() -> _Nvml:
    global _nvml
    if _nvml is None:
        _nvml = _Nvml()
    return _nvml


def nvml_status() -> str:
    """Empty when NVML works, else a one-line reason ("no NVIDIA GPU (...)")."""
    return _get_nvml().reason


def cuda_device_count() -> int | None:
    """How many CUDA devices a process started now would see (NVML's count, narrowed by
    ``CUDA_VISIBLE_DEVICES``), without importing torch; None when it can't be told (no
    nvidia-ml-py, but an ``nvidia-smi`` on the PATH)."""
    nv = _get_nvml()
    if not nv.ok:
        if pynvml is None and shutil.which("nvidia-smi"):
            return None
        return 0
    count = pynvml.nvmlDeviceGetCount()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        # CUDA stops at the first entry that names no device ("-1" hides them all)
        entries = [e.strip() for e in visible.split(",")]
        usable = 0
        for entry in entries:
            if not entry or entry.startswith("-"):
                break
            usable += 1
        count = min(count, usable)
    return count


def _opt(fn, *args):
    """Some NVML queries are unsupported on some boards; that is a missing value, not an error."""
    try:
        return fn(*args)
    except pynvml.NVMLError:
        return None


def gpus() -> list[GpuStats]:
    """Stats of every visible NVIDIA GPU, or [] when there is none."""
    nv = _get_nvml()
    if not nv.ok:
        return []
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = pynvml.nvmlDeviceGetName(h)
        name = name.decode() if isinstance(name, bytes) else name
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        util = _opt(pynvml.nvmlDeviceGetUtilizationRates, h)
        temp = _opt(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
        power = _opt(pynvml.nvmlDeviceGetPowerUsage, h)
        out.append(GpuStats(index=i, name=name, util=float(util.gpu) if util else None,
                            mem_used_mb=mem.used / 2**20, mem_total_mb=mem.total / 2**20,
                            temperature=float(temp) if temp is not None else None,
                            power_w=power / 1000.0 if power is not None else None))
    return out


class SystemSampler:
    """Samples CPU %, RAM, this process tree's RSS and the GPUs, for ``system`` events."""

    def __init__(self, pid: int | None = None):
        self.proc = psutil.Process(pid or os.getpid())
        psutil.cpu_percent(None)  # the first call only primes the counter

    def _tree_rss_mb(self) -> float:
        rss = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                rss += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # a DataLoader worker that just exited
        return rss / 2**20

    def sample(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        return {
            "cpu_percent": psutil.cpu_percent(None),
            "ram_used_mb": (vm.total - vm.available) / 2**20,
            "ram_total_mb": vm.total / 2**20,
            "proc_rss_mb": self._tree_rss_mb(),
            "gpus": [asdict(g) for g in gpus()],
            "gpu_status": nvml_status(),
        }
