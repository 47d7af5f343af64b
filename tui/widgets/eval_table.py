"""The latest evaluation: COCO metrics per evaluated model, and AP per class.

Semi-supervised runs evaluate a teacher and a student (and some an EMA model): the summary
has one row per ``model`` value of the latest ``eval`` events, the per-class table one
column per model, so the two can be compared class by class.

AP is shown as everywhere in dettui: a fraction on the 0-1 scale with 3 decimals. The
summary is narrow enough for the eval pane of a 120-column terminal (the epoch and
iteration of the evaluation are on the caption line above it), and it never scrolls
sideways: a horizontal scrollbar would hide its one data row.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.protocol.events import METRIC_KEYS
from tui.safetext import safe_text

__all__ = ["EvalTable", "MODEL_ORDER", "format_ap"]

MODEL_ORDER = ("teacher", "student", "ema", "model")
"""Row order of the evaluated models (others follow, by name)."""


def format_ap(value: object) -> str:
    """An AP on the 0-1 scale, shown on that scale with 3 decimals; '-' when missing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return f"{value:.3f}"
    return "-"


def _ordered(models: list[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(MODEL_ORDER)}
    return sorted(models, key=lambda m: (rank.get(m, len(rank)), m))


class EvalTable(Vertical):
    """Summary metrics per model and per-class AP of the latest evaluation."""

    DEFAULT_CSS = """
    EvalTable {
        height: 1fr;
        #eval-empty { color: $text-muted; padding: 0 1; }
        #eval-caption { color: $text-muted; padding: 0 1; height: 1; text-wrap: nowrap;
                        text-overflow: ellipsis; }
        #eval-summary { height: 2; margin-bottom: 1; overflow-x: hidden; }
        #eval-classes { height: 1fr; }
        DataTable { scrollbar-size-vertical: 1; }
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        caption = Static("", id="eval-caption")
        caption.display = False
        yield caption
        # no cell padding: each cell brings its own leading space (7 columns in 44 cells)
        summary = DataTable(id="eval-summary", cursor_type="row", zebra_stripes=True,
                            cell_padding=0)
        summary.display = False
        yield summary
        per_class = DataTable(id="eval-classes", cursor_type="row", zebra_stripes=True)
        per_class.display = False
        yield per_class

    def update_evals(self, latest: dict[str, dict[str, Any]]) -> None:
        """Show the latest ``eval`` event of each model (``{model: event}``)."""
        key = tuple(sorted((m, id(e)) for m, e in latest.items()))
        if key == self._shown:
            return
        self._shown = key
        models = _ordered(list(latest))
        empty = not models  # the AP plot above says "no evaluation yet": once is enough
        caption = self.query_one("#eval-caption", Static)
        summary = self.query_one("#eval-summary", DataTable)
        per_class = self.query_one("#eval-classes", DataTable)
        summary.display = caption.display = not empty
        if empty:
            per_class.display = False
            return
        newest = max((latest[m] for m in models), key=lambda e: _number(e.get("iter")))
        epoch = newest.get("epoch")  # 0-based in events; shown 1-based, as in the header
        caption.update(Text(f"latest evaluation · epoch "
                            f"{_int(epoch + 1 if isinstance(epoch, int) else None)} · "
                            f"iter {_int(newest.get('iter'))}"))
        # Every cell is known here, so the columns get their widths now (fixed), rather
        # than when the table next goes idle: a picture taken in between would show them
        # cut to their headers' width.
        summary.clear(columns=True)
        summary.styles.height = len(models) + 1  # a header and a row per model, no scroll
        best_ap = max((_metric(latest[m], "AP") for m in models), default=float("nan"))
        rows = []
        for model in models:
            event = latest[model]
            cells = [safe_text(f" {model}")]  # model and class names: text, never markup
            for metric in METRIC_KEYS:
                text = format_ap(_metric(event, metric))
                bold = metric == "AP" and len(models) > 1 and _metric(event, "AP") == best_ap
                cells.append(Text(f" {text}", style="bold green" if bold else "",
                                  justify="right"))
            rows.append((model, cells))
        labels = [Text(" model"), *(Text(f" {m}", justify="right") for m in METRIC_KEYS)]
        for i, (key, label) in enumerate(zip(("model", *METRIC_KEYS), labels)):
            summary.add_column(label, key=key, width=_widest([label, *(r[i] for _, r in rows)]))
        for model, cells in rows:
            summary.add_row(*cells, key=model)
        classes: list[str] = []
        for model in models:
            for name in (latest[model].get("per_class") or {}):
                if name not in classes:
                    classes.append(name)
        per_class.display = bool(classes)
        per_class.clear(columns=True)
        if not classes:
            return
        table_rows = [[safe_text(name)] + [
            Text(format_ap((latest[m].get("per_class") or {}).get(name)), justify="right")
            for m in models] for name in classes]
        headers = [Text("class")] + [safe_text(f"{m} AP" if len(models) > 1 else "AP")
                                     for m in models]
        for i, (key, label) in enumerate(zip(("class", *models), headers)):
            per_class.add_column(label, key=key,
                                 width=_widest([label, *(r[i] for r in table_rows)]))
        for name, row in zip(classes, table_rows):
            per_class.add_row(*row, key=name)


def _widest(cells: list[Text]) -> int:
    return max(cell.cell_len for cell in cells)


def _metric(event: dict[str, Any], key: str) -> float:
    metrics = event.get("metrics")
    value = metrics.get(key) if isinstance(metrics, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("-inf")


def _int(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return "-"
