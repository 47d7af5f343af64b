"""CurvePlot: named curves of any length drawn with plotext, downsampled to its width.

API (the compare screen overlays several runs with it)::

    plot = CurvePlot(x_label="iter", id="loss")
    plot.set_curves([Curve("loss", iters, values), Curve("run-b loss", iters_b, values_b)])
    plot.smooth = True      # EMA over ~2% of the x range
    plot.log_y = True       # log-scale y (non-positive points are left out)
    plot.x_time = True      # xs are seconds: the axis shows the time since the smallest x
    plot.y_format = "{:.3f}"  # y tick labels (AP plots: the product's 3-decimal fractions)

With ``x_time`` the xs may be unix times (one run: time since its start) or already
relative (to overlay runs that started at different times, pass each run's ``t - t[0]``).

``Curve`` is a NamedTuple ``(name, xs, ys, color=None)``; plain ``(name, xs, ys)`` tuples
work too. ``xs`` must be ascending (iterations, wall times); ``ys`` may hold NaN (gaps). Any
sequence or numpy array works; a million points cost a few milliseconds, because every
curve is bucketed into one column per character cell keeping its min and max (so spikes stay
visible) before plotext sees it. Rendering is cached until the curves, the size or an
option change; ``last_build_seconds`` says what the last real rebuild cost, so a caller
can throttle live refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from rich.color import Color, ColorParseError
from rich.console import RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from engine.protocol.termtext import printable
from tui.downsample import ema, envelope, minmax_columns, nice_ticks, si_label, smoothing_alpha

__all__ = ["Curve", "CurvePlot", "PALETTE"]

PALETTE = ("cyan+", "orange", "green+", "magenta+", "blue+", "yellow", "red+", "gray",
           "cyan", "green", "magenta", "blue")
"""plotext colours given to curves in order when a curve names none."""

_Y_AXIS_CELLS = 10
"""Cells plotext spends on the y tick labels and the frame (an estimate; a few columns too
many only makes the buckets a little wider than a pixel)."""


def _rich_color(color: object) -> str:
    """A plotext colour (``cyan+``, ``orange``, ``gray``, or an xterm number) for Rich."""
    if isinstance(color, int):
        return f"color({color})"
    name = str(color)
    name = "bright_" + name[:-1] if name.endswith("+") else \
        {"orange": "dark_orange", "gray": "grey50"}.get(name, name)
    try:
        Color.parse(name)
    except ColorParseError:  # a colour plotext knows and Rich does not: no colour
        return ""
    return name


def _legend_lines(names: list[str], colors: list[object], width: int,
                  max_lines: int) -> list[Text]:
    """``━ name`` per curve, in its colour, flowed into lines of ``width`` cells (at most
    ``max_lines``: the plot keeps its rows)."""
    lines: list[Text] = []
    line = Text()
    for name, color in zip(names, colors):
        entry = Text("━ ", style=_rich_color(color)) + Text(printable(name))
        if line.cell_len and line.cell_len + 2 + entry.cell_len > width:
            lines.append(line)
            line = Text()
        if line.cell_len:
            line.append("  ")
        line.append_text(entry)
    if line.cell_len:
        lines.append(line)
    for line in lines:
        line.truncate(width, overflow="ellipsis")
    return lines[:max_lines]


class Curve(NamedTuple):
    """One named curve: ``xs`` ascending, ``ys`` the values (NaN = no value)."""

    name: str
    xs: Any
    ys: Any
    color: str | None = None


def _elapsed_unit(span_s: float) -> tuple[float, str]:
    if span_s < 2 * 60:
        return 1.0, "s"
    if span_s < 2 * 3600:
        return 60.0, "min"
    if span_s < 3 * 86400:
        return 3600.0, "h"
    return 86400.0, "d"


class CurvePlot(PlotextPlot):
    """Line plot of named curves, min/max-downsampled to its width (see module docstring)."""

    DEFAULT_CSS = """
    CurvePlot {
        width: 1fr;
        height: 1fr;
        min-height: 5;
    }
    """

    smooth: reactive[bool] = reactive(False)
    """Draw each curve as an EMA over ~2% of the x range instead of its min/max band."""
    log_y: reactive[bool] = reactive(False)
    """Log-scale y axis (values <= 0 are left out)."""
    x_time: reactive[bool] = reactive(False)
    """The xs are unix times: plot time elapsed since the earliest x, in s/min/h/d."""
    x_label: reactive[str] = reactive("iter")
    """Label of the x axis when ``x_time`` is off."""
    empty_text: reactive[str] = reactive("no data yet")
    """What to show when there is no point to draw."""

    def __init__(self, *, x_label: str = "iter", y_format: str | None = None,
                 name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.set_reactive(CurvePlot.x_label, x_label)
        self.y_format = y_format
        """Format of the y tick labels (None: plotext's own), e.g. ``"{:.3f}"`` for AP."""
        self._curves: list[Curve] = []
        self._version = 0
        self._cache_key: tuple | None = None
        self._cache: RenderableType = Text()
        self.last_build_seconds = 0.0
        """Seconds the last real (uncached) plot rebuild took."""

    @property
    def curves(self) -> list[Curve]:
        """The curves currently drawn (read only)."""
        return list(self._curves)

    def set_curves(self, curves: Sequence[Curve | tuple]) -> None:
        """Replace the curves and redraw."""
        self._curves = [c if isinstance(c, Curve) else Curve(*c) for c in curves]
        self._version += 1
        self.refresh()

    def watch_smooth(self) -> None:
        self.refresh()

    def watch_log_y(self) -> None:
        self.refresh()

    def watch_x_time(self) -> None:
        self.refresh()

    def render(self) -> RenderableType:
        width, height = self.size.width, self.size.height
        key = (self._version, width, height, self.smooth, self.log_y, self.x_time,
               self.x_label, self.empty_text, self.y_format, self.app.theme, self.theme)
        if key != self._cache_key:
            started = time.perf_counter()
            self._cache = self._build(width, height)
            self.last_build_seconds = time.perf_counter() - started
            self._cache_key = key
        return self._cache

    def _prepared(self, columns: int
                  ) -> tuple[list[tuple[Curve, np.ndarray, np.ndarray]], float, float]:
        """Each curve reduced to at most ``2 * columns`` points, and the x span of all."""
        curves = [(c, np.asarray(c.xs, dtype=np.float64), np.asarray(c.ys, dtype=np.float64))
                  for c in self._curves]
        curves = [(c, x, y) for c, x, y in curves if x.size and x.size == y.size]
        if not curves:
            return [], 0.0, 0.0
        x_lo = min(float(x[0]) for _, x, _ in curves)
        x_hi = max(float(x[-1]) for _, x, _ in curves)
        out = []
        for curve, x, y in curves:
            if self.log_y:
                y = np.where(y > 0, y, np.nan)
            px, py = self._reduce(x, y, columns, (x_lo, x_hi))
            if px.size:
                out.append((curve, px, py))
        return out, x_lo, x_hi

    def _reduce(self, x: np.ndarray, y: np.ndarray, columns: int,
                x_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        if self.smooth:
            if x.size <= columns:
                keep = ~np.isnan(y)
                x, y = x[keep], y[keep]
                return x, (ema(y, smoothing_alpha(y.size)) if y.size else y)
            cols = minmax_columns(x, y, columns, x_range)
            return cols.x, ema(cols.mean, smoothing_alpha(columns))
        return envelope(x, y, columns, x_range)

    def _format_y_ticks(self, ys: list[np.ndarray], height: int) -> None:
        """Ticks from the lowest to the highest value (as plotext places them), as many as
        the rows allow, labelled with ``y_format``."""
        values = np.concatenate(ys)
        values = values[np.isfinite(values)]
        if not values.size:
            return
        lo, hi = float(values.min()), float(values.max())
        count = max(2, min(5, (height - 4) // 2 + 1))
        ticks, labels = [], []
        for tick in np.linspace(lo, hi, count).tolist() if hi > lo else [lo]:
            label = self.y_format.format(tick)
            if label not in labels:  # a tiny range: fewer ticks rather than repeated ones
                ticks.append(tick)
                labels.append(label)
        self.plt.yticks(ticks, labels)

    def _build(self, width: int, height: int) -> RenderableType:
        if width < 12 or height < 4:
            return Text("")
        # One min/max bucket per cell: a spike still draws its stroke, and plotext (which
        # rasterises in Python) has half the points to draw than with one per pixel.
        columns = max(8, width - _Y_AXIS_CELLS)
        prepared, t0, t1 = self._prepared(columns)
        if not prepared:
            return Text(self.empty_text, style="dim", justify="center")
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        scale, unit = _elapsed_unit(t1 - t0) if self.x_time else (1.0, "")
        colors = [curve.color or PALETTE[i % len(PALETTE)] for i, (curve, _, _) in
                  enumerate(prepared)]
        # plotext draws its legend over the plot's top left corner, a line per curve: with
        # many curves in a low pane (7 loss terms at 80x24) it would hide the plot, so the
        # legend goes on lines of its own under it.
        legend = None
        if len(prepared) > max(1, (height - 4) // 3):
            legend = _legend_lines([c.name for c, _, _ in prepared], colors, width,
                                   max_lines=max(0, height - 6))
            height -= len(legend)
        for (curve, px, py), color in zip(prepared, colors):
            xs = ((px - t0) / scale) if self.x_time else px
            # The label comes from events or run ids and plotext's output is parsed as ANSI
            # below: an escape in a name would become a link or a style. Visible escapes.
            plt.plot(xs.tolist(), py.tolist(), marker="braille",
                     label=None if legend is not None else printable(curve.name), color=color)
        lo = 0.0 if self.x_time else t0
        hi = (t1 - t0) / scale if self.x_time else t1
        ticks = nice_ticks(lo, hi)
        if ticks:
            plt.xticks(ticks, [f"{t:g}" if self.x_time else si_label(t) for t in ticks])
        if hi > lo:
            plt.xlim(lo, hi)
        plt.xlabel(f"elapsed ({unit})" if self.x_time else self.x_label)
        if self.y_format and not self.log_y:
            self._format_y_ticks([py for _, _, py in prepared], height)
        plt.yscale("log" if self.log_y else "linear")
        plt.plotsize(width, height)
        plt._set_size(width, height)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        plot = Text.from_ansi(plt.build())
        if legend:
            plot.rstrip()
            plot.append("\n")
            plot.append(Text("\n").join(legend))
        return plot
