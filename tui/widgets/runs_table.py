"""The runs table: every run of the runs folder, live, sortable, filterable, multi-select.

The screen owns the data and pushes it down with :meth:`RunsTable.set_rows`; the table
owns only how it is shown (sort column, filter, selection). Keys on a run post a
:class:`RunsTable.RunAction` (or :class:`RunsTable.CompareRequested`) up to the screen,
which does the work. A refresh that changes no row order only rewrites the cells that
changed (the duration of active runs, typically), so polling hundreds of runs is cheap.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import ClassVar, Literal

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from tui.runs_index import SORT_KEYS, SORT_LABELS, RunRow, view_rows
from tui.safetext import safe_text

RunActionName = Literal["open", "resume", "stop", "delete", "error"]

STATUS_STYLE = {
    "running": ("●", "bold green"),
    "starting": ("◌", "yellow"),
    "finished": ("✓", "cyan"),
    "failed": ("✗", "bold red"),
    "interrupted": ("■", "dark_orange"),
}

# Most useful first: at 80 columns the table shows up to "duration" without scrolling.
COLUMNS = (("sel", " "), ("status", "status"), ("id", "run"), ("progress", "epoch"),
           ("best_ap", "best AP"), ("duration", "duration"), ("trainer", "trainer"),
           ("config", "config"), ("created", "started"))


def fmt_status(status: str) -> Text:
    icon, style = STATUS_STYLE.get(status, ("?", "magenta"))
    return safe_text(f"{icon} {status}", style)


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
    epoch = row.shown_epoch
    if epoch is None:
        return Text("-", style="dim")
    text = Text(f"{epoch}/{row.epochs}" if row.epochs else str(epoch))
    if row.active and row.fraction is not None:
        text.append(f" {row.fraction * 100:3.0f}%", style="green")
    return text


def fmt_ap(row: RunRow) -> Text:
    if row.best_ap is None:
        return Text("-", style="dim")
    return Text(f"{row.best_ap:.3f}", style="bold")


def row_cells(row: RunRow, selected: bool, now: float) -> tuple[object, ...]:
    # Strings from run.json are Text: a str cell is parsed as markup ("[/]" crashes).
    return (
        Text("●", style="bold magenta") if selected else " ",
        fmt_status(row.status),
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
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "run_action('open')", "Open"),
        Binding("space", "toggle_select", "Select"),
        Binding("c", "compare", "Compare"),
        Binding("r", "run_action('resume')", "Resume"),
        Binding("s", "run_action('stop')", "Stop"),
        Binding("d", "run_action('delete')", "Delete"),
        Binding("e", "run_action('error')", "Error"),
        Binding("o", "cycle_sort", "Sort by next column", group=SORT_GROUP),
        Binding("O", "reverse_sort", "Reverse sort", group=SORT_GROUP),
    ]

    sort_key: reactive[str] = reactive("created", init=False)
    """Column the rows are sorted by (one of ``tui.runs_index.SORT_KEYS``)."""
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

    def on_mount(self) -> None:
        self._add_columns()

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
        self._relabel()

    def watch_sort_reverse(self) -> None:
        self._relabel()

    def watch_filter_text(self) -> None:
        if self.is_mounted:
            self._render_view()
            self.post_message(self.ViewChanged())

    def _add_columns(self) -> None:
        for key, label in COLUMNS:
            text = Text(label)
            if key == self.sort_key:
                text.append(" ▼" if self.sort_reverse else " ▲", style="bold")
            self.add_column(text, key=key)

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
        if not force and keys == old_keys:
            for row in view:
                cells = row_cells(row, row.path.name in self.selected, now)
                old = self._cells.get(row.path.name)
                if old == cells:
                    continue
                for (col, _), value, before in zip(COLUMNS, cells, old or (None,) * len(cells)):
                    if value != before:
                        self.update_cell(row.path.name, col, value, update_width=True)
                self._cells[row.path.name] = cells
            return
        cursor = self.current_row if old_keys else None
        cursor_index = self.cursor_row
        self.clear()
        self._cells.clear()
        for row in view:
            cells = row_cells(row, row.path.name in self.selected, now)
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
