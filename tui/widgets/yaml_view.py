"""The config preview: the YAML file as written, or the resolved (merged) config.

The resolved view shows every key after ``_BASE_`` inheritance and overrides, each leaf
with the ``file:line`` that set it (or the ``-o`` override), so "where does this lr come
from" is answered at a glance. Files are read and merged in a thread worker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import work
from textual.containers import VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from engine.config import load_config
from engine.config.loader import MAX_CONFIG_BYTES, LoadedConfig, Source
from engine.protocol.errors import UserError
from engine.protocol.safefiles import RefusedFile, read_regular
from tui.safetext import printable, safe_text

SYNTAX_THEME = "ansi_dark"


def flow(value: Any) -> str:
    """A value as one line of YAML flow style (``[16, 32]``, ``null``, ``'a: b'``)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6, allow_unicode=True)
    return text.strip()[1:-1]


def short_path(path: str | Path, roots: list[Path]) -> str:
    """``path`` relative to the config folder that holds it, else to the working dir."""
    p = Path(path)
    for root in roots:
        try:
            return str(p.resolve().relative_to(root.resolve().parent))
        except ValueError:
            continue
    try:
        rel = os.path.relpath(p)
    except ValueError:
        return str(p)
    return rel if not rel.startswith("../../") else str(p)


def resolved_lines(loaded: LoadedConfig) -> list[tuple[str, Source | None]]:
    """One ``(yaml line, source)`` per key of the merged config; mappings have no source."""
    out: list[tuple[str, Source | None]] = []

    def walk(data: dict, prefix: tuple[str, ...], depth: int) -> None:
        for key, value in data.items():
            keypath = (*prefix, str(key))
            pad = "  " * depth
            shown = printable(key)  # a key is text from the file (values: flow() escapes)
            if isinstance(value, dict) and value:
                out.append((f"{pad}{shown}:", None))
                walk(value, keypath, depth + 1)
            else:
                out.append((f"{pad}{shown}: {printable(flow(value))}",
                            loaded.source_of(keypath)))

    walk(loaded.data, (), 0)
    return out


SOURCE_WIDTH = 24
PREVIEW_LINES = 2_000
"""Lines a preview shows at most: it is rendered in the UI thread, and a config of that
many lines is already far past any real one (the loader refuses files over 1 MiB)."""


