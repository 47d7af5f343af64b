"""The monitor's log panel: ``train.log`` and ``stderr.log`` with follow, search and a jump
to the first error or traceback.

:class:`LogView` is a line-API widget (only the visible lines are rendered, each once, from
a cache), so a log of 50,000 lines scrolls as fast as one of ten. :class:`LogPanel` holds
one view per file, the search box and the panel title, and is driven by its screen (the
screen's key bindings call its methods; lines arrive through :meth:`LogPanel.append`).

Long lines are scrolled sideways with the arrow keys (no horizontal scrollbar: it would
take the bottom row, hide the last line of a followed log and show as a stray block).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input

from tui.safetext import log_line, safe_markup

__all__ = ["LogPanel", "LogView", "SOURCES"]

SOURCES = ("train.log", "stderr.log")
"""The files the panel shows, in the order ``t`` cycles through them."""

_TRACEBACK = "Traceback (most recent call last)"
_ERROR_RE = re.compile(r"\b(ERROR|CRITICAL|FATAL|Traceback|\w*Error|\w*Exception)\b")
_WARN_RE = re.compile(r"\b(WARNING|WARN|Warning)\b")

_ERROR_STYLE = Style(color="red")
_WARN_STYLE = Style(color="yellow")
_MATCH_STYLE = Style(color="black", bgcolor="yellow", bold=True)
_CURSOR_STYLE = Style(bgcolor="grey23")
"""The highlighted line (a search hit, the first error); matches are drawn over it."""


def is_error_line(line: str) -> bool:
    """Whether a log line reports an error (ERROR level, a traceback, an exception)."""
    return _ERROR_RE.search(line) is not None


class LogView(ScrollView, can_focus=True):
    """Lines of one log file; follows the end unless paused."""

    class FollowChanged(Message):
        """Following was switched on or off (by a key, a scroll or a jump)."""

        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

    BINDINGS: ClassVar[list[BindingType]] = [
        # no description: the help lists both arrows once, as "←→ Scroll sideways"
        Binding("left", "scroll_left", "", show=False),
        # in the help; the panel's subtitle says "→ more" when lines are cut (the 80-column
        # footer has no room left for it)
        Binding("right", "scroll_right", "Scroll sideways", key_display="←→", show=False),
        Binding("home", "scroll_home", "First line (pauses follow)", show=False),
        Binding("end", "scroll_end", "Last line (follows)", show=False),
    ]

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        overflow-y: scroll;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
        &:focus {
            background-tint: $foreground 5%;
        }
    }
    """

    follow: reactive[bool] = reactive(True)
    """Keep the last line in view as lines arrive."""
    search: reactive[str] = reactive("")
    """Highlighted text (case-insensitive); empty for none."""
    cursor: reactive[int | None] = reactive(None)
    """Absolute index of the highlighted line (a search hit or the first error)."""

    def __init__(self, source: str, *, max_lines: int = 50_000, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.source = source
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._dropped = 0  # lines pruned from the front; absolute index = dropped + y
        self._width = 0
        self._cache: LRUCache[tuple[int, str, bool, Style], Strip] = LRUCache(1024)

    @property
    def lines(self) -> list[str]:
        """The lines kept (the oldest are dropped beyond ``max_lines``); read only."""
        return self._lines

    @property
    def first_index(self) -> int:
        """Absolute index of ``lines[0]``."""
        return self._dropped

    def append(self, lines: Iterable[str]) -> None:
        new = [log_line(line) for line in lines]  # text from a file: no control characters
        if not new:
            return
        self._lines.extend(new)
        self._width = max(self._width, max(cell_len(line) for line in new))
        excess = len(self._lines) - self.max_lines
        if excess > 0:
            del self._lines[:excess]
            self._dropped += excess
        self.virtual_size = Size(self._width + 1, len(self._lines))
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, style)
        absolute = self._dropped + index
        key = (absolute, self.search, absolute == self.cursor, style)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._render_text(self._lines[index], key[2], style)
            self._cache[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def _render_text(self, line: str, is_cursor: bool, base: Style) -> Strip:
        text = Text(line, no_wrap=True, end="")
        if is_error_line(line):
            text.stylize(_ERROR_STYLE)
        elif _WARN_RE.search(line):
            text.stylize(_WARN_STYLE)
        if is_cursor:  # before the matches: a later style wins, and a hit must stand out
            text.stylize(_CURSOR_STYLE)
        if self.search:
            text.highlight_regex(re.compile(re.escape(self.search), re.IGNORECASE),
                                 _MATCH_STYLE)
        segments = [Segment(s.text, (base + s.style) if s.style else base)
                    for s in text.render(self.app.console)]
        return Strip(segments, cell_len(line))

    @property
    def allow_horizontal_scroll(self) -> bool:
        # No horizontal scrollbar (overflow-x: hidden), but the keys still scroll sideways.
        return self.max_scroll_x > 0

    def on_resize(self) -> None:
        # A first layout (or a pane shown at last) gives the real height: keep the end in
        # view, else a finished run's last lines sit below the fold while "following".
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_x(self, old: float, new: float) -> None:
        super().watch_scroll_x(old, new)
        self.post_message(self.FollowChanged(self))  # the panel's title shows the column

    def watch_search(self) -> None:
        self.refresh()

    def watch_cursor(self) -> None:
        self.refresh()

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.cursor = None
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.post_message(self.FollowChanged(self))

    # -- finding -----------------------------------------------------------------------

    def find(self, term: str, after: int | None, backwards: bool = False) -> int | None:
        """Absolute index of the next line containing ``term`` after (or before) the
        absolute index ``after`` (None: from the start, or the end), wrapping around."""
        if not term or not self._lines:
            return None
        needle = term.lower()
        n = len(self._lines)
        if after is None:
            start = n - 1 if backwards else 0
        else:
            start = (after - self._dropped) + (-1 if backwards else 1)
        step = -1 if backwards else 1
        for k in range(n):
            i = (start + step * k) % n
            if needle in self._lines[i].lower():
                return self._dropped + i
        return None

    def first_error(self) -> int | None:
        """Absolute index of the first traceback, else of the first error line."""
        for i, line in enumerate(self._lines):
            if _TRACEBACK in line:
                return self._dropped + i
        for i, line in enumerate(self._lines):
            if is_error_line(line):
                return self._dropped + i
        return None

    def jump_to(self, absolute: int) -> None:
        """Pause following, highlight the line and scroll it into view (a third from the
        top, so what follows it, e.g. a traceback, is visible)."""
        self.follow = False
        self.cursor = absolute
        y = absolute - self._dropped
        self.scroll_to(y=max(0, y - self.size.height // 3), animate=False, immediate=True)

    # -- manual scrolling pauses following --------------------------------------------

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.follow = False

    def action_scroll_up(self) -> None:
        self.follow = False
        super().action_scroll_up()

    def action_page_up(self) -> None:
        self.follow = False
        super().action_page_up()

    def action_scroll_home(self) -> None:
        self.follow = False
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        super().action_scroll_end()
        self.follow = True


class LogPanel(Vertical):
    """Both log files, one shown at a time, with follow/pause, search and jump-to-error."""

    DEFAULT_CSS = """
    LogPanel {
        height: 1fr;
        LogView { height: 1fr; display: none; }
        LogView.-active { display: block; }
        #log-search { display: none; height: 1; border: none; padding: 0 1; }
        &.-searching #log-search { display: block; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "toggle_follow", "Follow"),
        Binding("n", "next_match", "Next"),
        Binding("N", "next_match(True)", "Prev"),
        Binding("t", "switch_source", "File"),
        Binding("escape", "close_search", "Close search", show=False),
    ]

    source: reactive[str] = reactive(SOURCES[0])
    """The file shown."""

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._titles: tuple[str, str] = ("", "")

    def compose(self) -> ComposeResult:
        for i, source in enumerate(SOURCES):
            yield LogView(source, id=f"log-{i}", classes="-active" if i == 0 else "")
        yield Input(placeholder="search the log (enter: find, esc: close)", id="log-search")

    def on_mount(self) -> None:
        self._update_title()

    @property
    def view(self) -> LogView:
        """The view of the file shown."""
        return self._view_of(self.source)

    def _view_of(self, source: str) -> LogView:
        return self.query_one(f"#log-{SOURCES.index(source)}", LogView)

    def append(self, source: str, lines: list[str]) -> None:
        """New lines of ``source`` (one of :data:`SOURCES`)."""
        self._view_of(source).append(lines)
        if lines:
            self._update_title()

    def on_log_view_follow_changed(self, event: LogView.FollowChanged) -> None:
        event.stop()
        self._update_title()

    def watch_source(self, source: str) -> None:
        if not self.is_mounted:
            return
        for view in self.query(LogView):
            view.set_class(view.source == source, "-active")
        self._update_title()

    def switch_source(self) -> None:
        self.source = SOURCES[(SOURCES.index(self.source) + 1) % len(SOURCES)]

    def toggle_follow(self) -> None:
        self.view.follow = not self.view.follow
        self._update_title()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_match":
            return bool(self.view.search)
        return True

    def action_toggle_follow(self) -> None:
        self.toggle_follow()

    def action_next_match(self, backwards: bool = False) -> None:
        self.next_match(backwards)

    def action_switch_source(self) -> None:
        self.switch_source()
        self.view.focus()

    def open_search(self) -> None:
        self.add_class("-searching")
        box = self.query_one("#log-search", Input)
        box.value = self.view.search
        box.focus()

    def action_close_search(self) -> None:
        self.remove_class("-searching")
        self.view.focus()

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.remove_class("-searching")
        for view in self.query(LogView):
            view.search = event.value
        self.next_match()
        self.view.focus()

    def next_match(self, backwards: bool = False) -> bool:
        """Move to the next (previous) line holding the search text; False if none."""
        view = self.view
        hit = view.find(view.search, view.cursor, backwards)
        if hit is None:
            if view.search:
                self.notify(f"{view.source}: no line contains {safe_markup(view.search)!r}",
                            severity="warning", timeout=3)
            return False
        view.jump_to(hit)
        self._update_title()
        return True

    def jump_to_first_error(self) -> bool:
        """Show the first traceback (stderr.log first: that is where they go), else the
        first error line of either file; False if neither file has one."""
        for source in reversed(SOURCES):
            view = self._view_of(source)
            hit = view.first_error()
            if hit is not None:
                self.source = source
                view.jump_to(hit)
                self._update_title()
                return True
        return False

    def _update_title(self) -> None:
        names = "  ".join(f"[b reverse] {s} [/]" if s == self.source else f" {s} "
                          for s in SOURCES)
        view = self.view
        state = "[green]following[/]" if view.follow else "[yellow]paused[/]"
        extra = f"  /{safe_markup(view.search)}" if view.search else ""
        if view.virtual_size.width > view.size.width > 0:
            extra += f" · col {int(view.scroll_x) + 1}" if view.scroll_x else " · → more"
        titles = (f"4 Logs {names}", f"{len(view.lines):,} lines · {state}{extra}")
        if titles != self._titles:  # each assignment repaints the whole panel
            self._titles = titles
            self.border_title, self.border_subtitle = titles
