"""The run monitor's pane for semi-supervised and co-tuning runs.

* semi-supervised (DenseTeacher, ARSL, Semi_RTDETR): the phase and when the next one
  starts, and each pseudo-label statistic of the train events (pseudo-labels kept per
  image, mean teacher score, the unsupervised loss weight...) over time, as a row with a
  trend line and its latest, lowest and highest value;
* co-tuning: the learned relationship, for each target class its top source classes with
  their probabilities (``cot_relationship.json``), or why it can't be shown.

Class and statistic names come from files: they are shown as text, never markup.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.downsample import minmax_columns
from tui.runs.eventscan import STATS_PREFIX
from tui.runs.history import RunSnapshot
from tui.runs.semiinfo import Relationship, phase_line, semi_schedule, stat_label
from tui.safetext import safe_text

__all__ = ["SemiPanel", "pseudo_summary", "run_kind", "sparkline", "strip_text"]

BLOCKS = "▁▂▃▄▅▆▇█"
TREND_WIDTH = 24


def run_kind(snap: RunSnapshot) -> str | None:
    """``semi`` (a phase or pseudo-label stats in the events), ``cot`` (co-tuning), or None."""
    if snap.relationship is not None or snap.relationship_error is not None:
        return "cot"
    if snap.stats or semi_schedule(snap.start, snap.latest_train) is not None:
        return "semi"
    return None


def sparkline(xs: Any, ys: Any, width: int) -> str:
    """The mean of each of ``width`` columns of the whole x range as a block character
    (lowest to highest value); a column without a value is a space, so rows of stats that
    start late (in the semi phase) line up with those reported from the first step."""
    xs = np.asarray(xs, dtype=np.float64)
    if not xs.size or width < 1:
        return ""
    width = min(width, xs.size)  # fewer points than cells: a cell each, no gaps between
    lo, hi = float(xs[0]), float(xs[-1])
    columns = minmax_columns(xs, ys, width, x_range=(lo, hi))
    if not columns.mean.size:
        return ""
    low, high = float(np.min(columns.mean)), float(np.max(columns.mean))
    span = high - low
    chars = [" "] * width
    for x, value in zip(columns.x, columns.mean):
        col = 0 if hi <= lo else min(width - 1, int((x - lo) / (hi - lo) * width))
        level = 0 if span <= 0 else round((value - low) / span * (len(BLOCKS) - 1))
        chars[col] = BLOCKS[level]
    # Unevenly spaced points (logged at step 1, then every log_iter) can leave a column
    # with none between two that have one: that is no gap in the data, so it carries the
    # value before it. Only the columns before the first value stay blank.
    filled = [i for i, c in enumerate(chars) if c != " "]
    for i in range(filled[0] + 1, filled[-1]) if filled else ():
        if chars[i] == " ":
            chars[i] = chars[i - 1]
    return "".join(chars).rstrip()


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def pseudo_summary(latest_train: dict[str, Any] | None, limit: int = 2) -> str:
    """``pseudo points/img 0.5 · teacher score 0.0245`` from the latest train event: the
    pseudo-labels per image and the teacher's score first (every trainer reports both), the
    unsupervised weight left out."""
    stats = (latest_train or {}).get("stats")
    if not isinstance(stats, dict):
        return ""
    names = [str(k) for k, v in stats.items() if k != "unsup_weight"
             and isinstance(v, (int, float)) and not isinstance(v, bool)]
    first = [next((n for n in names if n.endswith("per_image")), None),
             next((n for n in names if "score" in n), None)]
    ordered = [n for n in first if n] + [n for n in names if n not in first]
    return " · ".join(f"{stat_label(n)} {_fmt(float(stats[n]))}" for n in ordered[:limit])


def strip_text(snap: RunSnapshot, kind: str) -> str:
    """The monitor's one line under the header: the phase and the latest pseudo-label
    numbers (semi), or whether the relationship is there (co-tuning)."""
    if kind == "cot":
        rel = snap.relationship
        return (f"co-tuning · relationship learned for {len(rel.rows)} target classes · "
                "5: top source classes" if rel is not None
                else f"co-tuning · {snap.relationship_error}")
    schedule = semi_schedule(snap.start, snap.latest_train)
    text = phase_line(schedule) if schedule else "phase: not known yet"
    pseudo = pseudo_summary(snap.latest_train)
    return text + (f" · {pseudo}" if pseudo else "")


def stats_table(snap: RunSnapshot, width: int = TREND_WIDTH) -> RenderableType:
    """One row per pseudo-label statistic: trend over the run, latest, lowest, highest."""
    if not snap.stats:
        return Text("no pseudo-label statistics yet (the trainer reports them once the semi "
                    "phase runs)", style="dim")
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    table.add_column("pseudo-labels")
    table.add_column("trend", no_wrap=True)
    for name in ("latest", "min", "max"):
        table.add_column(name, justify="right")
    xs = snap.train["iter"]
    for name in snap.stats:
        ys = snap.train[STATS_PREFIX + name]
        finite = ys[np.isfinite(ys)]
        if finite.size:
            last, low, high = float(finite[-1]), float(finite.min()), float(finite.max())
        else:
            last = low = high = float("nan")
        table.add_row(safe_text(stat_label(name)), Text(sparkline(xs, ys, width), style="cyan"),
                      _fmt(last), _fmt(low), _fmt(high))
    return table


def relationship_table(rel: Relationship) -> RenderableType:
    """For each target class its top source classes, best first, with probabilities."""
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    table.add_column("target class")
    table.add_column("boxes", justify="right")
    table.add_column("top source classes (probability)")
    for target, pairs, count in rel.rows:
        sources = Text()
        for i, (source, p) in enumerate(pairs):
            if i:
                sources.append(" · ", style="dim")
            sources.append_text(safe_text(source))
            sources.append(f" {p:.2f}", style="bold" if i == 0 else "")
        note = "" if count is None else (f"{count}" if count else "0 (uniform)")
        table.add_row(safe_text(target), note, sources)
    caption = Text(f"{len(rel.rows)} target classes · {rel.source_count} source classes "
                   f"(names from: ", style="dim")
    caption.append_text(safe_text(rel.source_names_from, "dim"))
    caption.append(")", style="dim")
    return Group(Text("co-tuning relationship: target → source classes", style="bold"),
                 table, caption)


class SemiPanel(VerticalScroll):
    """Phase, pseudo-label statistics (semi) or the class relationship (co-tuning)."""

    DEFAULT_CSS = """
    SemiPanel {
        height: 1fr;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        #semi-phase { height: auto; margin-bottom: 1; }
        #semi-body { height: auto; }
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="semi-phase")
        yield Static("", id="semi-body")

    def update_snapshot(self, snap: RunSnapshot) -> None:
        kind = run_kind(snap)
        key = (kind, snap.train_version, snap.meta_version, self.size.width)
        if key == self._shown:
            return
        self._shown = key
        phase = self.query_one("#semi-phase", Static)
        body = self.query_one("#semi-body", Static)
        if kind == "cot":
            phase.update(Text("co-tuning: the source detector's classifier is kept as a "
                              "second head, trained toward each target class's source "
                              "classes", style="dim"))
            if snap.relationship is not None:
                body.update(relationship_table(snap.relationship))
            else:
                body.update(safe_text(snap.relationship_error or "", "yellow"))
            return
        schedule = semi_schedule(snap.start, snap.latest_train)
        phase.update(Text(phase_line(schedule), style="bold") if schedule
                     else Text("phase: not known yet", style="dim"))
        width = max(8, min(60, self.size.width - 50)) if self.size.width else TREND_WIDTH
        body.update(stats_table(snap, width))
