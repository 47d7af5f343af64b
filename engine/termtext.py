"""What text read from files may put on a terminal (stdlib only: the engine and every
front-end use it).

A run folder, a config or a dataset is input like any other, and any string in it (a run
name, a class name, an error message, a config comment) may hold control characters. Sent
raw to a terminal, ESC starts an escape sequence (retitle the window, an OSC 8 hyperlink,
move the cursor, recolour or hide text), CR overwrites what was printed, and Unicode bidi
controls reorder what is shown. :func:`printable` turns every such character into a
visible escape (ESC becomes the four characters ``\\x1b``), so the text shows what the file
holds and the terminal does nothing. Rich markup is the other half of the problem:
:mod:`tui.safetext` builds on this for Rich and Textual.
"""

from __future__ import annotations

import re

__all__ = ["printable", "strip_controls"]

# C0 controls except tab and newline, DEL, C1 controls (0x9b is a one-byte CSI on some
# terminals), and Unicode's bidi embeddings/overrides/isolates and line/paragraph separators.
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[{_CONTROL}]")
_CONTROLS_AND_NEWLINES = re.compile(f"[\n{_CONTROL}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, *, newlines: bool = False) -> str:
    """``str(value)`` with every control character shown as an escape (``\\x1b``).

    With ``newlines`` (logs, tracebacks) line breaks are kept (``\\r\\n`` becomes ``\\n``);
    without, a newline is shown as ``\\x0a`` too, so one value stays on one line. Tabs are
    kept: they only move the cursor to the next tab stop."""
    text = value if isinstance(value, str) else str(value)
    if newlines:
        return _CONTROLS.sub(_escape, text.replace("\r\n", "\n"))
    return _CONTROLS_AND_NEWLINES.sub(_escape, text)


def strip_controls(text: str) -> str:
    """``text`` without its control characters (newlines too): for a log line, where the
    escapes of a coloured library message would only be noise."""
    return _CONTROLS_AND_NEWLINES.sub("", text)
