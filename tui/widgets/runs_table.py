"""The runs table: every run of the runs folder, live, sortable, filterable, multi-select.

The screen owns the data and pushes it down with :meth:`RunsTable.set_rows`; the table
owns only how it is shown (sort column, filter, selection). Keys on a run post a
:class:`RunsTable.RunAction` (or :class:`RunsTable.CompareRequested`) up to the screen,
which does the work. A refresh that changes no row order only rewrites the cells that
changed (the duration of active runs, typically), so polling hundreds of runs is cheap.

The columns fit the width, without a horizontal scrollbar: the run id is never cut (logs,
resume and attach need it). When the terminal is narrow the status shrinks to its icon,
the config name is shortened with an ellipsis, and the last columns (by :data:`COLUMNS`
order) are left out; the panel title says which (``hidden_columns``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import ClassVar, Literal

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from tui.runs.index import SORT_KEYS, SORT_LABELS, RunRow, view_rows
from tui.safetext import safe_text

RunActionName = Literal["open", "resume", "stop", "delete", "error"]

STATUS_STYLE = {
    "running": ("●", "bold green"),
    "starting": ("◌", "yellow"),
    "finished": ("✓", "cyan"),
    "failed": ("✗", "bold red"),
    "interrupted": ("■", "dark_orange"),
}

# Most useful first: a narrow terminal leaves out the last ones.
COLUMNS = (("sel", " "), ("status", "status"), ("id", "run"), ("progress", "epoch"),
           ("best_ap", "best AP"), ("duration", "duration"), ("trainer", "trainer"),
           ("config", "config"), ("created", "started"))
ALWAYS_SHOWN = ("sel", "status", "id")
SHRINKABLE = {"config": 8}
"""Columns that may be shortened (with an ellipsis) down to this many cells to fit."""
CELL_PADDING = 1


def fmt_status(status: str, compact: bool = False) -> Text:
    icon, style = STATUS_STYLE.get(status, ("?", "magenta"))
    return safe_text(icon if compact else f"{icon} {status}", style)


def fmt_slurm_job(row: RunRow, compact: bool = False) -> Text:
    """`` (job N)`` after the status of an active run that is a SLURM job."""
    job = row.meta.get("slurm_job_id")
    if compact or not row.active or not isinstance(job, str):
        return Text()
    return safe_text(f" (job {job})", "dim")


def fit_columns(natural: dict[str, int], width: int, compact_status_width: int = 1
                ) -> tuple[dict[str, int | None], bool]:
    """Which columns fit ``width`` cells: ``{key: None (natural width) or a shortened
    width}`` in display order, and whether the status shows its icon only.

    ``natural`` is each column's widest cell or label. Columns are taken in
    :data:`COLUMNS` order; the first ones always (the id whole), then every one that
    fits, shortening a :data:`SHRINKABLE` one rather than leaving it out."""
    cost = {key: w + 2 * CELL_PADDING for key, w in natural.items()}
    core = ("sel", "status", "id", "progress", "best_ap", "duration")
    compact = sum(cost[k] for k in core if k in cost) > width
    if compact:
        cost["status"] = compact_status_width + 2 * CELL_PADDING
    shown: dict[str, int | None] = {}
    used = 0
    for key, _ in COLUMNS:
        if key not in cost:
            continue
        if key in ALWAYS_SHOWN or used + cost[key] <= width:
            shown[key] = None
            used += cost[key]
        elif key in SHRINKABLE and width - used - 2 * CELL_PADDING >= SHRINKABLE[key]:
            shown[key] = width - used - 2 * CELL_PADDING
            used = width
    return shown, compact


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_started(when: dt.datetime | None) -> str:
    # Shown in the timezone the run recorded, so the same run reads the same everywhere.
    return when.strftime("%m-%d %H:%M") if when else "-"


def fmt_progress(row: RunRow) -> Text:
    shown = row.shown
    if shown.epoch is None:
        return Text("-", style="dim")
    text = Text(shown.epoch_text())
    # how far into it: while it runs, and where an ended run stopped short
    if shown.fraction is not None and (row.active or (row.status != "finished"
                                                      and shown.fraction < 1)):
        text.append(f" {shown.fraction * 100:3.0f}%", style="green" if row.active else "dim")
    return text


def fmt_ap(row: RunRow) -> Text:
    if row.best_ap is None:
        return Text("-", style="dim")
    text = Text(f"{row.best_ap:.3f}", style="bold")
    if row.best_model:  # a semi-supervised run's teacher or student, an EMA
        text.append_text(safe_text(f" {row.best_model}", "dim"))
    return text


def row_cells(row: RunRow, selected: bool, now: float,
              compact_status: bool = False) -> tuple[object, ...]:
    """The cells of every column of :data:`COLUMNS`, in order. Strings from run.json are
    Text: a str cell is parsed as markup ("[/]" crashes)."""
    return (
        Text("◆", style="bold magenta") if selected else " ",
        fmt_status(row.status, compact_status) + fmt_slurm_job(row, compact_status),
        safe_text(row.id),
        fmt_progress(row),
        fmt_ap(row),
        fmt_duration(row.duration(now)),
        safe_text(row.trainer),
        safe_text(row.config_name),
        fmt_started(row.started),
    )


SORT_GROUP = Binding.Group("Sort")
"""o and O share one footer entry: ``o O Sort``."""


class RunsTable(DataTable[object]):
    """Runs of the runs folder, one per row; the row key is the run folder's name."""

    DEFAULT_CSS = """
    RunsTable {
        height: 1fr;
        overflow-x: hidden;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "run_action('open')", "Open"),
        Binding("space", "toggle_select", "Select"),
        Binding("c", "compare", "Compare"),
        Binding("r", "run_action('resume')", "Resume"),
        Binding("s", "run_action('stop')", "Stop"),
        # Keys for some runs only, or seldom used: in help (?), not in an 80-column footer,
        # which must keep room for the home screen's keys and "? Help".
        Binding("d", "run_action('delete')", "Delete", show=False),
        Binding("e", "run_action('error')", "Error", show=False),
        Binding("o", "cycle_sort", "Sort by next column", group=SORT_GROUP, show=False),
        Binding("O", "reverse_sort", "Reverse sort", group=SORT_GROUP, show=False),
    ]

    sort_key: reactive[str] = reactive("created", init=False)
    """Column the rows are sorted by (one of ``tui.runs.index.SORT_KEYS``)."""
    sort_reverse: reactive[bool] = reactive(True, init=False)
    """Descending order (newest / largest first)."""
    filter_text: reactive[str] = reactive("", init=False)
    """Filter: rows must contain every word of it (id, name, status, trainer, config)."""

    class RunAction(Message):
        """A key was pressed on a run: open, resume, stop, delete or show its error."""

        def __init__(self, action: RunActionName, row: RunRow) -> None:
            super().__init__()
            self.action: RunActionName = action
            self.row = row

    class ViewChanged(Message):
        """The rows shown, their order, the sort or the selection changed."""

    class CompareRequested(Message):
        """The user asked to compare the selected runs."""

        def __init__(self, rows: list[RunRow]) -> None:
            super().__init__()
            self.rows = rows

    def __init__(self, *, clock: Callable[[], float] = time.time, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, name=name, id=id,
                         classes=classes)
        self.clock = clock
        self.selected: set[str] = set()
        self._all: list[RunRow] = []
        self._view: list[RunRow] = []
        self._cells: dict[str, tuple[object, ...]] = {}
        self._shown: dict[str, int | None] = {key: None for key, _ in COLUMNS}
        self._compact = False

    def on_mount(self) -> None:
        self._add_columns()

    def on_resize(self) -> None:
        self._refit()

    @property
    def hidden_columns(self) -> list[str]:
        """Labels of the columns left out at this width."""
        return [label for key, label in COLUMNS if key not in self._shown]

    def _refit(self) -> bool:
        """Choose the columns for the current width; rebuild if they changed."""
        if not self.is_mounted or self.size.width == 0:
            return False
        now = self.clock()
        natural = {key: cell_len(label) + (2 if key == self.sort_key else 0)
                   for key, label in COLUMNS}
        for row in self._view:
            for (key, _), cell in zip(COLUMNS, row_cells(row, True, now)):
                natural[key] = max(natural[key], cell_len(_plain(cell)))
        width = self.size.width
        if self.row_count > self.size.height - 1:  # rows + header: a vertical scrollbar
            width -= self.styles.scrollbar_size_vertical
        shown, compact = fit_columns(natural, width)
        if (shown, compact) == (self._shown, self._compact):
            return False
        self._shown, self._compact = shown, compact
        self._relabel()
        self.post_message(self.ViewChanged())
        return True

    def _shown_cells(self, row: RunRow, selected: bool, now: float) -> tuple[object, ...]:
        cells = row_cells(row, selected, now, self._compact)
        out = []
        for (key, _), cell in zip(COLUMNS, cells):
            if key not in self._shown:
                continue
            width = self._shown[key]
            if width is not None:
                cell = Text(_plain(cell))
                cell.truncate(width, overflow="ellipsis")
            out.append(cell)
        return tuple(out)

    # ----------------------------------------------------------------- data in

    def set_rows(self, rows: list[RunRow]) -> None:
        """Replace the runs shown (called by the screen after each scan)."""
        self._all = rows
        names = {r.path.name for r in rows}
        self.selected &= names
        self._render_view()

    @property
    def view(self) -> list[RunRow]:
        """The rows as displayed: filtered and sorted."""
        return list(self._view)

    @property
    def total(self) -> int:
        return len(self._all)

    @property
    def current_row(self) -> RunRow | None:
        """The run under the cursor."""
        if not self._view or self.row_count == 0 or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (CellDoesNotExist, RowDoesNotExist):
            return None
        return next((r for r in self._view if r.path.name == key), None)

    def selected_rows(self) -> list[RunRow]:
        return [r for r in self._view if r.path.name in self.selected]

    def move_to(self, run_name: str) -> bool:
        """Put the cursor on a run (by folder name); False if it is not shown."""
        try:
            index = self.get_row_index(run_name)
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index)
        return True

    # ----------------------------------------------------------------- rendering

    def watch_sort_key(self) -> None:
        if not self._refit():  # the sort arrow widens its column
            self._relabel()

    def watch_sort_reverse(self) -> None:
        self._relabel()

    def watch_filter_text(self) -> None:
        if self.is_mounted:
            self._render_view()
            self.post_message(self.ViewChanged())

    def _add_columns(self) -> None:
        for key, label in COLUMNS:
            if key not in self._shown:
                continue
            text = Text("" if key == "status" and self._compact else label)
            if key == self.sort_key:
                text.append(" ▼" if self.sort_reverse else " ▲", style="bold")
            self.add_column(text, key=key, width=self._shown[key])

    def _relabel(self) -> None:
        if not self.is_mounted:
            return
        cursor = self.current_row
        self.clear(columns=True)
        self._add_columns()
        self._cells.clear()
        self._view = []
        self._render_view(force=True)
        if cursor is not None:
            self.move_to(cursor.path.name)

    def _render_view(self, force: bool = False) -> None:
        now = self.clock()
        view = view_rows(self._all, self.filter_text, self.sort_key, self.sort_reverse, lambda: now)
        keys = [r.path.name for r in view]
        old_keys = [r.path.name for r in self._view]
        self._view = view
        if not force and self._refit():
            return  # rebuilt for the new contents' widths
        if not force and keys == old_keys:
            columns = [key for key, _ in COLUMNS if key in self._shown]
            for row in view:
                cells = self._shown_cells(row, row.path.name in self.selected, now)
                old = self._cells.get(row.path.name)
                if old == cells:
                    continue
                for col, value, before in zip(columns, cells, old or (None,) * len(cells)):
                    if value != before:
                        self.update_cell(row.path.name, col, value, update_width=True)
                self._cells[row.path.name] = cells
            return
        cursor = self.current_row if old_keys else None
        cursor_index = self.cursor_row
        self.clear()
        self._cells.clear()
        for row in view:
            cells = self._shown_cells(row, row.path.name in self.selected, now)
            self._cells[row.path.name] = cells
            self.add_row(*cells, key=row.path.name)
        if cursor is not None and not self.move_to(cursor.path.name) and view:
            self.move_cursor(row=min(cursor_index, len(view) - 1))
        self.post_message(self.ViewChanged())

    # ----------------------------------------------------------------- actions

    def action_run_action(self, action: RunActionName) -> None:
        row = self.current_row
        if row is not None:
            self.post_message(self.RunAction(action, row))

    def action_toggle_select(self) -> None:
        row = self.current_row
        if row is None:
            return
        key = row.path.name
        self.selected.symmetric_difference_update({key})
        self.update_cell(key, "sel", row_cells(row, key in self.selected, 0)[0])
        self._cells.pop(key, None)
        self.post_message(self.ViewChanged())
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def action_compare(self) -> None:
        self.post_message(self.CompareRequested(self.selected_rows()))

    def action_cycle_sort(self) -> None:
        i = SORT_KEYS.index(self.sort_key)
        self.sort_key = SORT_KEYS[(i + 1) % len(SORT_KEYS)]

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key in SORT_KEYS:
            if key == self.sort_key:
                self.sort_reverse = not self.sort_reverse
            else:
                self.sort_key = key

    @property
    def sort_label(self) -> str:
        return SORT_LABELS[self.sort_key] + (" ▼" if self.sort_reverse else " ▲")


def _plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)
