"""Fast, tolerant parsing of blocks of ``events.jsonl`` into columns (no Textual, no torch).

``json.loads`` costs 4-10 µs per train event here, so a run with a million of them would
take many seconds to open. Train events are written by one writer with one key order, so
:class:`TrainTemplate` learns that order from the first train line and turns it into a
single regular expression that pulls every wanted number out of a whole block in one C
call; numpy then parses the captured numbers column by column. Whenever a block does not
fit the template exactly (a new loss term, a hand-written line, a truncated line...), the
block is parsed line by line with :func:`engine.protocol.events.decode` instead, and the template is
re-learned. Either way the result is the same :class:`Block`.

Everything here is pure (bytes in, data out), so it can be tested on its own.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.protocol.eventindex import INDEX_FIELDS, STATS_PREFIX, TERM_PREFIX
from engine.protocol.events import FIELD_TYPES, LONG_LINE, MAX_LINE_BYTES, decode, skip_reason
from engine.protocol.safefiles import open_regular

__all__ = ["Block", "STATS_PREFIX", "ScanWarning", "TRAIN_FIELDS", "TrainRows", "TrainTemplate",
           "iter_range", "line_boundary", "parse_block", "parse_range", "scan_parallel"]

TRAIN_FIELDS = INDEX_FIELDS
"""Top-level numeric fields of a train event kept as series (``losses`` terms are kept
too, as ``losses.<term>``); everything else is only shown from the latest train event.
The engine's ``events.idx`` holds the same columns.

A semi-supervised trainer's per-step ``stats`` (pseudo-label counts, teacher scores,
the unsupervised loss weight) are kept as ``stats.<name>`` series, like loss terms."""
NESTED_SERIES = {"losses": TERM_PREFIX, "stats": STATS_PREFIX}

# Numbers are captured loosely (anything up to the next ',' or '}'): float() rejects what
# isn't a number, and a value holding ',' or '}' breaks the match, so the block is then
# parsed line by line. The loose class is much faster to match than a strict grammar.
_VALUE = rb"[^,}]*"
_STRING = rb'"(?:[^"\\]|\\.)*"'
_TRAIN_TAG = b'"type":"train"'
_OTHER_TYPE = re.compile(rb'"type":"(?!train")')
_START_TAG = b'start"'
_NUM_WIDTH = "S32"  # a float's repr is at most 24 characters


@dataclass
class TrainRows:
    """Consecutive train events as columns: ``columns[name]`` has ``n`` float64 values;
    ``owned``: the arrays are fresh and held by nothing else (a reader may keep them)."""

    columns: dict[str, np.ndarray]
    n: int
    owned: bool = False


@dataclass
class Block:
    """A parsed block: ``items`` in file order, each an event dict or a run of train rows.

    Only the position of ``start`` events relative to train rows matters (a resume rewinds
    the history); other events may follow the train rows of their block.
    """

    items: list[TrainRows | dict[str, Any]] = field(default_factory=list)
    last_train: dict[str, Any] | None = None
    n_events: int = 0
    fast: bool = False
    lines: int = 0
    """How many lines of the file the block covers (skipped ones included)."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """``(line index in the block, 0-based; why)`` of each line no reader can use."""


class TrainTemplate:
    """The exact layout of one writer's train lines, as a regular expression."""

    def __init__(self, pattern: re.Pattern[bytes], names: list[str]):
        self.pattern = pattern
        self.names = names
        """Column name of each capture group, in order."""

    @classmethod
    def learn(cls, event: dict[str, Any]) -> TrainTemplate | None:
        """The template of lines shaped like ``event``, or None if it can't be expressed."""
        names: list[str] = []
        parts: list[bytes] = []
        for key, value in event.items():
            key_re = re.escape(json.dumps(key).encode()) + b":"
            if key in ("v", "type"):
                value_re = re.escape(json.dumps(value).encode())
            elif key in NESTED_SERIES and isinstance(value, dict):
                terms = []
                for term, term_value in value.items():
                    if not _is_number(term_value):
                        return None
                    names.append(NESTED_SERIES[key] + term)
                    terms.append(re.escape(json.dumps(term).encode()) + b":(" + _VALUE + b")")
                value_re = rb"\{" + b",".join(terms) + rb"\}"
            elif isinstance(value, bool):
                value_re = rb"(?:true|false)"
            elif _is_number(value):
                if key in TRAIN_FIELDS:
                    names.append(key)
                    value_re = b"(" + _VALUE + b")"
                else:
                    value_re = _VALUE
            elif isinstance(value, str):
                value_re = _STRING
            else:  # lists and other nested objects: the line-by-line path handles them
                return None
            parts.append(key_re + value_re)
        if not names:
            return None
        regex = rb"^\{" + b",".join(parts) + rb"\}$"
        return cls(re.compile(regex, re.MULTILINE), names)

    def columns(self, data: bytes) -> TrainRows | None:
        """Columns of every template line in ``data``, or None if a value doesn't parse."""
        rows = self.pattern.findall(data)
        n, k = len(rows), len(self.names)
        if n == 0:
            return TrainRows({name: np.empty(0) for name in self.names}, 0)
        flat = itertools.chain.from_iterable(rows) if k > 1 else rows
        try:  # float() on each captured bytes: the fastest parse numpy/CPython offer
            values = np.fromiter(map(float, flat), np.float64, count=n * k).reshape(n, k)
        except ValueError:  # a null (a non-finite value) or junk: the vectorised way
            raw = np.array(rows, dtype=_NUM_WIDTH).reshape(n, k)
            raw[raw == b"null"] = b"nan"
            try:
                values = raw.astype(np.float64)
            except ValueError:
                return None
        # The writer turns non-finite values into null: an infinity is a number no float
        # holds, and an int field must hold an int; decode() skips such a line, so the
        # line-by-line path does (and says which line it was).
        if np.isinf(values).any():
            return None
        for i, name in enumerate(self.names):
            if FIELD_TYPES["train"].get(name) == "int":
                column = values[:, i]
                if ((np.abs(column) >= 2.0 ** 63) | (column - np.floor(column) > 0)).any():
                    return None
        return TrainRows({name: values[:, i].copy() for i, name in enumerate(self.names)}, n)


