"""Issue 19.16, the TUI's part: the home header names the runs folder once, the help lists
each key once, the per-class table keeps its title on one line, the selection marker is not
the running status's glyph, the semi sparkline has no hole, and a loss plot with many
terms keeps its legend off the curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from textual.app import App, ComposeResult

from tests.tui.conftest import make_app, run_pilot, wait_for
from tui.widgets.curves import Curve, CurvePlot


def test_home_header_names_the_runs_folder_once(runs_dir: Path, make_runs: Any) -> None:
    from textual.widgets import Static

    make_runs("20250101-100000-alpha")
    make_runs("20250101-110000-bravo", offset=3600)
    app = make_app(runs_dir)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: len(app.home.rows) == 2, what="the scan")
        bar = str(app.home.query_one("#title-text", Static).render())
        assert bar == f"dettui · 2 runs in {runs_dir}/", bar

    run_pilot(app, scenario)


def test_help_lists_each_key_once() -> None:
    from tui.screens.help import HelpScreen

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(HelpScreen())

    app = Host()

    async def scenario(pilot: Any) -> None:
        await pilot.pause(0.2)
        console = Console(width=200, color_system=None)
        with console.capture() as capture:
            console.print(app.screen._render_groups())
        text = capture.get()
        assert "1-5" in text and "1-4" not in text, text  # the monitor's panes: one line
        assert "←→ Scroll sideways" in text and "Scroll left" not in text, text

    run_pilot(app, scenario, size=(160, 60))


def test_per_class_table_keeps_its_title_on_one_line() -> None:
    from tui.cli.headless import eval_table, models_table

    console = Console(width=80, color_system=None)
    with console.capture() as capture:
        console.print(eval_table({"model": "ema", "epoch": 4, "per_class": {"a": 0.5}}))
        console.print(models_table([{"model": "s", "epoch": 4, "metrics": {}}]))
    lines = capture.get().splitlines()
    assert "per-class AP (ema, epoch 5)" in [line.strip() for line in lines], lines


def test_selection_marker_is_not_the_running_glyph(runs_dir: Path) -> None:
    from tui.runs.index import RunRow
    from tui.widgets.runs_table import STATUS_STYLE, row_cells

    row = RunRow("a", "a", "running", "Trainer", "", runs_dir)
    marker = row_cells(row, selected=True, now=0.0)[0]
    assert str(marker).strip() and str(marker) not in {g for g, _ in STATUS_STYLE.values()}


def test_semi_sparkline_has_no_hole_between_values() -> None:
    from tui.widgets.semi_panel import sparkline

    # logged at step 1, then every 5 steps: unevenly spaced
    xs = np.array([1.0, *range(5, 101, 5)])
    for width in (16, 21, 24, 30):
        line = sparkline(xs, np.sin(xs / 10), width)
        assert " " not in line, (width, line)
    # a stat that starts in the semi phase still leaves the burn-in cells blank
    assert sparkline([1, 2, 3, 4], [float("nan"), float("nan"), 1.0, 2.0], 8) == "  ▁█"


class One(App[None]):
    def __init__(self, widget: Any) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


def test_many_loss_terms_put_the_legend_under_a_low_plot() -> None:
    plot = CurvePlot(id="plot")
    names = ["loss", *(f"loss_term{i}" for i in range(7))]
    x = np.arange(1.0, 201.0)

    async def scenario(pilot: Any) -> None:
        plot.set_curves([Curve(n, x, np.linspace(2.0, 0.5, 200) * (k + 1))
                         for k, n in enumerate(names)])
        await pilot.pause()
        lines = plot.render().plain.splitlines()
        legend_at = next(i for i, line in enumerate(lines) if "━ loss" in line)
        plot_part = "\n".join(lines[:legend_at])
        assert not any(n in plot_part for n in names), plot_part  # the curves stay clear
        assert all(n in "\n".join(lines[legend_at:]) for n in names)
        assert len(lines) <= 12

    run_pilot(One(plot), scenario, size=(76, 12))
