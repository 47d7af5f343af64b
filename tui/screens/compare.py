"""Compare runs: their loss and AP curves overlaid, and the config keys that differ.

Everything is read from the run directories (``run.json``, ``config.yaml``,
``events.jsonl``) in a thread worker; the pure helpers (``read_run_curves``,
``config_diff``) have no UI and are tested on their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Static

from engine.config.loader import read_yaml_mapping
from engine.protocol.events import METRIC_KEYS
from engine.protocol.rundir import RunDirectory
from engine.weightsource import started_from
from tui.runs.eventscan import TERM_PREFIX
from tui.runs.runmodel import RunModel
from tui.safetext import safe_text
from tui.widgets.curves import PALETTE, Curve, CurvePlot

# eval events of one run may hold several models (teacher/student/ema); one is compared.
EVAL_MODEL_PREFERENCE = ("model", "ema", "student", "teacher")
MISSING = object()
"""A config key that a run does not have (shown as ``—``)."""
# plotext colour names of CurvePlot.PALETTE as Rich colours, for the table's legend.
RICH_COLORS = {"cyan+": "bright_cyan", "orange": "dark_orange", "green+": "bright_green",
               "magenta+": "bright_magenta", "blue+": "bright_blue", "yellow": "yellow",
               "red+": "bright_red", "gray": "grey50", "cyan": "cyan", "green": "green",
               "magenta": "magenta", "blue": "blue"}


def run_color(index: int) -> str:
    """The plotext colour of the ``index``-th compared run."""
    return PALETTE[index % len(PALETTE)]


@dataclass
class RunCurves:
    """What the compare screen needs from one run."""

    path: Path
    id: str
    meta: dict[str, Any]
    config: dict[str, Any]
    loss: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    """Loss term (``loss`` is the total) -> (global iterations, values)."""
    metrics: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    """COCO metric (AP, AP50...) -> (global iterations, values) of ``eval_model``."""
    eval_model: str | None = None


def _series(x: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """The points with a numeric iteration and value."""
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep].tolist(), y[keep].tolist()


def read_run_curves(path: Path) -> RunCurves:
    """Read a run's metadata, resolved config and loss/metric series, with the run
    monitor's reader (:class:`tui.runs.runmodel.RunModel`: the engine's ``events.idx`` when it
    checks out, else the parallel parser), so a resume's ``start`` event rewinds the series
    to its ``start_iter`` exactly as the monitor shows it."""
    run = RunDirectory(path)
    meta = run.read_meta()
    # With the config loader's checks: a planted alias bomb or FIFO must not freeze the TUI.
    config = read_yaml_mapping(run.config_yaml) if run.config_yaml.exists() else {}
    curves = RunCurves(path, run.id, meta, config if isinstance(config, dict) else {})
    model = RunModel(path)
    model.load_history()
    model.catch_up()  # what was appended meanwhile
    train = model.train.views()
    iters = train["iter"]
    for name in ["loss", *(TERM_PREFIX + t for t in model.train.terms() if t != "loss")]:
        xs, ys = _series(iters, train[name])
        if xs:
            curves.loss[name.removeprefix(TERM_PREFIX)] = (xs, ys)
    evals = model.eval_metrics()
    for name in (*EVAL_MODEL_PREFERENCE, *sorted(evals)):
        if name in evals:
            curves.eval_model, curves.metrics = name, evals[name]
            break
    return curves


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_diff(configs: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The dotted keys whose values are not the same in every config, in config order;
    a key absent from a config has the value ``MISSING``."""
    flat = [flatten(c) for c in configs]
    keys: dict[str, None] = {}
    for f in flat:
        keys.update(dict.fromkeys(f))
    out = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flat]
        if any(_canon(v) != _canon(values[0]) for v in values[1:]):
            out.append((key, values))
    return out


def _canon(value: Any) -> str:
    if value is MISSING:
        return "\0missing"
    return json.dumps(value, sort_keys=True, default=str)


def _ap(value: Any) -> Any:
    return f"{value:.3f}" if isinstance(value, (int, float)) else MISSING


def _best_ap(meta: dict[str, Any]) -> Any:
    """run.json's best AP, with the model that scored it when that is not the trained
    model itself (a semi-supervised run's teacher or student, an EMA)."""
    best = meta.get("best") if isinstance(meta.get("best"), dict) else {}
    text = _ap(best.get("value"))
    which = best.get("model")
    if text is not MISSING and isinstance(which, str) and which != "model":
        text = f"{text} ({which})"
    return text


