"""The event stream of a run: ``events.jsonl`` schema, writer and tolerant reader.

stdlib only: the engine writes it, every front-end reads it. One JSON object per line,
flushed per line. Every event has ``v`` (schema version), ``t`` (unix time) and ``type``.

Event types and their fields (schema version 1):

``start``       run_id, config, trainer, world_size, device, resume_from, argv, epochs,
                iters_per_epoch, max_iters, num_params, start_epoch (0-based), start_iter;
                semi-supervised trainers add phase (burn_in|semi), semi_start_iter and
                teacher_start_iter (steps done before the semi phase / the teacher start:
                the first semi step is iteration semi_start_iter + 1)
``train``       epoch (0-based), iter (global, 1-based count of steps done), epoch_iter,
                iters_per_epoch, max_iters, loss, losses {term: value}, lr, batch_time,
                data_time, ips (images/s), eta (s), memory (MB of CUDA memory, or null);
                semi-supervised trainers add phase, next_phase, next_phase_iter, teacher
                (started|not started), teacher_start_iter, and stats {name: value}
                (pseudo-label statistics averaged like the losses)
``eval_start``  epoch (0-based), iter, models [names, in the order they are evaluated],
                images (how many): written as an evaluation begins, so a front-end can say
                "evaluating" until the ``eval`` events (or a ``train``/``status`` event) come
``eval``        epoch (0-based), iter, model (student|teacher|ema|model), metrics {AP, AP50,
                AP75, APs, APm, APl} on the 0-1 scale, per_class {name: AP} (0-1), stats
                (the 12 COCO numbers), eval_time
``system``      cpu_percent, ram_used_mb, ram_total_mb, proc_rss_mb, gpus [{index, name,
                util, mem_used_mb, mem_total_mb, temperature, power_w}] (empty without GPU)
``checkpoint``  path, kind (last|best|epoch|interval), epoch (0-based), iter (written after
                the file is safely in place)
``status``      status (starting|running|finished|failed|interrupted), message
``error``       error_type, message, traceback, user_error (bool), iter (the step under way),
                path (``DiskFull`` only: the file that did not fit). A full disk may keep
                this event out of a full ``events.jsonl``: run.json's ``error`` has it too
``log``         level, message (notable log lines, e.g. skipped weights)
``preview``     epoch (0-based), iter, model, dir (the run's previews/ folder), files (the
                names of this evaluation's images in it: ``epochNNN_imgK.png``, NNN 1-based)
``download``    key (the config key), source, url, path (the cache file), done (bytes),
                total (bytes or null), state (downloading|done): a weights download before
                training starts (at most two a second, and the final one)

Conventions (every reader follows them):

* ``epoch`` in every event is the 0-based index of the epoch the step or evaluation
  belongs to (the training loop's counter, as in PaddleDetection). Everything shown to
  people counts from 1 and adds 1 to it: ``train.log`` (``Epoch: [1/12]``), the console,
  the TUI, and ``run.json`` (``best.epoch`` and ``progress.epoch`` are 1-based; see
  ``engine.protocol.rundir``). ``epoch 12/12`` is the last epoch of a 12-epoch run.
* AP values are fractions on the 0-1 scale here and everywhere they are shown (3
  decimals, labelled "AP": ``best AP 0.814``), never percentages.
* A resumed or restarted run appends to the same file: each attempt begins with a
  ``status`` event ``running`` (then ``start``) and ends with a final ``status``. A reader
  that follows a run judges it by its current attempt only: a final status followed by a
  ``running`` one belongs to an earlier attempt.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.protocol.errors import RunError
from engine.protocol.eventindex import EventIndexWriter
from engine.protocol.rundir import append_whole, open_run_file
from engine.protocol.safefiles import RefusedFile, open_regular

SCHEMA_VERSION = 1
EVENT_TYPES = ("start", "train", "eval", "system", "checkpoint", "status", "error", "log",
               "preview", "download", "eval_start")
METRIC_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
MAX_LINE_BYTES = 1 << 20
"""Readers skip a longer line unparsed (the engine's longest, an error event with its
traceback, is a few KiB): a planted 1 GB line must not cost minutes and gigabytes."""
READ_BYTES = 8 << 20

# The type of each field readers use, per event type: a line where one of them holds
# another type is skipped like a truncated one (a missing field is each reader's business:
# hand-written and older events may leave some out). Every field may be null (NaN).
_INT, _NUM, _STR, _BOOL = "int", "number", "str", "bool"
_NUM_MAP, _STR_LIST, _LIST = "number map", "str list", "list"
FIELD_TYPES: dict[str, dict[str, str]] = {
    "start": {"trainer": _STR, "world_size": _INT, "device": _STR, "resume_from": _STR,
              "epochs": _INT, "iters_per_epoch": _INT, "max_iters": _INT, "num_params": _INT,
              "start_epoch": _INT, "start_iter": _INT, "train_images": _INT,
              "eval_images": _INT, "classes": _STR_LIST, "phase": _STR,
              "semi_start_iter": _INT, "teacher_start_iter": _INT},
    "train": {"epoch": _INT, "iter": _INT, "epoch_iter": _INT, "iters_per_epoch": _INT,
              "max_iters": _INT, "loss": _NUM, "losses": _NUM_MAP, "lr": _NUM,
              "batch_time": _NUM, "data_time": _NUM, "ips": _NUM, "eta": _NUM,
              "memory": _NUM, "stats": _NUM_MAP, "phase": _STR, "next_phase": _STR,
              "next_phase_iter": _INT, "teacher_start_iter": _INT},
    "eval_start": {"epoch": _INT, "iter": _INT, "models": _STR_LIST, "images": _INT},
    "eval": {"epoch": _INT, "iter": _INT, "model": _STR, "metrics": _NUM_MAP,
             "per_class": _NUM_MAP, "stats": _LIST, "eval_time": _NUM, "summary": _STR_LIST},
    "system": {"cpu_percent": _NUM, "ram_used_mb": _NUM, "ram_total_mb": _NUM,
               "proc_rss_mb": _NUM, "gpus": _LIST},
    "checkpoint": {"path": _STR, "kind": _STR, "epoch": _INT, "iter": _INT},
    "status": {"status": _STR, "message": _STR},
    "error": {"error_type": _STR, "message": _STR, "traceback": _STR, "user_error": _BOOL,
              "iter": _INT, "path": _STR},
    "log": {"level": _STR, "message": _STR},
    "preview": {"epoch": _INT, "iter": _INT, "model": _STR, "dir": _STR, "files": _STR_LIST},
    "download": {"key": _STR, "source": _STR, "url": _STR, "path": _STR, "done": _INT,
                 "total": _INT, "state": _STR},
}


_MAX_FLOAT = 1.7976931348623157e308
_INT_RANGE = range(-(2**63), 2**63)  # what TensorBoard, numpy and SQLite can hold


def _is_num(value: Any) -> bool:
    """None, a float, or an int a float can hold (a 400-digit int would overflow every
    reader that plots it: skipped like any malformed line)."""
    return value is None or type(value) is float or (
        type(value) is int and -_MAX_FLOAT <= value <= _MAX_FLOAT)


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == _NUM:
        return _is_num(value)
    if kind == _INT:
        return type(value) is int and value in _INT_RANGE
    if kind == _STR:
        return type(value) is str
    if kind == _BOOL:
        return type(value) is bool
    if kind == _NUM_MAP:
        return type(value) is dict and all(map(_is_num, value.values()))
    if kind == _STR_LIST:
        return type(value) is list and all(type(v) is str for v in value)
    return type(value) is list  # _LIST


def well_formed(event: dict[str, Any]) -> bool:
    """Whether every known field of ``event`` has the type readers expect."""
    if not _is_num(event.get("t")):
        return False  # every event's time: a 400-digit one plots nowhere
    fields = FIELD_TYPES.get(event["type"])
    if fields is None:
        return True  # a newer event type: readers ignore what they do not know
    return all(_fits(value, fields[key]) for key, value in event.items() if key in fields)


def make_event(type: str, **fields: Any) -> dict[str, Any]:
    """A new event dict with the version, time and type filled in."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    return {"v": SCHEMA_VERSION, "t": time.time(), "type": type, **fields}