def _is_number(value: object) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _line_at(data: bytes, pos: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos)
    return start, (len(data) if end < 0 else end)


def _train_event(data: bytes, *, last: bool) -> dict[str, Any] | None:
    """The first (or last) complete, parsable train event in ``data``."""
    pos = data.rfind(_TRAIN_TAG) if last else data.find(_TRAIN_TAG)
    while pos >= 0:
        start, end = _line_at(data, pos)
        event = decode(data[start:end].decode("utf-8", errors="replace"))
        if event is not None and event.get("type") == "train":
            return event
        pos = data.rfind(_TRAIN_TAG, 0, start) if last else data.find(_TRAIN_TAG, end)
    return None


def _first_train_event(data: bytes) -> dict[str, Any] | None:
    return _train_event(data, last=False)


def _last_train_event(data: bytes) -> dict[str, Any] | None:
    return _train_event(data, last=True)


def parse_block(data: bytes, template: TrainTemplate | None
                ) -> tuple[Block, TrainTemplate | None]:
    """Parse complete lines (``data`` ends with a newline, or is empty).

    Returns the block and the template to use for the next one.
    """
    block = Block()
    if not data:
        return block, template
    # The lines that are not train events (few: eval, system, checkpoint...).
    others: list[tuple[int, bool]] = []  # (line start, is a start event)
    for m in _OTHER_TYPE.finditer(data):
        line_start = _line_at(data, m.start())[0]
        if not others or others[-1][0] != line_start:
            others.append((line_start, data.startswith(_START_TAG, m.end())))
    # A resume ("start") rewinds history, so train rows must not cross it: parse the
    # pieces between start events separately, in order.
    cuts = [pos for pos, is_start in others if is_start and pos > 0]
    bounds = [0, *cuts, len(data)]
    # (each piece adds its lines to block.lines, which numbers the skipped ones)
    for lo, hi in zip(bounds, bounds[1:]):
        piece_others = [pos - lo for pos, _ in others if lo <= pos < hi]
        template = _parse_piece(data[lo:hi] if (lo, hi) != (0, len(data)) else data,
                                piece_others, template, block)
    return block, template


