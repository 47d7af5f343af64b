"""Text from files, for Rich and Textual: never markup, never raw control characters.

Every front-end (the TUI's widgets, the headless console, ``dettui runs``, ``attach``,
``logs``) shows strings read from run folders, events, configs and datasets. Passed to
Rich or Textual as a plain ``str`` they are parsed as markup: ``[/]`` raises a MarkupError
(a crash), ``[link=file:///etc/passwd]`` makes a clickable link, ``[@click=app.quit]`` an
action. And their control characters reach the terminal (see :mod:`engine.protocol.termtext`).

So a string from a file is shown as :func:`safe_text` (a Rich ``Text``: never parsed as
markup; Textual turns it into ``Content`` as it is), or, inside a markup string built by
the program itself, as :func:`safe_markup`. Both make control characters visible first.
Log lines, where escapes would only be noise, drop them instead (:func:`log_line`), as the
TUI's log pane always did.
"""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text

from engine.protocol.termtext import printable, strip_controls

__all__ = ["log_line", "printable", "safe_markup", "safe_text"]


def safe_text(value: object, style: str = "", *, newlines: bool = False) -> Text:
    """``value`` as a Rich ``Text`` (no markup), control characters made visible."""
    return Text(printable(value, newlines=newlines), style=style)


def safe_markup(value: object, *, newlines: bool = False) -> str:
    """``value`` for a Rich markup string: control characters visible, brackets escaped."""
    return escape(printable(value, newlines=newlines))


def log_line(line: str) -> str:
    """A line of a log file for a terminal: tabs expanded, control characters dropped."""
    return strip_controls(line.expandtabs())
