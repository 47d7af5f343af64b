"""The latest evaluation: COCO metrics per evaluated model, and AP per class.

Semi-supervised runs evaluate a teacher and a student (and some an EMA model): the summary
has one row per ``model`` value of the latest ``eval`` events, the per-class table one
column per model, so the two can be compared class by class.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from engine.events import METRIC_KEYS
from tui.safetext import safe_text

__all__ = ["EvalTable", "MODEL_ORDER", "format_ap"]

MODEL_ORDER = ("teacher", "student", "ema", "model")
"""Row order of the evaluated models (others follow, by name)."""


def format_ap(value: object) -> str:
    """An AP on the 0-1 scale as a percentage with one decimal; '-' when missing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return f"{100.0 * value:.1f}"
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
        #eval-summary { height: 2; margin-bottom: 1; }
        #eval-classes { height: 1fr; }
        DataTable { scrollbar-size-vertical: 1; }
    }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Static("no evaluation yet", id="eval-empty")
        summary = DataTable(id="eval-summary", cursor_type="row", zebra_stripes=True)
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
        empty = not models
        self.query_one("#eval-empty").display = empty
        summary = self.query_one("#eval-summary", DataTable)
        per_class = self.query_one("#eval-classes", DataTable)
        summary.display = not empty
        if empty:
            per_class.display = False
            return
        summary.clear(columns=True)
        summary.styles.height = len(models) + 1  # a header and a row per model, no scroll
        summary.add_columns("model", "epoch", "iter", *METRIC_KEYS)
        best_ap = max((_metric(latest[m], "AP") for m in models), default=float("nan"))
        for model in models:
            event = latest[model]
            epoch = event.get("epoch")  # 0-based in events; shown 1-based, as in the header
            cells: list[str | Text] = [  # model and class names are text, never markup
                safe_text(model), _int(epoch + 1 if isinstance(epoch, int) else None),
                _int(event.get("iter"))]
            for metric in METRIC_KEYS:
                text = format_ap(_metric(event, metric))
                bold = metric == "AP" and len(models) > 1 and _metric(event, "AP") == best_ap
                cells.append(Text(text, style="bold green" if bold else "", justify="right"))
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
        per_class.add_column("class")
        for model in models:
            per_class.add_column(safe_text(f"{model} AP" if len(models) > 1 else "AP"),
                                 key=model)
        for name in classes:
            row: list[str | Text] = [safe_text(name)]
            for model in models:
                value = (latest[model].get("per_class") or {}).get(name)
                row.append(Text(format_ap(value), justify="right"))
            per_class.add_row(*row, key=name)


def _metric(event: dict[str, Any], key: str) -> float:
    metrics = event.get("metrics")
    value = metrics.get(key) if isinstance(metrics, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def _int(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return "-"
