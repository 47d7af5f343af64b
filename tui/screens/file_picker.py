"""A small file picker: a directory tree filtered to the wanted suffixes, plus a path box.

Enter on a file picks it; the path box accepts a typed path (a folder re-roots the tree,
a file is picked); ``backspace`` on the tree goes up one folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Footer, Input, Static


class FilteredDirectoryTree(DirectoryTree):
    """Folders and files with one of ``suffixes``; hidden entries are left out."""

    def __init__(self, path: Path, suffixes: tuple[str, ...], *, id: str | None = None) -> None:
        super().__init__(path, id=id)
        self.suffixes = suffixes

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.name.endswith(self.suffixes))]


class FilePickerScreen(ModalScreen[Path | None]):
    """Pick a file; dismisses with its path, or None on escape."""

    DEFAULT_CSS = """
    FilePickerScreen {
        align: center middle;
    }
    FilePickerScreen > Vertical {
        width: 90%;
        max-width: 110;
        height: 85%;
        border: thick $primary;
        border-title-style: bold;
        background: $surface;
    }
    FilePickerScreen FilteredDirectoryTree {
        height: 1fr;
    }
    FilePickerScreen #picker-hint {
        color: $text-muted;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("q", "cancel", "Cancel", show=False),  # q goes back, never quits here
        Binding("backspace", "up", "Parent folder"),
    ]

    def __init__(self, start: Path, suffixes: tuple[str, ...], title: str = "choose a file"):
        super().__init__()
        start = Path(start).expanduser()
        self.start = (start if start.is_dir() else Path.cwd()).resolve()
        self.suffixes = suffixes
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"{self.title_text} ({' '.join(self.suffixes)})"
            yield Input(str(self.start), id="picker-path", compact=True)
            yield FilteredDirectoryTree(self.start, self.suffixes, id="picker-tree")
            yield Static("enter: pick · backspace: parent folder · esc: cancel",
                         id="picker-hint")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(FilteredDirectoryTree).focus()

    def _reroot(self, folder: Path) -> None:
        tree = self.query_one(FilteredDirectoryTree)
        tree.path = folder
        self.query_one("#picker-path", Input).value = str(folder)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(event.path)

    @on(Input.Submitted, "#picker-path")
    def _typed(self, event: Input.Submitted) -> None:
        path = Path(event.value).expanduser()
        if path.is_dir():
            self._reroot(path.resolve())
            self.query_one(FilteredDirectoryTree).focus()
        elif path.is_file():
            self.dismiss(path)
        else:
            self.notify(f"{path} does not exist", severity="error", markup=False)

    def action_up(self) -> None:
        if isinstance(self.focused, Input):
            return
        tree = self.query_one(FilteredDirectoryTree)
        self._reroot(Path(tree.path).resolve().parent)

    def action_cancel(self) -> None:
        self.dismiss(None)