def _parse_piece(data: bytes, others: list[int], template: TrainTemplate | None,
                 block: Block) -> TrainTemplate | None:
    if template is None and _TRAIN_TAG in data:
        first = _first_train_event(data)
        template = TrainTemplate.learn(first) if first is not None else None
    if template is not None and _parse_fast(data, others, template, block):
        return template
    last = _parse_slow(data, block)
    return TrainTemplate.learn(last) if last is not None else template


def _parse_fast(data: bytes, starts: list[int], template: TrainTemplate,
                block: Block) -> bool:
    """All train lines through the template, the few others (``starts``: where their
    lines begin) through json; False (and nothing added) unless every line is accounted
    for."""
    n_train = data.count(_TRAIN_TAG)
    n_lines = data.count(b"\n")
    if n_train + len(starts) != n_lines:
        return False
    rows = template.columns(data) if n_train else TrainRows({}, 0)
    if rows is None or rows.n != n_train:
        return False
    others = []
    for start in starts:
        end = data.find(b"\n", start)
        event = decode(data[start:end].decode("utf-8", errors="replace"))
        if event is None or event.get("type") == "train":
            return False
        others.append(event)
    # A start event, if any, is the first line of the piece (see parse_block).
    head = [e for e in others if e.get("type") == "start"]
    tail = [e for e in others if e.get("type") != "start"]
    block.items.extend(head)
    if rows.n:
        block.items.append(rows)
        block.last_train = _last_train_event(data)
    block.items.extend(tail)
    block.n_events += rows.n + len(others)
    block.lines += n_lines
    block.fast = True
    return True


def _parse_slow(data: bytes, block: Block) -> dict[str, Any] | None:
    """Line by line; returns the last train event seen."""
    pending: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    lines = data.split(b"\n")
    first = block.lines
    block.lines += len(lines) - 1 if data.endswith(b"\n") else len(lines)
    for i, raw in enumerate(lines):
        text = raw.decode("utf-8", errors="replace")
        event = decode(text)
        if event is None:
            why = skip_reason(text)
            if why is not None:
                block.skipped.append((first + i, why))
            continue
        block.n_events += 1
        if event.get("type") == "train":
            pending.append(event)
            last = event
            continue
        if event.get("type") == "start" and pending:
            block.items.append(train_rows(pending))
            pending = []
        block.items.append(event)
    if pending:
        block.items.append(train_rows(pending))
    if last is not None:
        block.last_train = last
    return last


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    try:
        return float(value)
    except OverflowError:  # an int of 309+ digits (a hand-edited or planted line)
        return float("nan")


def train_rows(events: list[dict[str, Any]]) -> TrainRows:
    """Columns of decoded train events (missing or non-numeric values are NaN)."""
    names: list[tuple[str, str | None, str]] = [(n, None, n) for n in TRAIN_FIELDS]
    seen = set(TRAIN_FIELDS)
    for event in events:
        for key, prefix in NESTED_SERIES.items():
            nested = event.get(key)
            if isinstance(nested, dict):
                for term in nested:
                    name = prefix + str(term)
                    if name not in seen:
                        seen.add(name)
                        names.append((name, key, term))
    columns = {}
    for name, key, term in names:
        if key is not None:
            values = [_float(e[key].get(term)) if isinstance(e.get(key), dict)
                      else float("nan") for e in events]
        else:
            values = [_float(e.get(name)) for e in events]
        columns[name] = np.array(values, dtype=np.float64)
    return TrainRows(columns, len(events))


def parse_range(path: str | Path, start: int, end: int, block_bytes: int = 8 << 20
                ) -> list[Block]:
    """Parse the bytes ``[start, end)`` of a file; both must be line boundaries."""
    return [block for _, block in iter_range(path, start, end, block_bytes)]