def source_label(src: Source, own: str, width: int = SOURCE_WIDTH) -> Text:
    """``:12`` for the previewed file itself, ``runtime.yml:4`` for a base, ``-o k=v``;
    a long file name is cut in the middle so the line number always shows."""
    if src.override is not None:
        return safe_text(src, "bold yellow")
    line = f":{src.line}" if src.line else ""
    if src.file == own:
        return Text(line or "this file", style="green")
    name = printable(Path(src.file).name)
    if len(name) + len(line) > width:
        keep = max(1, width - len(line) - 1)
        name = name[: keep - keep // 3] + "…" + name[len(name) - keep // 3:]
    return Text(name + line, style="cyan")


def render_resolved(loaded: LoadedConfig) -> RenderableType:
    """The merged config as highlighted YAML, each leaf after the file:line that set it, like
    ``git blame`` (green: the file itself, cyan: a ``_BASE_`` file, yellow: an override)."""
    lines = resolved_lines(loaded)
    more = len(lines) - PREVIEW_LINES
    lines = lines[:PREVIEW_LINES]
    highlighted = Syntax("", "yaml", theme=SYNTAX_THEME).highlight(
        "\n".join(line for line, _ in lines)).split("\n")
    own = str(loaded.path)
    labels = [source_label(src, own) if src is not None else Text("") for _, src in lines]
    # A fixed width: long YAML lines must be cut, never the file:line column.
    width = min(SOURCE_WIDTH, max((label.cell_len for label in labels), default=0))
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(no_wrap=True, overflow="ellipsis", width=width, justify="right")
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    for label, text in zip(labels, highlighted):
        table.add_row(label, text)
    if more > 0:
        table.add_row(Text(""), Text(f"… {more:,} more keys not shown", style="dim"))
    return table


def render_source(path: Path) -> RenderableType:
    """The file as written, highlighted; read with the config loader's limits (a FIFO or a
    link to /dev/zero must not hang the preview), control characters (in a comment, say)
    made visible."""
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except RefusedFile as exc:
        return safe_text(f"not shown: {path}: {exc}", "red")
    text = printable(raw.decode("utf-8", errors="replace"), newlines=True)
    lines = text.rstrip("\n").split("\n")
    more = len(lines) - PREVIEW_LINES
    if more > 0:
        text = "\n".join(lines[:PREVIEW_LINES])
    syntax = Syntax(text, "yaml", theme=SYNTAX_THEME, line_numbers=True, word_wrap=False,
                    background_color="default")
    if more <= 0:
        return syntax
    return Group(syntax, Text(f"… {more:,} more lines not shown", style="dim"))


class YamlView(VerticalScroll):
    """Preview of one config file; ``resolved`` switches to the merged view."""

    DEFAULT_CSS = """
    YamlView {
        height: 1fr;
    }
    YamlView > #yaml-banner {
        width: 1fr;
        padding: 0 1;
        display: none;
    }
    YamlView > #yaml-banner.-error {
        display: block;
        color: $text-error;
        background: $error-muted;
    }
    YamlView > #yaml-banner.-info {
        display: block;
        color: $text-muted;
    }
    YamlView > #yaml-body {
        width: 1fr;
    }
    """

    resolved: reactive[bool] = reactive(False, init=False)
    """Show the merged config with the source of every key instead of the file."""

    class Rendered(Message):
        """Posted by the loader worker with the body to show."""

        def __init__(self, path: Path | None, body: RenderableType) -> None:
            super().__init__()
            self.path = path
            self.body = body

    def __init__(self, roots: list[Path], *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.roots = roots
        self.path: Path | None = None
        self.error: str | None = None
        self.summary = ""
        self.hint: Text | None = None
        """Shown instead of "select a config" (see show_hint)."""

    def compose(self):  # noqa: ANN201 - textual's ComposeResult
        yield Static(id="yaml-banner")
        yield Static(Text("Select a config on the left.", style="dim"), id="yaml-body")

    def show(self, path: Path | None, error: str | None = None, summary: str = "") -> None:
        """Preview ``path`` (None: nothing); ``error``/``summary`` come from validation."""
        moved = path != self.path
        self.path, self.error, self.summary = path, error, summary
        banner = self.query_one("#yaml-banner", Static)
        banner.set_classes("-error" if error else ("-info" if summary else ""))
        banner.update(safe_text(error or summary, newlines=True))
        self._update_title()
        if path is None:
            self.query_one("#yaml-body", Static).update(
                self.hint or Text("Select a config on the left.", style="dim"))
            return
        self._load(path, self.resolved)
        if moved:
            self.scroll_home(animate=False)

    def show_hint(self, text: Text | None) -> None:
        """What to show with no config to preview (None: "select a config"): ``text`` says
        why there is none and what to do."""
        self.hint = text
        if self.path is None:
            self.show(None)

    def watch_resolved(self) -> None:
        self._update_title()
        if self.path is not None:
            self._load(self.path, self.resolved)

    def _update_title(self) -> None:
        mode, other = ("resolved", "source") if self.resolved else ("source", "resolved")
        name = short_path(self.path, self.roots) if self.path else "preview"
        # the key is named here: the footer has no room for it at 80 columns
        self.border_title = safe_text(f"{name} · {mode} (v: {other})")  # not markup

    @work(thread=True, exclusive=True, group="yaml-view", exit_on_error=False)
    def _load(self, path: Path, resolved: bool) -> None:
        body: RenderableType
        try:
            body = render_resolved(load_config(path)) if resolved else render_source(path)
        except UserError as exc:
            # The banner already shows validation errors; say why there is no merged view.
            note = safe_text(f"cannot resolve: {exc.render()}\n", "red", newlines=True)
            body = Group(note, render_source(path)) if path.is_file() else note
        except OSError as exc:
            body = safe_text(f"cannot read {path}: {exc.strerror or exc}", "red")
        self.post_message(self.Rendered(path, body))

    def on_yaml_view_rendered(self, message: Rendered) -> None:
        message.stop()
        if message.path == self.path:
            self.query_one("#yaml-body", Static).update(message.body)
