"""The monitor's widgets on their own: CurvePlot, LogView, SystemPanel, EvalTable."""

from __future__ import annotations

from typing import Any

import numpy as np
from textual.app import App, ComposeResult

from tests.tui.conftest import run_pilot
from tui.widgets.curves import Curve, CurvePlot
from tui.widgets.eval_table import EvalTable, format_ap
from tui.widgets.log_panel import LogView, is_error_line
from tui.widgets.system_panel import SystemPanel


class One(App[None]):
    """An app holding one widget."""

    def __init__(self, widget: Any) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def test_curve_plot_draws_a_million_points_and_keeps_the_spike() -> None:
    x = np.arange(1, 1_000_001, dtype=float)
    y = 1.0 + 0.1 * np.sin(x / 5000)
    y[777_777] = 9.0
    plot = CurvePlot(id="plot")

    async def scenario(pilot: Any) -> None:
        plot.set_curves([Curve("loss", x, y), ("loss_cls", x, y / 2)])
        await pilot.pause()
        text = str(plot.render())
        assert "loss" in text and "loss_cls" in text and "iter" in text
        prepared, lo, hi = plot._prepared(plot.size.width - 10)
        assert (lo, hi) == (1.0, 1_000_000.0)
        assert len(prepared[0][1]) <= 2 * plot.size.width and prepared[0][2].max() == 9.0
        assert plot.last_build_seconds > 0
        plot.smooth = True
        await pilot.pause()
        prepared, _, _ = plot._prepared(plot.size.width - 10)
        assert prepared[0][2].max() < 2.0  # an EMA over ~2% of the run flattens one step

    run_pilot(One(plot), scenario, size=(100, 30))


def test_curve_plot_log_scale_wall_time_and_empty_state() -> None:
    plot = CurvePlot(id="plot")

    async def scenario(pilot: Any) -> None:
        await pilot.pause()
        assert "no data yet" in str(plot.render())
        t = 1_700_000_000.0 + np.arange(100) * 60.0  # 99 minutes
        plot.set_curves([Curve("loss", t, np.linspace(-1, 1, 100))])
        plot.log_y = True
        plot.x_time = True
        await pilot.pause()
        prepared, _, _ = plot._prepared(90)
        assert prepared[0][2].min() > 0  # non-positive values left out on a log scale
        assert "elapsed (min)" in str(plot.render())

    run_pilot(One(plot), scenario, size=(100, 30))


def test_log_view_prunes_finds_and_prefers_tracebacks() -> None:
    view = LogView("train.log", max_lines=100)

    async def scenario(pilot: Any) -> None:
        view.append(f"line {i}" for i in range(150))
        view.append(["ERROR loader failed", "Traceback (most recent call last):",
                     "ValueError: bad box"])
        await pilot.pause()
        assert len(view.lines) == 100 and view.first_index == 53
        assert view.lines[0] == "line 53"
        hit = view.find("line 6", after=None)
        assert hit is not None and view.lines[hit - view.first_index] == "line 60"
        wrapped = view.find("line 53", after=view.first_index + 99)
        assert wrapped == view.first_index  # wraps around to the top
        assert view.find("line 61", after=hit, backwards=True) == 53 + 8  # before: line 61
        first = view.first_error()
        assert view.lines[first - view.first_index].startswith("Traceback")
        assert is_error_line("RuntimeError: CUDA out of memory")
        assert not is_error_line("iter 10 loss 0.3")

    run_pilot(One(view), scenario, size=(80, 20))


def test_system_panel_shows_each_gpu() -> None:
    panel = SystemPanel(id="system")
    gpu = {"index": 0, "name": "NVIDIA H100", "util": 97.0, "mem_used_mb": 40960.0,
           "mem_total_mb": 81920.0, "temperature": 71.0, "power_w": 600.0}
    sample = {"cpu_percent": 12.0, "ram_used_mb": 2048.0, "ram_total_mb": 4096.0,
              "proc_rss_mb": 512.0, "gpus": [gpu, {**gpu, "index": 1, "util": None}],
              "gpu_status": ""}
    history = {"cpu": [10.0, 12.0], "ram": [2048.0] * 2, "rss": [512.0] * 2,
               "gpus": {0: {"util": [90.0, 97.0]}, 1: {"util": [float("nan")]}}}

    async def scenario(pilot: Any) -> None:
        panel.update_system(sample, history)
        await pilot.pause()
        assert panel.gpu_count == 2 and not panel.query_one("#no-gpu").display
        text = " ".join(str(w.render()) for w in panel.query("Static"))
        assert "GPU 0 · NVIDIA H100" in text and "97 %" in text and "40.0/80.0 GB" in text
        assert "n/a" in text  # GPU 1 does not report its utilisation
        assert "600 W" in text and "71 °C" in text

    run_pilot(One(panel), scenario, size=(80, 30))


def test_eval_table_formats_and_orders_models() -> None:
    table = EvalTable(id="evals")
    event = {"epoch": 1, "iter": 10, "metrics": {"AP": 0.4, "AP50": 0.6},
             "per_class": {"cat": 0.5}}

    async def scenario(pilot: Any) -> None:
        table.update_evals({"student": event, "ema": event, "teacher": event})
        await pilot.pause()
        summary = table.query_one("#eval-summary")
        rows = [[str(c).strip() for c in summary.get_row_at(i)] for i in range(3)]
        assert [r[0] for r in rows] == ["teacher", "student", "ema"]
        assert rows[0][1:4] == ["0.400", "0.600", "-"]  # AP, AP50; AP75 missing

    run_pilot(One(table), scenario, size=(100, 20))
    # one convention in the whole product: a 0-1 fraction with 3 decimals, never a percentage
    assert format_ap(0.3721) == "0.372" and format_ap(None) == "-"
    assert format_ap(float("nan")) == "-"
