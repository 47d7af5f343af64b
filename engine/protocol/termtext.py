"""What text read from files may put on a terminal (stdlib only: the engine and every
front-end use it).

A run folder, a config or a dataset is input like any other, and any string in it (a run
name, a class name, an error message, a config comment) may hold control characters. Sent
raw to a terminal, ESC starts an escape sequence (retitle the window, an OSC 8 hyperlink,
move the cursor, recolour or hide text), CR overwrites what was printed, and Unicode bidi
controls reorder what is shown. :func:`printable` turns every such character into a
visible escape (ESC becomes the four characters ``\\x1b``), so the text shows what the file
holds and the terminal does nothing. A newline is no attack: it is kept as a line break
where the text may take several lines (a message, a log), and shown as ``⏎`` where one
value must stay on one line (a table cell, a title); never as ``\\x0a`` in the middle of
our own text. Rich markup is the other half of the problem: :mod:`tui.safetext` builds on
this for Rich and Textual.
"""

from __future__ import annotations

import re

__all__ = ["NEWLINE_MARK", "printable", "strip_controls"]

NEWLINE_MARK = "⏎"
"""What a line break looks like in a value shown on one line."""

# C0 controls except tab and newline, DEL, C1 controls (0x9b is a one-byte CSI on some
# terminals), and Unicode's bidi embeddings/overrides/isolates and line/paragraph separators.
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[{_CONTROL}]")
_CONTROLS_AND_NEWLINES = re.compile(f"[\n{_CONTROL}]")
_LINE_BREAK = re.compile(r"[ \t]*(\r\n|\n)[ \t]*")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, newlines: bool = False) -> str:
    """``str(value)`` with every control character shown as an escape (``\\x1b``).

    With ``newlines`` (messages, logs, tracebacks) line breaks are kept (``\\r\\n`` becomes
    ``\\n``); without, each line break (and the blanks around it) becomes `` ⏎ ``, so one
    value stays on one line and still shows where its lines were. Tabs are kept: they only
    move the cursor to the next tab stop."""
    text = value if isinstance(value, str) else str(value)
    if newlines:
        return _CONTROLS.sub(_escape, text.replace("\r\n", "\n"))
    return _CONTROLS.sub(_escape, _LINE_BREAK.sub(f" {NEWLINE_MARK} ", text))


def strip_controls(text: str) -> str:
    """``text`` without its control characters (newlines too): for a log line, where the
    escapes of a coloured library message would only be noise."""
    return _CONTROLS_AND_NEWLINES.sub("", text)
