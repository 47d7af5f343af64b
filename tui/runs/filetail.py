"""Reading files that other processes append to: ``events.jsonl`` and the logs.

stdlib only. The engine appends and flushes line by line; a reader may arrive in the middle
of a line, and a file may be replaced (then it shrinks). These tails read only what is new,
hand out whole lines, and start over when the file was replaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from engine.protocol.errors import RunError
from engine.protocol.events import MAX_LINE_BYTES
from engine.protocol.safefiles import RefusedFile, open_regular

__all__ = ["ByteTail", "LogTail"]


class ByteTail:
    """New complete lines of a growing file, as bytes, from a byte offset.

    Same contract as :class:`engine.protocol.events.EventTail` (a partial last line waits until its
    newline arrives: the offset only moves past complete lines, so it is read again next
    time) but it hands out raw bytes, which :mod:`tui.runs.eventscan` parses much faster than
    line-by-line JSON. A file that shrinks was replaced: the tail starts over and
    :attr:`restarted` says so.

    ``line_ends`` are the bytes that end a line; with ``split_long`` a line longer than a
    read is handed out in pieces instead of being waited for (for logs, where a progress
    bar may redraw itself with ``\r`` for ever without a newline). Without it, a line
    longer than ``max_line`` bytes is skipped (a planted 1 GB line is never held whole).
    Anything but a regular file (a FIFO would block the reader) is refused with a
    ``RunError``.
    """

    def __init__(self, path: Path, line_ends: bytes = b"\n", split_long: bool = False,
                 max_line: int = MAX_LINE_BYTES) -> None:
        self.path = path
        self.offset = 0
        self.restarted = False
        self.at_end = False
        """The last read reached the end of the file."""
        self._line_ends = tuple(line_ends[i:i + 1] for i in range(len(line_ends)))
        self._split_long = split_long
        self._max_line = max_line
        self._skipping = False  # inside an overlong line: its bytes are dropped
        self.skipped_long = 0
        """Overlong lines the last :meth:`read` began to skip (they come before what it
        returned)."""

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, max_bytes: int | None = None) -> bytes:
        self.skipped_long = 0
        try:
            f = open_regular(self.path)
        except FileNotFoundError:
            self.at_end = True
            return b""
        except RefusedFile as exc:
            raise RunError(f"refusing to read {self.path}: {exc}") from None
        with f:
            if os.fstat(f.fileno()).st_size < self.offset:
                self.offset, self.restarted, self._skipping = 0, True, False
            f.seek(self.offset)
            while True:
                if self._skipping and not self._skip_rest_of_line(f):
                    self.at_end = True  # the overlong line goes on to the end of the file
                    return b""
                chunk = self._read_lines(f, max_bytes)
                if chunk is not None:
                    break
        self.at_end = max_bytes is None or len(chunk) < max_bytes
        cut = self._last_end(chunk) + 1
        if cut == 0 and self._split_long and not self.at_end:
            cut = len(chunk)
        self.offset += cut
        return chunk if cut == len(chunk) else chunk[:cut]

    def _read_lines(self, f: BinaryIO, max_bytes: int | None) -> bytes | None:
        """Up to ``max_bytes`` from the offset, extended to a line end; None (and skipping
        on) when that line is longer than ``max_line``."""
        chunk = f.read() if max_bytes is None else f.read(max_bytes)
        while (max_bytes is not None and not self._split_long
               and self._last_end(chunk) < 0):
            if len(chunk) > self._max_line:  # skip it, without holding all of it
                self.offset += len(chunk)
                self._skipping = True
                self.skipped_long += 1
                return None
            more = f.read(max_bytes)  # one line longer than max_bytes
            if not more:
                break
            chunk += more
        return chunk

    def _skip_rest_of_line(self, f: BinaryIO) -> bool:
        """Move past the overlong line being skipped; False if its end is not there yet."""
        while True:
            piece = f.read(1 << 20)
            if not piece:
                return False
            end = self._last_end(piece)
            if end < 0:
                self.offset += len(piece)
                continue
            first = min(i for i in (piece.find(e) for e in self._line_ends) if i >= 0)
            self.offset += first + 1
            self._skipping = False
            f.seek(self.offset)
            return True

    def _last_end(self, chunk: bytes) -> int:
        """Index of the last line end in ``chunk`` (-1 if none)."""
        return max(chunk.rfind(end) for end in self._line_ends)


class LogTail:
    """New lines of a text log (``train.log``, ``stderr.log``), decoded leniently.

    The first read starts at most ``initial_bytes`` before the end, so opening a run with
    a huge log is instant; :attr:`skipped_bytes` says how much was left out.
    """

    def __init__(self, path: Path, initial_bytes: int = 1 << 20) -> None:
        self._tail = ByteTail(path, line_ends=b"\n\r", split_long=True)
        self._initial_bytes = initial_bytes
        self._started = False
        self.skipped_bytes = 0

    @property
    def path(self) -> Path:
        return self._tail.path

    def read(self, max_bytes: int | None = 4 << 20) -> list[str]:
        if not self._started:
            size = self._tail.size()
            if size == 0 and not self.path.exists():
                return []
            self._started = True
            if size > self._initial_bytes:
                with open_regular(self.path) as f:
                    f.seek(size - self._initial_bytes)
                    f.readline()  # drop the partial first line
                    self._tail.offset = f.tell()
                self.skipped_bytes = self._tail.offset
        data = self._tail.read(max_bytes)
        if not data:
            return []
        return data.decode("utf-8", errors="replace").splitlines()
