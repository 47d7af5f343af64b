"""``events.idx``: a compact binary index of ``events.jsonl`` that the engine appends as it
writes (stdlib only).

Reading a long run's curves from ``events.jsonl`` means parsing hundreds of megabytes of
JSON; this index holds, for every event, where its line is and, for train events, the
numbers the curves need, as fixed-width float64 records that numpy reads in one call
(:mod:`tui.runs.eventindex`). It is only a speed-up: ``events.jsonl`` stays the record, and a
reader checks the index against it and falls back to parsing the lines wherever the index
is missing, behind, torn or does not match.

Layout (little-endian float64 words)::

    magic     8 bytes  b"DTIDX1\\n\\0"
    segment   header: [1, header bytes, W, events offset] + JSON list of the W-3 column
              names, space-padded to a multiple of 8 bytes; then rows of W words each:
    row       [type code, end offset of the line in events.jsonl, line length in bytes,
               W-3 values]  (the values are the columns of a train event, NaN otherwise)

A new segment starts whenever a writer opens the index (each attempt of a run) and when the
loss terms or the ``stats`` names (semi-supervised trainers) of train events change. Column
values are exactly what a reader of the JSON line gets (numbers as written, NaN for null or
anything that is not a number).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from engine.protocol.safefiles import open_append, open_regular

__all__ = ["HEADER_TAG", "INDEX_FIELDS", "MAGIC", "OTHER_CODE", "STATS_PREFIX", "TERM_PREFIX",
           "TYPE_CODES", "EventIndexWriter", "index_value"]

MAGIC = b"DTIDX1\n\0"
HEADER_TAG = 1
INDEX_FIELDS = ("t", "iter", "loss", "lr", "ips")
"""Top-level numeric fields of a train event kept as series; the ``losses`` terms follow
(as ``losses.<term>``), then a semi-supervised trainer's ``stats`` (as ``stats.<name>``)."""
TERM_PREFIX = "losses."
STATS_PREFIX = "stats."
TYPE_CODES = {"train": 2, "start": 3, "eval": 4, "system": 5, "checkpoint": 6, "status": 7,
              "error": 8, "log": 9}
OTHER_CODE = 10
"""Any other event type (a newer one)."""
_NAN = float("nan")


def index_value(value: Any) -> float:
    """A field's value as a curve sees it: a number (never a bool), else NaN."""
    if type(value) in (int, float):
        return float(value)
    return _NAN


class EventIndexWriter:
    """Appends one record per event written to ``events.jsonl`` (see the module docstring).

    Never raises: the index is a speed-up, so if it cannot be written (a link planted in
    its place, a full disk) it is given up for this writer, cut back to its last whole
    record, and readers parse ``events.jsonl`` from there on.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._terms: tuple[tuple[str, tuple[str, ...]], ...] | None = None
        self._width = 0
        self._fd: int | None = None
        try:
            f = open_append(self.path, "ab")
        except OSError:
            return
        self._fd = os.dup(f.fileno())
        f.close()
        self._size = os.fstat(self._fd).st_size
        # A torn or foreign file (a killed writer, a copy cut short): start it afresh; the
        # events before our first one are then read from events.jsonl.
        if self._size % 8 or not self._has_magic():
            self._truncate(0)
        if self._size == 0:
            self._append(MAGIC)

    @property
    def active(self) -> bool:
        return self._fd is not None

    def _has_magic(self) -> bool:
        if self._size == 0:
            return True
        try:
            with open_regular(self.path) as f:
                return f.read(len(MAGIC)) == MAGIC
        except OSError:
            return False

    def add(self, event: dict[str, Any], end: int, length: int) -> None:
        """Index ``event``, whose line (``length`` bytes with its newline) ends at byte
        ``end`` of events.jsonl."""
        if self._fd is None:
            return
        kind = event.get("type")
        code = TYPE_CODES.get(kind, OTHER_CODE) if type(kind) is str else OTHER_CODE
        record = b""
        if code == TYPE_CODES["train"]:
            losses = event.get("losses")
            stats = event.get("stats")
            losses = losses if isinstance(losses, dict) else {}
            stats = stats if isinstance(stats, dict) else {}
            columns = ((TERM_PREFIX, tuple(losses)), (STATS_PREFIX, tuple(stats)))
            if columns != self._terms:
                record = self._header(columns, end - length)
            values = [index_value(event.get(name)) for name in INDEX_FIELDS]
            values += [index_value(losses[term]) for term in columns[0][1]]
            values += [index_value(stats[name]) for name in columns[1][1]]
        else:
            if self._terms is None:
                record = self._header(((TERM_PREFIX, ()), (STATS_PREFIX, ())), end - length)
            values = [_NAN] * (self._width - 3)
        record += struct.pack(f"<{self._width}d", code, end, length, *values)
        self._append(record)

    def _header(self, columns: tuple[tuple[str, tuple[str, ...]], ...],
                events_offset: int) -> bytes:
        self._terms = columns
        names = [*INDEX_FIELDS, *(prefix + name for prefix, names in columns for name in names)]
        self._width = 3 + len(names)
        text = json.dumps(names).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<4d", HEADER_TAG, 32 + len(text), self._width,
                           events_offset) + text

    def _append(self, data: bytes) -> None:
        if self._fd is None:
            return
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(f"short write ({written} of {len(data)} bytes)")
            self._size += written
        except OSError:
            self._give_up()

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            self._size = size
        except OSError:
            self._give_up(truncate=False)

    def _give_up(self, truncate: bool = True) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if truncate:  # no partial record for the next writer to append after (if this
            # fails too, readers still check every record against events.jsonl)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
        os.close(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

