"""The ``?`` help screen: every key of every screen, read from the classes' own BINDINGS,
so it cannot drift from what the keys really do."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.columns import Columns
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

KeyGroup = tuple[str, list[Binding]]


def bindings_of(cls: type) -> list[Binding]:
    """The bindings a class declares itself (not the ones it inherits)."""
    declared: Iterable[BindingType] = cls.__dict__.get("BINDINGS", [])
    return list(Binding.make_bindings(declared))


def default_groups() -> list[KeyGroup]:
    """The keys of the whole app, grouped by where they work."""
    # Imported here: these modules import this one to open the help screen.
    from tui.app import DettuiApp
    from tui.screens.compare import CompareScreen
    from tui.screens.error import ErrorScreen
    from tui.screens.home import HomeScreen
    from tui.screens.launch import LaunchScreen
    from tui.screens.monitor import MonitorScreen
    from tui.widgets.config_tree import ConfigTree
    from tui.widgets.log_panel import LogPanel, LogView
    from tui.widgets.runs_table import RunsTable

    return [
        ("Everywhere", bindings_of(DettuiApp)),
        ("Home", bindings_of(HomeScreen)),
        ("Config tree", bindings_of(ConfigTree)),
        ("Runs table", bindings_of(RunsTable)),
        ("Launch form", bindings_of(LaunchScreen)),
        ("Run monitor", bindings_of(MonitorScreen)),
        ("Monitor log", bindings_of(LogPanel) + bindings_of(LogView)),
        ("Compare", bindings_of(CompareScreen)),
        ("Error dialog", bindings_of(ErrorScreen)),
    ]


class HelpScreen(ModalScreen[None]):
    """Every key, grouped by screen."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > #help-box {
        width: 90%;
        max-width: 110;
        height: auto;
        max-height: 90%;
        border: thick $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(self, groups: list[KeyGroup] | None = None) -> None:
        super().__init__()
        self.groups = groups if groups is not None else default_groups()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "dettui keys"
            yield Static(self._render_groups(), id="help-keys")
        yield Footer(compact=True, show_command_palette=False)

    def _render_groups(self) -> Columns:
        """One small table per group, flowed into as many columns as the width allows."""
        tables = []
        for title, bindings in self.groups:
            table = Table.grid(padding=(0, 1))
            table.add_column(justify="right", no_wrap=True, min_width=6)
            table.add_column(no_wrap=True)
            # One line per key and meaning: the monitor's "1" is "1-4 Pane", or "1-5 Pane"
            # on a semi run (two bindings, one shown at a time): the help lists the widest.
            rows: dict[tuple[str, str], str] = {}
            for binding in bindings:
                if binding.description:
                    rows[(binding.key, binding.description)] = self.app.get_key_display(binding)
            seen: set[tuple[str, str]] = set()
            for (_, description), key in rows.items():
                if (key, description) in seen:
                    continue
                seen.add((key, description))
                table.add_row(Text(key, style="bold"), description)
            if seen:
                tables.append(Group(Text(title, style="bold underline"), table, Text("")))
        return Columns(tables, padding=(0, 4))

    def action_close(self) -> None:
        self.dismiss(None)