def encode(event: dict[str, Any]) -> str:
    """One line of ``events.jsonl`` (no newline). Non-finite floats become null; other
    floats keep 7 significant digits (float32 precision: plenty for curves and tables, and
    a quarter less to write and parse), except the timestamp ``t``, which stays exact."""
    out = {k: (v if k == "t" else _finite(v)) for k, v in event.items()}
    return json.dumps(out, separators=(",", ":"), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            return None
        return float(f"{obj:.7g}")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def decode(line: str) -> dict[str, Any] | None:
    """Parse one line; ``None`` for a blank, truncated, overlong, malformed (a known field
    of the wrong type) or non-event line."""
    line = line.strip()
    if not line or len(line) > MAX_LINE_BYTES:
        return None
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # JSONDecodeError, or a number too long to parse
        return None
    if not isinstance(obj, dict) or type(obj.get("type")) is not str or not well_formed(obj):
        return None
    return obj


LONG_LINE = f"longer than {MAX_LINE_BYTES} bytes"
"""Why a reader skipped an overlong line (see :func:`skip_reason`)."""
SKIPPED_SHOWN = 5
"""How many skipped lines a reader names (the rest are counted)."""


def skip_reason(line: str) -> str | None:
    """Why :func:`decode` gives ``None`` for ``line`` (None for a blank line, which is not
    worth a word). Only called for lines that were skipped: the fast path never pays."""
    line = line.strip()
    if not line:
        return None
    if len(line) > MAX_LINE_BYTES:
        return LONG_LINE
    try:
        obj = json.loads(line)
    except RecursionError:
        return "nested too deeply"
    except ValueError as exc:
        # Python refuses to convert an int of more than 4300 digits (a planted line)
        return ("a number too long to read" if "digits" in str(exc)
                else "not valid JSON (a line cut short, or not written by dettui)")
    if not isinstance(obj, dict):
        return "not a JSON object"
    if type(obj.get("type")) is not str:
        return 'no "type" string'
    if not _is_num(obj.get("t")):
        return ('"t" holds a number no float holds' if _is_huge(obj["t"])
                else '"t" is not a number')
    fields = FIELD_TYPES.get(obj["type"], {})
    for key, value in obj.items():
        kind = fields.get(key)
        if kind is not None and not _fits(value, kind):
            if _is_huge(value):
                return f'"{key}" holds a number no float holds'
            if kind == _INT and type(value) is int:
                return f'"{key}" holds an int out of range'
            return f'"{key}" is not {"an" if kind == _INT else "a"} {kind}'
    return "not an event"  # not reached: decode would have kept it


def _is_huge(value: Any) -> bool:
    values = value.values() if type(value) is dict else [value]
    return any(type(v) is int and not _is_num(v) for v in values)


def skipped_line(line_no: int, reason: str) -> str:
    """The one wording every reader uses for a line it skipped (1-based ``line_no``)."""
    return f"events.jsonl line {line_no} skipped: {reason}"


def skipped_summary(count: int, shown: list[str]) -> str:
    """The first skipped lines named (``shown``, from :func:`skipped_line`), and how many
    more there were."""
    more = count - len(shown)
    return "\n".join([*shown, *([more_skipped(more)] if more > 0 else [])])


def more_skipped(more: int) -> str:
    return f"... and {more} more skipped line{'s' if more != 1 else ''} of events.jsonl"


class EventWriter:
    """Appends events to ``events.jsonl``, one whole line each, written at once (no buffer
    to flush). A line that does not fit (a full disk, a file size limit) is not left half
    written: the write raises :class:`~engine.protocol.errors.DiskFull` and the file ends with the
    last whole line (:func:`engine.protocol.rundir.append_whole`)."""

    def __init__(self, path: str | Path, index: str | Path | None = None):
        self.path = Path(path)
        # A writer killed mid-line leaves a partial last line: start ours on a fresh line.
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        # Never through a symlink: a planted one would send the events outside the run.
        self._file = open_run_file(self.path, "ab", buffering=0)
        if needs_newline:
            append_whole(self._file, b"\n", self.path)
        # ``events.idx`` (protocol.eventindex), kept by the engine's one writer only: a second
        # writer's lines are not indexed, and readers parse them from this file.
        self._index = EventIndexWriter(index) if index is not None else None

    def write(self, type: str, **fields: Any) -> dict[str, Any]:
        line = encode(make_event(type, **fields))
        append_whole(self._file, (line + "\n").encode("utf-8"), self.path)
        event = json.loads(line)  # exactly what readers will see
        if self._index is not None:
            # O_APPEND: after the write the file position is the end of our line, even if
            # another process appended before it (one write per line).
            end = os.lseek(self._file.fileno(), 0, os.SEEK_CUR)
            self._index.add(event, end, len(line) + 1)  # ASCII: json.dumps escapes
        return event

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventTail:
    """Incremental reader: each ``read()`` returns the complete events added since the last.

    A partial last line (the writer is mid-write, or was killed mid-write) stays pending
    until its newline arrives; a line that never parses is skipped, and so is a line longer
    than ``MAX_LINE_BYTES``, without being kept in memory.
    """

    def __init__(self, path: str | Path, offset: int = 0):
        self.path = Path(path)
        self.offset = offset
        self._pending = b""
        self._skipping = False  # inside an overlong line: drop bytes up to its newline
        self.lines = 0
        """Complete lines read so far (counted from ``offset``)."""
        self.skipped = 0
        """Lines skipped so far (unparsable, a value no reader can use, overlong)."""
        self.skipped_shown: list[str] = []
        """The first :data:`SKIPPED_SHOWN` of them, as :func:`skipped_line` says them."""

    def read(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        try:
            f = open_regular(self.path)
        except FileNotFoundError:
            return events
        except RefusedFile as exc:
            raise RunError(f"refusing to read {self.path}: {exc}") from None
        with f:
            f.seek(self.offset)
            left = max_bytes
            while left is None or left > 0:
                chunk = f.read(READ_BYTES if left is None else min(READ_BYTES, left))
                if not chunk:
                    break
                self.offset += len(chunk)
                if left is not None:
                    left -= len(chunk)
                self._feed(chunk, events)
        return events

    def _feed(self, chunk: bytes, events: list[dict[str, Any]]) -> None:
        if self._skipping:
            end = chunk.find(b"\n")
            if end < 0:
                return
            self._skipping = False
            chunk = chunk[end + 1:]
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for raw in lines:
            self.lines += 1
            text = raw.decode("utf-8", errors="replace")
            ev = decode(text)
            if ev is not None:
                events.append(ev)
            else:
                self._skip(skip_reason(text))
        if len(self._pending) > MAX_LINE_BYTES:
            self._pending, self._skipping = b"", True
            self.lines += 1  # counted now: its end is dropped unread
            self._skip(LONG_LINE)

    def _skip(self, reason: str | None) -> None:
        if reason is None:  # a blank line
            return
        self.skipped += 1
        if len(self.skipped_shown) < SKIPPED_SHOWN:
            self.skipped_shown.append(skipped_line(self.lines, reason))


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete events of a file (a truncated last line is ignored)."""
    return EventTail(path).read()


def iter_events(path: str | Path, types: tuple[str, ...] | None = None) -> Iterator[dict]:
    for ev in read_events(path):
        if types is None or ev.get("type") in types:
            yield ev
