"""The machine as the engine sees it: per-GPU utilisation, memory, temperature and power,
then CPU, RAM and the training processes' RSS, each with a sparkline of recent samples.

The data are the run's ``system`` events (the engine samples them; this panel never asks
NVML itself, so it shows the training machine even over SSH from elsewhere). A run without
an NVIDIA GPU says so plainly, with the reason the engine got from NVML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, Vertical, VerticalScroll
from textual.widgets import Sparkline, Static

from engine.protocol.rundir import ACTIVE
from tui.safetext import safe_text

__all__ = ["GpuBlock", "MetricRow", "SystemPanel"]


def _finite(values: Sequence[float]) -> list[float]:
    """Sparkline data: NaNs (a value a board doesn't report) drawn as 0."""
    return [0.0 if (v != v or math.isinf(v)) else v for v in values]


def _fmt(value: object, fmt: str, missing: str = "n/a") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return fmt.format(value)
    return missing


def _index(value: object, default: int) -> int:
    """A GPU's index from a system event (its position when missing or not an integer)."""
    return value if type(value) is int else default


def _gb(mb: object) -> str:
    return _fmt(mb / 1024.0 if isinstance(mb, (int, float)) else None, "{:.1f}")


class MetricRow(Grid):
    """``label  value  ▁▂▃▅▇`` on one line."""

    DEFAULT_CSS = """
    MetricRow {
        grid-size: 2 1;
        grid-columns: 22 1fr;
        height: 1;
        .metric-label { width: 22; text-wrap: nowrap; text-overflow: ellipsis; }
        Sparkline { width: 1fr; margin-right: 1; }
    }
    """

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._label = label
        self._text = label

    def compose(self) -> ComposeResult:
        yield Static(self._label, classes="metric-label")
        yield Sparkline([], summary_function=max)

    def show(self, text: str, history: Sequence[float]) -> None:
        if text != self._text:  # fixed size: no layout needed
            self._text = text
            self.query_one(".metric-label", Static).update(text, layout=False)
        data = _finite(history)
        sparkline = self.query_one(Sparkline)
        if sparkline.data != data:
            sparkline.data = data


class GpuBlock(Vertical):
    """One GPU: its name, then utilisation, memory, temperature and power."""

    DEFAULT_CSS = """
    GpuBlock {
        height: auto;
        .gpu-name { color: $accent; text-style: bold; text-wrap: nowrap; height: 1; }
    }
    """

    def __init__(self, index: int) -> None:
        super().__init__(id=f"gpu-{index}")
        self.index = index
        self._data: tuple[dict[str, Any], dict[str, list[float]]] | None = None
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Static(f"GPU {self.index}", classes="gpu-name")
        yield MetricRow(" util", id="util")
        yield MetricRow(" mem", id="mem")
        yield MetricRow(" temp", id="temp")
        yield MetricRow(" power", id="power")

    def on_mount(self) -> None:
        self._composed = True
        if self._data is not None:  # shown before its rows existed
            self.show(*self._data)

    def show(self, gpu: dict[str, Any], history: dict[str, list[float]]) -> None:
        """The latest sample of this GPU and its history (``{quantity: values}``)."""
        self._data = (gpu, history)
        if not self._composed:
            return
        self.query_one(".gpu-name", Static).update(
            safe_text(f"GPU {self.index} · {gpu.get('name') or 'unknown'}"), layout=False)
        self.query_one("#util", MetricRow).show(
            f" util  {_fmt(gpu.get('util'), '{:5.0f} %')}", history.get("util", []))
        used, total = gpu.get("mem_used_mb"), gpu.get("mem_total_mb")
        self.query_one("#mem", MetricRow).show(
            f" mem   {_gb(used)}/{_gb(total)} GB", history.get("mem_used_mb", []))
        self.query_one("#temp", MetricRow).show(
            f" temp  {_fmt(gpu.get('temperature'), '{:5.0f} °C')}",
            history.get("temperature", []))
        self.query_one("#power", MetricRow).show(
            f" power {_fmt(gpu.get('power_w'), '{:5.0f} W')}", history.get("power_w", []))


class SystemPanel(VerticalScroll):
    """GPUs (or why there are none), CPU, RAM and process RSS of the training machine."""

    DEFAULT_CSS = """
    SystemPanel {
        height: 1fr;
        scrollbar-size-vertical: 1;
        #sys-waiting { color: $text-muted; }
        #no-gpu { color: $warning; text-style: bold; height: auto; margin-bottom: 1; }
        #gpus { height: auto; }
        #host-name { color: $accent; text-style: bold; }
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._gpu_indices: tuple[int, ...] = ()
        self._blocks: dict[int, GpuBlock] = {}

    def compose(self) -> ComposeResult:
        yield Static("waiting for the first system sample…", id="sys-waiting")
        yield Static("", id="no-gpu")
        yield Vertical(id="gpus")
        yield Static("host", id="host-name")
        yield MetricRow(" cpu", id="cpu")
        yield MetricRow(" ram", id="ram")
        yield MetricRow(" rss", id="rss")

    def on_mount(self) -> None:
        for selector in ("#no-gpu", "#host-name", "#cpu", "#ram", "#rss"):
            self.query_one(selector).display = False

    @property
    def gpu_count(self) -> int:
        return len(self._gpu_indices)

    def update_system(self, latest: dict[str, Any] | None, history: dict[str, Any],
                      status: str = "running") -> None:
        """Show the latest ``system`` event and the recent history (RunSnapshot.system);
        ``status`` is the run's: one that ended before its first sample has none to wait for."""
        waiting = self.query_one("#sys-waiting", Static)
        waiting.display = latest is None
        if latest is None:
            waiting.update(safe_text("waiting for the first system sample…" if status in ACTIVE
                                     else f"no system sample: the run is {status} and "
                                          "recorded none"))
        for selector in ("#host-name", "#cpu", "#ram", "#rss"):
            self.query_one(selector).display = latest is not None
        if latest is None:
            return
        gpus = [g for g in latest.get("gpus") or [] if isinstance(g, dict)]
        no_gpu = self.query_one("#no-gpu", Static)
        no_gpu.display = not gpus
        if not gpus:
            reason = str(latest.get("gpu_status") or "").strip()
            no_gpu.update(safe_text(reason if reason.lower().startswith("no nvidia gpu")
                                    else "no NVIDIA GPU" + (f" ({reason})" if reason else "")
                                    + " · training on CPU"))
        indices = tuple(_index(g.get("index"), i) for i, g in enumerate(gpus))
        container = self.query_one("#gpus", Vertical)
        if indices != self._gpu_indices:
            self._gpu_indices = indices
            container.remove_children()
            self._blocks = {i: GpuBlock(i) for i in indices}
            container.mount_all(self._blocks.values())
        per_gpu = history.get("gpus", {})
        for index, gpu in zip(indices, gpus):
            self._blocks[index].show(gpu, per_gpu.get(index, {}))
        self.query_one("#cpu", MetricRow).show(
            f" cpu   {_fmt(latest.get('cpu_percent'), '{:5.0f} %')}", history.get("cpu", []))
        self.query_one("#ram", MetricRow).show(
            f" ram   {_gb(latest.get('ram_used_mb'))}/{_gb(latest.get('ram_total_mb'))} GB",
            history.get("ram", []))
        self.query_one("#rss", MetricRow).show(
            f" rss   {_gb(latest.get('proc_rss_mb'))} GB", history.get("rss", []))
