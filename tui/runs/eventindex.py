"""Reading a run's history through ``events.idx`` (:mod:`engine.protocol.eventindex`), no torch.

The train curves come straight out of the index (numpy views of its float64 rows); of the
other events only those the monitor keeps are read from ``events.jsonl`` (every eval, start,
checkpoint, status and error event; the last ``keep_system`` system events), each by its
offset. The result is the same :class:`tui.runs.eventscan.Block` stream that parsing the whole
file gives, so :class:`tui.runs.runmodel.RunModel` ingests it unchanged.

The index is trusted only as far as it checks out against ``events.jsonl``: its records must
point at ascending, non-overlapping lines of the file; every event read by offset must be of
the type the index says; 16 train rows spread over each segment (its first and last among
them) must match their lines. Reading stops at the first thing that does not hold (and at
the end of the index), and :func:`index_blocks` says where: the caller parses the rest of
``events.jsonl``. Bytes between indexed lines (a second writer's events, a line cut by a
kill) are parsed as usual.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from engine.protocol.eventindex import HEADER_TAG, INDEX_FIELDS, MAGIC, OTHER_CODE, TYPE_CODES
from engine.protocol.events import MAX_LINE_BYTES, decode
from engine.protocol.safefiles import open_regular
from tui.runs.eventscan import NESTED_SERIES, Block, TrainRows, TrainTemplate, parse_block

__all__ = ["index_blocks"]

_TRAIN = TYPE_CODES["train"]
_SYSTEM = TYPE_CODES["system"]
_START = TYPE_CODES["start"]
_SKIPPED = (TYPE_CODES["log"],)
"""Event types the monitor does nothing with: counted, never read."""
_CODE_TYPES = {code: name for name, code in TYPE_CODES.items()}
_SLACK = 1 << 16
_CHECKS = 16


def index_blocks(events_path: str | Path, index_path: str | Path, end: int,
                 keep_system: int = 1024) -> Iterator[tuple[int, Block]]:
    """``(offset in events.jsonl after the block, block)`` for the history up to ``end`` (a
    line boundary of events.jsonl), as far as the index covers it and checks out. The last
    offset yielded is where the caller goes on parsing; nothing is yielded without a usable
    index."""
    try:
        with open_regular(index_path) as f:
            size = f.seek(0, 2)
            # Records are smaller than the lines they index: a larger file is not ours.
            if size > 2 * end + _SLACK:
                return
            f.seek(0)
            data = f.read(size)
    except OSError:
        return
    if not data.startswith(MAGIC):
        return
    with open_regular(events_path) as events:
        reader = _Reader(data, events, end, keep_system)
        yield from reader.blocks()


class _Reader:
    def __init__(self, data: bytes, events: Any, end: int, keep_system: int) -> None:
        self.data = data
        self.events = events
        self.end = end
        self.keep_system = keep_system
        self.covered = 0  # events.jsonl bytes accounted for so far
        self.template: TrainTemplate | None = None

    def blocks(self) -> Iterator[tuple[int, Block]]:
        segments = list(self._segments())
        # The last few system events of the whole index are read, none before them.
        system_total = sum(int((rows[:, 0] == _SYSTEM).sum()) for _, _, rows in segments)
        skip_system = max(0, system_total - self.keep_system)
        for names, start, rows in segments:
            if start > self.covered:
                yield from self._gap(start)
            n_system = int((rows[:, 0] == _SYSTEM).sum())
            block = self._segment(names, rows, min(skip_system, n_system))
            skip_system -= min(skip_system, n_system)
            if block is None:
                return
            yield self.covered, block

    def _segments(self) -> Iterator[tuple[list[str], int, np.ndarray]]:
        """(column names, events offset, rows) of each segment that checks out, in order."""
        data, pos, last_end = self.data, len(MAGIC), 0
        while pos + 32 <= len(data):
            tag, nbytes, width, start = np.frombuffer(data, "<f8", 4, pos)
            if tag != HEADER_TAG or not (32 <= nbytes <= 1 << 16) or not 3 <= width <= 4096 \
                    or nbytes % 8 or start < last_end or start > self.end:
                return
            nbytes, width = int(nbytes), int(width)
            try:
                names = json.loads(data[pos + 32:pos + nbytes])
            except ValueError:
                return
            if not isinstance(names, list) or len(names) != width - 3 \
                    or names[:len(INDEX_FIELDS)] != list(INDEX_FIELDS):
                return
            pos += nbytes
            count = (len(data) - pos) // (8 * width)
            rows = np.frombuffer(data, "<f8", count * width, pos).reshape(count, width)
            codes = rows[:, 0].copy()  # contiguous: the checks below pass over it often
            bad = np.flatnonzero((codes < _TRAIN) | (codes > OTHER_CODE)
                                 | (codes != np.floor(codes)))
            n = int(bad[0]) if bad.size else count
            n = _consistent_prefix(rows[:n], start, self.end)
            yield names, int(start), rows[:n]
            if n < count and not (bad.size and bad[0] == n and codes[n] == HEADER_TAG):
                return  # stopped at something that is not the next segment
            pos += n * 8 * width
            last_end = int(rows[n - 1, 1]) if n else int(start)

    def _gap(self, upto: int) -> Iterator[tuple[int, Block]]:
        """Lines not in the index (another writer's, a torn one): parsed from the file."""
        self.events.seek(self.covered)
        data = self.events.read(upto - self.covered)
        block, self.template = parse_block(data[: data.rfind(b"\n") + 1], self.template)
        self.covered = upto
        yield upto, block

    def _line(self, row: np.ndarray) -> dict[str, Any] | None:
        end, length = int(row[1]), int(row[2])
        self.events.seek(end - length)
        return decode(self.events.read(length).decode("utf-8", errors="replace"))

    def _segment(self, names: list[str], rows: np.ndarray, skip_system: int) -> Block | None:
        """The block of one segment's rows, or None (and nothing covered) if it does not
        match events.jsonl."""
        codes = rows[:, 0]
        train = np.flatnonzero(codes == _TRAIN)
        # Spot checks: rows spread over the segment, its last one included.
        checked = train[sorted(set(np.linspace(0, train.size - 1, _CHECKS).astype(int)))] \
            if train.size else train
        if not all(self._matches(names, rows[i]) for i in checked):
            return None
        starts, ends = rows[:, 1] - rows[:, 2], rows[:, 1]
        # Where lines of the file fall between indexed ones: parsed there, in order.
        gaps = np.flatnonzero(starts[1:] > ends[:-1]) + 1
        read = (codes != _TRAIN) & ~np.isin(codes, _SKIPPED)
        if skip_system:
            system = np.flatnonzero(codes == _SYSTEM)
            read[system[:skip_system]] = False
        block = Block(fast=True)
        # Train rows are cut only where order matters: at a resume's start event (it
        # rewinds them) and at lines parsed from the file; the other events read follow
        # the rows before the next cut (the Block contract).
        cuts = sorted(set(np.flatnonzero(read).tolist()) | set(gaps.tolist()))
        gap_set = set(gaps.tolist())
        lo, pending, gap_lines = 0, [], 0
        for i in [*cuts, len(rows)]:
            is_start = i < len(rows) and codes[i] == _START
            if i == len(rows) or i in gap_set or is_start:
                self._add_train(block, names, rows[lo:i])
                block.items.extend(pending)
                lo, pending = i, []
            if i == len(rows):
                break
            if i in gap_set:
                self.covered = int(ends[i - 1])
                for _, gap_block in self._gap(int(starts[i])):
                    block.items.extend(gap_block.items)
                    block.n_events += gap_block.n_events
                    # the gap's lines follow the segment's first i lines and earlier gaps
                    block.skipped += [(i + gap_lines + k, why) for k, why in gap_block.skipped]
                    gap_lines += gap_block.lines
            if read[i]:
                event = self._line(rows[i])
                if event is None or event.get("type") != _CODE_TYPES.get(int(codes[i]),
                                                                         event.get("type")):
                    return None
                (block.items if is_start else pending).append(event)
        block.n_events += len(rows)
        block.lines = len(rows) + gap_lines  # one line per record
        if train.size:
            block.last_train = self._line(rows[train[-1]])
        self.covered = int(ends[-1]) if len(rows) else self.covered
        return block

    def _add_train(self, block: Block, names: list[str], rows: np.ndarray) -> None:
        train = np.flatnonzero(rows[:, 0] == _TRAIN)
        if not train.size:
            return
        # Each column gathered once (a strided take is faster than a boolean mask).
        columns = {name: (rows[:, 3 + j].copy() if train.size == len(rows)
                          else rows[:, 3 + j].take(train)) for j, name in enumerate(names)}
        block.items.append(TrainRows(columns, int(train.size), owned=True))

    def _matches(self, names: list[str], row: np.ndarray) -> bool:
        event = self._line(row)
        if event is None or event.get("type") != "train":
            return False
        nested = {prefix: event.get(key) if isinstance(event.get(key), dict) else {}
                  for key, prefix in NESTED_SERIES.items()}
        for j, name in enumerate(names):
            prefix = name[:name.index(".") + 1] if "." in name else ""
            value = nested[prefix].get(name[len(prefix):]) if prefix in nested \
                else event.get(name)
            value = float(value) if type(value) in (int, float) else math.nan
            if not (value == row[3 + j] or (math.isnan(value) and math.isnan(row[3 + j]))):
                return False
        return True


def _consistent_prefix(rows: np.ndarray, start: float, end: int) -> int:
    """How many leading rows point at ascending, non-overlapping lines inside
    ``[start, end)`` of events.jsonl, none longer than a reader accepts."""
    if not len(rows):
        return 0
    ends, lengths = rows[:, 1].copy(), rows[:, 2].copy()  # contiguous: several passes
    starts = ends - lengths
    ok = (lengths >= 1) & (lengths <= MAX_LINE_BYTES) & (ends <= end) & (ends == np.floor(ends))
    ok[0] &= starts[0] >= start
    ok[1:] &= starts[1:] >= ends[:-1]
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else len(rows)
