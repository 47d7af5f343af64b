"""What the run monitor knows about one run, read incrementally from its run directory.

No Textual here (and no torch): :class:`RunModel` is a plain object that a worker thread
drives with :meth:`RunModel.poll`; the screen gets immutable :class:`RunSnapshot` copies.

* ``events.jsonl`` is read from a byte offset, only new bytes, whole lines only (a partial
  last line waits for its newline), in blocks parsed by :mod:`tui.runs.eventscan`.
* Train series live in growable float64 columns (8 bytes a value: a million events with
  three loss terms take ~64 MB). A snapshot holds views of them; appends never touch a
  byte a view can see, and a rewind (a resume) copies, so a snapshot never changes.
* A ``start`` event with ``start_iter`` (a resume) drops the train rows and AP points
  logged after that iteration: the resumed run logs them again.
* ``run.json`` is re-read when its mtime changes; the status shown is
  :meth:`RunDirectory.effective_status` (an "active" run whose process died is failed).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.protocol.errors import RunError
from engine.protocol.events import LONG_LINE, SKIPPED_SHOWN, skipped_line
from engine.protocol.rundir import RunDirectory
from engine.protocol.safefiles import open_regular
from tui.runs.eventindex import index_blocks
from tui.runs.eventscan import (
    Block,
    ScanWarning,
    TrainRows,
    TrainTemplate,
    parse_block,
    scan_parallel,
)
from tui.runs.filetail import ByteTail
from tui.runs.history import (
    ApSeries,
    RunSnapshot,
    SystemHistory,
    TrainHistory,
    as_float,
)
from tui.runs.semiinfo import Relationship, read_relationship

__all__ = ["RunModel"]

PARALLEL_MIN_BYTES = 48 << 20
"""Below this, a first load is read in this process alone (a helper process costs more
than it saves)."""
BLOCK_BYTES = 8 << 20
"""Bytes parsed per block during a first load: big enough to be fast, small enough that
the UI thread gets the GIL back every few tens of milliseconds."""


class RunModel:
    """Everything the monitor shows about one run, fed incrementally by :meth:`poll`.

    Not thread-safe: one thread (the monitor's worker) calls ``poll``/``refresh_meta``/
    ``snapshot``; other threads only read snapshots.
    """

    def __init__(self, run_dir: str | Path, *, system_history: int = 300,
                 error_history: int = 20) -> None:
        self.run = RunDirectory(run_dir)
        self.meta: dict[str, Any] = {}
        self.meta_error: str | None = None
        """Why ``run.json`` could not be read (the last good metadata is kept), if so."""
        self.status = "unknown"
        self.train = TrainHistory()
        self._ap: dict[str, list[tuple[float, float, float, float]]] = {}
        self._metrics: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.latest_train: dict[str, Any] | None = None
        self.latest_eval: dict[str, dict[str, Any]] = {}
        self.latest_system: dict[str, Any] | None = None
        self.system = SystemHistory(system_history)
        self.last_checkpoint: dict[str, Any] | None = None
        self.download: dict[str, Any] | None = None
        self.errors: deque[dict[str, Any]] = deque(maxlen=error_history)
        self.start: dict[str, Any] | None = None
        self.evaluating: dict[str, Any] | None = None
        self.events_read = 0
        self.lines_read = 0
        """Lines of events.jsonl ingested (skipped ones included): numbers skipped lines."""
        self.skipped = 0
        self.skipped_shown: list[str] = []
        self._tail = ByteTail(self.run.events)
        self._template: TrainTemplate | None = None
        self._peeked_until = 0
        self._preview: dict[str, np.ndarray] | None = None
        self.caught_up = False
        """Whether the history was read to its end once (see RunSnapshot.caught_up)."""
        self._meta_mtime: int | None = None
        self.relationship: Relationship | None = None
        self.relationship_error: str | None = None
        self._relationship_mtime: int | None = -1
        self._versions = {"train": 0, "eval": 0, "system": 0, "meta": 0}

    # -- reading -------------------------------------------------------------------

    @property
    def bytes_read(self) -> int:
        return self._tail.offset

    def bytes_total(self) -> int:
        return max(self._tail.size(), self._tail.offset)

    @property
    def more_to_read(self) -> bool:
        """The last poll stopped at its size limit, not at the end of the file (a partial
        last line does not count: it waits for its newline)."""
        return not self._tail.at_end

    def poll(self, max_bytes: int | None = BLOCK_BYTES) -> bool:
        """Ingest up to ``max_bytes`` of new events; True if anything was added."""
        data = self._tail.read(max_bytes)
        if self._tail.restarted:
            self._tail.restarted = False
            self._reset_events()
        for _ in range(self._tail.skipped_long):  # they come before ``data``
            self.lines_read += 1
            self._skipped(self.lines_read, LONG_LINE)
        if self._tail.at_end:
            self._caught_up()
        if not data:
            return False
        block, self._template = parse_block(data, self._template)
        return self._ingest(block, self._tail.offset)

    def _ingest(self, block: Block, end: int) -> bool:
        # Blocks that end before what peek_tail() saw are older than the "latest" events
        # the screen already shows: they add history but must not roll those back.
        fresh = end >= self._peeked_until
        for item in block.items:
            if isinstance(item, TrainRows):
                self.train.extend(item)
                self._versions["train"] += 1
                if item.n:
                    self.evaluating = None  # training went on: that evaluation is over
            else:
                self._apply(item, fresh)
        if block.last_train is not None and fresh:
            self.latest_train = block.last_train
            self._versions["train"] += 1
        self.events_read += block.n_events
        for index, why in block.skipped:
            self._skipped(self.lines_read + index + 1, why)
        self.lines_read += block.lines
        return block.n_events > 0 or block.lines > 0  # skipped lines were read too

    def _skipped(self, line_no: int, why: str) -> None:
        self.skipped += 1
        if len(self.skipped_shown) < SKIPPED_SHOWN:
            self.skipped_shown.append(skipped_line(line_no, why))
        self._versions["meta"] += 1

    def catch_up(self) -> None:
        """Read everything there is now (used by tests and benchmarks)."""
        while self.poll():
            pass

    def load_history(self, workers: int | None = None,
                     cancelled: Callable[[], bool] = lambda: False,
                     on_block: Callable[[], None] = lambda: None) -> str | None:
        """Read the history there is now on several cores (see
        :func:`tui.runs.eventscan.scan_parallel`); small files are just polled. ``on_block`` is
        called after each block is ingested (to post progress). Afterwards, :meth:`poll`
        carries on from where this stopped. Returns a warning for the user, if any (a
        helper process failed: its part was read here instead)."""
        start = self._tail.offset
        end = self._complete_end()
        if start == 0 and not cancelled():
            # The engine's index of events.jsonl: the curves without parsing the JSON.
            for offset, block in index_blocks(self.run.events, self.run.events_index, end,
                                              keep_system=self.system.maxlen):
                self._ingest(block, offset)
                self._tail.offset = start = offset
                on_block()
                if cancelled():
                    return None
        workers = workers or min(8, os.cpu_count() or 1)
        if workers < 2 or end - start < PARALLEL_MIN_BYTES:
            while not cancelled() and self.poll():
                on_block()
            return None
        try:
            for offset, block in scan_parallel(self.run.events, start, end, workers,
                                               cancelled):
                self._ingest(block, offset)
                self._tail.offset = offset
                on_block()
        except ScanWarning as warning:
            return str(warning)
        finally:
            if not cancelled():
                self._caught_up()
        return None

    def _caught_up(self) -> None:
        if not self.caught_up:
            self.caught_up = True
            self._preview = None  # the real thing is here

    def _complete_end(self) -> int:
        """Offset just past the last complete line of events.jsonl now."""
        size = self._tail.size()
        if size <= self._tail.offset:
            return self._tail.offset
        with open_regular(self.run.events) as f:  # never a FIFO: no blocking open
            back = min(size - self._tail.offset, 1 << 16)
            f.seek(size - back)
            cut = f.read(back).rfind(b"\n")
        return self._tail.offset if cut < 0 else size - back + cut + 1

    def _reset_events(self) -> None:
        """events.jsonl was replaced (it shrank): forget everything read from it."""
        fresh = RunModel(self.run.path, system_history=self.system.maxlen,
                         error_history=self.errors.maxlen or 20)
        for name in ("train", "_ap", "_metrics", "latest_train", "latest_eval", "latest_system",
                     "system", "last_checkpoint", "download", "errors", "start", "evaluating",
                     "events_read", "lines_read", "skipped", "skipped_shown",
                     "_template", "_peeked_until", "_preview"):
            setattr(self, name, getattr(fresh, name))
        for key in self._versions:
            self._versions[key] += 1

    def _apply(self, event: dict[str, Any], fresh: bool = True) -> None:
        kind = event.get("type")
        if kind == "eval_start":
            self.evaluating = event
            self._versions["meta"] += 1
        elif kind in ("eval", "start", "status", "error") and self.evaluating is not None:
            self.evaluating = None
            self._versions["meta"] += 1
        if kind == "eval":
            model = str(event.get("model") or "model")
            metrics = event.get("metrics") if isinstance(event.get("metrics"), dict) else {}
            self._ap.setdefault(model, []).append(
                (as_float(event.get("iter")), as_float(event.get("t")),
                 as_float(event.get("epoch")), as_float(metrics.get("AP"))))
            self._metrics.setdefault(model, []).append((as_float(event.get("iter")), metrics))
            if fresh or model not in self.latest_eval:
                self.latest_eval[model] = event
            self._versions["eval"] += 1
        elif kind == "system":
            self.system.add(event)
            if fresh or self.latest_system is None:
                self.latest_system = event
            self._versions["system"] += 1
        elif kind == "start":
            self.start = event
            start_iter = event.get("start_iter")
            if isinstance(start_iter, (int, float)) and not isinstance(start_iter, bool):
                self.train.rewind(start_iter)
                for model, points in self._ap.items():
                    self._ap[model] = [p for p in points if not p[0] > start_iter]
                for model, evals in self._metrics.items():
                    self._metrics[model] = [e for e in evals if not e[0] > start_iter]
                self._versions["train"] += 1
                self._versions["eval"] += 1
        elif kind == "checkpoint":
            self.last_checkpoint = event
        elif kind == "download":
            self.download = event
            self._versions["meta"] += 1
        elif kind == "error":
            self.errors.append(event)
            self._versions["meta"] += 1
        elif kind == "status":
            self._versions["meta"] += 1

    def refresh_meta(self) -> bool:
        """Re-read ``run.json`` if it changed and recompute the status; True if either
        changed. A missing or unreadable run.json keeps the last good metadata."""
        changed = False
        try:
            mtime = self.run.run_json.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime is not None and mtime != self._meta_mtime:
            try:
                self.meta = self.run.read_meta()
                self.meta_error = None
            except RunError as exc:  # run.json is replaced atomically: this is corruption
                self.meta_error = exc.message
            self._meta_mtime = mtime
            changed = True
        status = self.run.effective_status(self.meta) if self.meta else "unknown"
        if status != self.status:
            self.status = status
            changed = True
        changed = self._refresh_relationship() or changed
        if changed:
            self._versions["meta"] += 1
        return changed

    def _refresh_relationship(self) -> bool:
        """Re-read ``cot_relationship.json`` of a co-tuning run when it changed."""
        path = self.run.cot_relationship
        try:
            mtime: int | None = path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime is None and self.meta.get("trainer") != "CoTuning":
            return False  # not a co-tuning run: nothing to say
        if mtime == self._relationship_mtime:
            return False
        self._relationship_mtime = mtime
        self.relationship, self.relationship_error = read_relationship(path)
        return True

    def peek_tail(self, nbytes: int = 256 << 10) -> None:
        """Take the latest train/eval/system events from the file's last ``nbytes``
        without ingesting them, so a header can show where a long run stands before its
        whole history is read. The full read then replaces these values."""
        size = self._tail.size()
        if size == 0:
            return
        with open_regular(self.run.events) as f:  # never a FIFO: no blocking open
            f.seek(max(0, size - nbytes))
            data = f.read(nbytes)
        data = data[data.find(b"\n") + 1:] if size > nbytes else data
        data = data[: data.rfind(b"\n") + 1]
        self._peeked_until = size
        block, _ = parse_block(data, None)
        if block.last_train is not None:
            self.latest_train = block.last_train
        for item in block.items:
            if isinstance(item, dict):
                if item.get("type") == "eval":
                    self.latest_eval[str(item.get("model") or "model")] = item
                elif item.get("type") == "system":
                    self.latest_system = item
        for key in ("train", "eval", "system"):
            self._versions[key] += 1

    @property
    def indexed(self) -> bool:
        """Whether the history can come from the engine's ``events.idx`` (a first load of a
        run that has a non-trivial one; the reader still checks it against the file)."""
        try:
            return self._tail.offset == 0 and self.run.events_index.stat().st_size > 4096
        except OSError:
            return False

    def load_preview(self, samples: int = 256, window: int = 16 << 10) -> bool:
        """Sample the train curves from ``samples`` windows spread over the file, so a long
        history can be drawn (approximately: a spike between windows is missed) in a few
        tens of milliseconds while it is read in full. False if there was nothing to
        sample. The snapshot carries it as ``train_preview`` until the full read ends."""
        end = self._complete_end()
        if end - self._tail.offset < samples * window * 4:
            return False  # small enough to read in full at once
        if self.indexed:
            return False  # the engine's index: the full curves come almost as fast
        rows: list[TrainRows] = []
        template = self._template
        with open_regular(self.run.events) as f:  # never a FIFO: no blocking open
            for offset in np.linspace(self._tail.offset, end, samples, endpoint=False):
                f.seek(int(offset))
                data = f.read(window)
                data = data[data.find(b"\n") + 1:] if offset else data
                block, template = parse_block(data[: data.rfind(b"\n") + 1], template)
                rows += [item for item in block.items if isinstance(item, TrainRows)]
        if not rows:
            return False
        history = TrainHistory()
        for item in rows:
            history.extend(item)
        self._preview = history.views()
        self._versions["train"] += 1
        return True

    # -- handing out -----------------------------------------------------------------

    def ap_series(self) -> dict[str, ApSeries]:
        out = {}
        for model, points in self._ap.items():
            arr = np.array(points, dtype=np.float64).reshape(-1, 4)
            out[model] = ApSeries(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3])
        return out

    def eval_metrics(self) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
        """Every metric of every evaluated model: ``{model: {metric: (iters, values)}}``
        (points without a numeric iteration or value left out)."""
        out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for model, evals in self._metrics.items():
            store = out.setdefault(model, {})
            for x, metrics in evals:
                for key, value in metrics.items():
                    if x == x and type(value) in (int, float):
                        xs, ys = store.setdefault(key, ([], []))
                        xs.append(x)
                        ys.append(float(value))
        return out

    def snapshot(self) -> RunSnapshot:
        return RunSnapshot(
            run_id=self.run.id, meta=dict(self.meta), meta_error=self.meta_error,
            status=self.status,
            train=self.train.views(), terms=self.train.terms(), stats=self.train.stats(),
            ap=self.ap_series(), relationship=self.relationship,
            relationship_error=self.relationship_error,
            train_preview=None if self.caught_up else self._preview,
            caught_up=self.caught_up,
            latest_train=self.latest_train, latest_eval=dict(self.latest_eval),
            latest_system=self.latest_system, system=self.system.copy(),
            last_checkpoint=self.last_checkpoint, errors=list(self.errors),
            download=self.download, start=self.start, bytes_read=self.bytes_read,
            bytes_total=self.bytes_total(),
            events_read=self.events_read, train_version=self._versions["train"],
            eval_version=self._versions["eval"], system_version=self._versions["system"],
            meta_version=self._versions["meta"], evaluating=self.evaluating,
            skipped=self.skipped, skipped_shown=tuple(self.skipped_shown))