MAX_COLUMN = 48
"""Widest a run's column gets: one long value (a list of augmentations, ~300 characters)
must not push the other runs' columns hundreds of presses of → away. A longer value ends
in "…"; enter shows the row's values whole."""
MIN_COLUMN = 12
KEY_COLUMN = 40


def value_text(value: Any) -> str:
    """A config value as the table shows it (JSON for everything but strings)."""
    if value is MISSING:
        return "—"
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def fmt_value(value: Any) -> Text:
    if value is MISSING:
        return Text("—", style="dim")
    # from run.json or config.yaml: no raw control characters
    return _cut(safe_text(value_text(value)))


def _cut(text: Text) -> Text:
    """A cell that ends in "…" where its column is too narrow (enter shows it whole)."""
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def column_width(table_width: int, runs: int, key_width: int) -> int:
    """The width of each run's column: an equal share of what the key column leaves,
    between MIN_COLUMN and MAX_COLUMN."""
    share = (table_width - key_width - 4) // max(1, runs) - 2  # borders, cell padding
    return max(MIN_COLUMN, min(MAX_COLUMN, share))


class ValueScreen(ModalScreen[None]):
    """One row of the compare table with every value whole (enter on the row)."""

    DEFAULT_CSS = """
    ValueScreen { align: center middle; }
    ValueScreen > VerticalScroll {
        width: 90%; height: auto; max-height: 90%;
        border: thick $primary; border-title-style: bold;
        background: $surface; padding: 0 1;
    }
    ValueScreen Static { margin-bottom: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close", key_display="esc"),
    ]

    def __init__(self, key: str, values: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.key = key
        self.values = values

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = safe_text(self.key)  # a config key: text, not markup
            for run_id, value in self.values:
                yield Static(Text.assemble(safe_text(run_id, "bold"), "\n",
                                           safe_text(value_text(value))))

    def action_close(self) -> None:
        self.dismiss(None)


class CompareScreen(Screen[None]):
    """Overlay the curves of two or more runs and list how their configs differ."""

    DEFAULT_CSS = """
    CompareScreen #compare-title {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    CompareScreen #compare-plots {
        height: 1fr;
    }
    CompareScreen #compare-plots > CurvePlot {
        width: 1fr;
        border: round $panel-lighten-2;
        border-title-style: bold;
    }
    CompareScreen #compare-table {
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-style: bold;
    }
    CompareScreen #compare-table:focus {
        border: round $accent;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back", key_display="q"),  # as in the monitor
        Binding("t", "cycle_loss", "Loss term"),
        Binding("m", "cycle_metric", "Metric"),
        Binding("l", "toggle_log", "Log loss"),
        Binding("a", "toggle_all_keys", "All keys"),
        Binding("enter", "show_values", "Whole values", show=False),
    ]

    class Loaded(Message):
        """Posted by the reader worker."""

        def __init__(self, runs: list[RunCurves]) -> None:
            super().__init__()
            self.runs = runs

    def __init__(self, run_paths: list[Path]) -> None:
        super().__init__()
        self.run_paths = [Path(p) for p in run_paths]
        self.runs: list[RunCurves] = []
        self.loss_term = "loss"
        self.metric = "AP"
        self.all_keys = False
        self.rows: list[tuple[str, list[Any]]] = []
        """The table's rows: key and each run's value (whole)."""

    def compose(self) -> ComposeResult:
        yield Static(f"Comparing {len(self.run_paths)} runs… reading their events",
                     id="compare-title")
        with Horizontal(id="compare-plots"):
            yield CurvePlot(id="compare-loss")
            yield CurvePlot(id="compare-metric", y_format="{:.3f}")  # AP: 0-1, 3 decimals

        table: DataTable[object] = DataTable(id="compare-table", zebra_stripes=True,
                                             cursor_type="row")
        table.border_title = "Config keys that differ"
        yield table
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._read(self.run_paths)
        self.query_one("#compare-table").focus()

    @work(thread=True, exit_on_error=False, group="compare-read")
    def _read(self, paths: list[Path]) -> None:
        self.post_message(self.Loaded([read_run_curves(p) for p in paths]))

    def on_compare_screen_loaded(self, message: Loaded) -> None:
        self.runs = message.runs
        names = ", ".join(r.id for r in self.runs)
        self.query_one("#compare-title", Static).update(
            Text.assemble(("Compare ", "bold"), safe_text(names)))
        self._draw_plots()
        self._fill_table()

    # ----------------------------------------------------------------- drawing

    def _loss_terms(self) -> list[str]:
        terms: dict[str, None] = {}
        for run in self.runs:
            terms.update(dict.fromkeys(run.loss))
        return list(terms) or ["loss"]

    def _draw_plots(self) -> None:
        loss = self.query_one("#compare-loss", CurvePlot)
        loss.border_title = safe_text(f"{self.loss_term} (t: next term)")  # an event's term
        loss.set_curves([Curve(r.id, *r.loss[self.loss_term], run_color(i))
                         for i, r in enumerate(self.runs) if self.loss_term in r.loss])
        metric = self.query_one("#compare-metric", CurvePlot)
        metric.border_title = f"{self.metric} (m: next metric)"
        metric.set_curves([Curve(r.id, *r.metrics[self.metric], run_color(i))
                           for i, r in enumerate(self.runs) if self.metric in r.metrics])

    def _fill_table(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        summary = [
            ("status", [r.meta.get("status", "?") for r in self.runs]),
            ("trainer", [r.meta.get("trainer", "?") for r in self.runs]),
            ("best AP", [_best_ap(r.meta) for r in self.runs]),
            ("eval model", [r.eval_model or MISSING for r in self.runs]),
            ("weights", [started_from(r.meta) for r in self.runs]),  # what each started from
        ]
        configs = [r.config for r in self.runs]
        if self.all_keys:
            rows = [(k, [flatten(c).get(k, MISSING) for c in configs])
                    for k in flatten(configs[0]) if configs]
        else:
            rows = config_diff(configs)
        self.rows = summary + rows
        table_width = table.size.width or self.size.width
        # the keys get at most a third of the width: the runs' values are what is compared
        key_width = min(KEY_COLUMN, max(12, table_width // 3),
                        max((safe_text(k).cell_len for k, _ in self.rows), default=3))
        width = column_width(table_width, len(self.runs), key_width)
        table.add_column("key", key="key", width=key_width)
        for i, run in enumerate(self.runs):
            color = RICH_COLORS.get(run_color(i), "default")
            # as shown: control characters take their visible escapes' cells
            natural = max((fmt_value(v[i]).cell_len for _, v in self.rows), default=0)
            table.add_column(Text.assemble(("■ ", color), safe_text(run.id)), key=run.path.name,
                             width=min(width, max(natural, len(run.id) + 2)))
        for n, (key, values) in enumerate(self.rows):
            label = Text(key, style="bold") if n < len(summary) else _cut(safe_text(key, "cyan"))
            table.add_row(label, *map(fmt_value, values))
        differ = len(config_diff(configs))
        table.border_title = (f"Config: all keys ({differ} differ) · a: only the differences"
                              if self.all_keys else
                              f"Config keys that differ ({differ}) · a: all keys")
        table.border_subtitle = "enter: a row's values whole"

    def on_resize(self) -> None:
        if self.runs:
            self._fill_table()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()  # enter on a row (the table's own key): its values whole
        self.action_show_values()

    def action_show_values(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        if not self.rows or not 0 <= table.cursor_row < len(self.rows):
            return
        key, values = self.rows[table.cursor_row]
        self.app.push_screen(ValueScreen(key, [(r.id, v) for r, v in zip(self.runs, values)]))

    # ----------------------------------------------------------------- actions

    def action_cycle_loss(self) -> None:
        terms = self._loss_terms()
        i = terms.index(self.loss_term) if self.loss_term in terms else -1
        self.loss_term = terms[(i + 1) % len(terms)]
        self._draw_plots()

    def action_cycle_metric(self) -> None:
        i = METRIC_KEYS.index(self.metric)
        self.metric = METRIC_KEYS[(i + 1) % len(METRIC_KEYS)]
        self._draw_plots()

    def action_toggle_log(self) -> None:
        plot = self.query_one("#compare-loss", CurvePlot)
        plot.log_y = not plot.log_y

    def action_toggle_all_keys(self) -> None:
        self.all_keys = not self.all_keys
        self._fill_table()