def iter_range(path: str | Path, start: int, end: int, block_bytes: int = 8 << 20
               ) -> Iterator[tuple[int, Block]]:
    """``(offset after the block, block)`` for the bytes ``[start, end)`` of a file."""
    template: TrainTemplate | None = None
    with open_regular(path) as f:
        f.seek(start)
        pos = start
        while pos < end:
            data = f.read(min(block_bytes, end - pos))
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block
                after = _after_line(f, pos)
                if after - pos > MAX_LINE_BYTES or after > end:
                    # too long for any reader (or cut short by the end): skipped unread
                    pos = after
                    yield pos, Block(lines=1, skipped=[(0, LONG_LINE)])
                    continue
                f.seek(pos)
                data = f.read(after - pos)
                cut = len(data)
            f.seek(pos + cut)
            pos += cut
            block, template = parse_block(data[:cut], template)
            yield pos, block


def _after_line(f: BinaryIO, pos: int) -> int:
    """The offset after the line that starts at or before ``pos``, read piece by piece (a
    line may be a planted gigabyte)."""
    f.seek(pos)
    while True:
        piece = f.readline(1 << 20)
        pos += len(piece)
        if not piece or piece.endswith(b"\n"):
            return pos


def scan_parallel(path: str | Path, start: int, end: int, workers: int,
                  cancelled: Callable[[], bool] = lambda: False,
                  block_bytes: int = 8 << 20) -> Iterator[tuple[int, Block]]:
    """Like :func:`iter_range`, with the work shared by ``workers`` processes: this one
    parses the first part (so its blocks arrive progressively) while ``workers - 1`` child
    processes (``python -m tui.runs.eventscan``) parse the others; their blocks follow in file
    order. A child that fails has its part parsed here instead, and the failure is raised
    as a :class:`ScanWarning` *after* every block was delivered, so nothing is lost.
    """
    bounds = [start]
    for k in range(1, workers):
        bounds.append(max(bounds[-1], line_boundary(path, start + (end - start) * k // workers)))
    bounds.append(end)
    parts = [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    children = [subprocess.Popen([sys.executable, "-m", "tui.runs.eventscan", str(path), str(lo),
                                  str(hi)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env) for lo, hi in parts[1:]]
    failures: list[str] = []
    try:
        if parts:
            for item in iter_range(path, *parts[0], block_bytes):
                yield item
                if cancelled():
                    return
        for (lo, hi), child in zip(parts[1:], children):
            while True:
                try:
                    out, err = child.communicate(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    if cancelled():
                        return
            if child.returncode == 0:
                blocks = pickle.loads(out)
                for i, block in enumerate(blocks):
                    yield (hi if i == len(blocks) - 1 else lo), block
            else:
                failures.append(f"{err.decode(errors='replace').strip()[-500:]}")
                yield from iter_range(path, lo, hi, block_bytes)
            if cancelled():
                return
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    if failures:
        raise ScanWarning("a reader process failed; its part was read again in the "
                          "monitor itself: " + " | ".join(failures))


class ScanWarning(RuntimeError):
    """A helper process of :func:`scan_parallel` failed (its data was read anyway)."""


def line_boundary(path: str | Path, offset: int) -> int:
    """The first line start at or after ``offset``."""
    if offset == 0:
        return 0
    with open_regular(path) as f:
        f.seek(offset - 1)
        if f.read(1) == b"\n":
            return offset
        return _after_line(f, offset)


def main(argv: list[str] | None = None) -> int:
    """``python -m tui.runs.eventscan FILE START END``: pickled blocks on stdout. The run
    monitor starts a few of these to read a long history on several cores at once."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m tui.runs.eventscan FILE START END", file=sys.stderr)
        return 2
    # Pickle instances of tui.runs.eventscan's classes, not of this __main__ module's copies.
    from tui.runs import eventscan

    blocks = eventscan.parse_range(args[0], int(args[1]), int(args[2]))
    sys.stdout.buffer.write(pickle.dumps(blocks, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
