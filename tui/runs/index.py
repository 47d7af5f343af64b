"""A torch-free, Textual-free model of the runs folder, for the home screen's runs table.

``RunsIndex.scan()`` is called every second or so from a thread worker. It has to stay
cheap with hundreds of runs, so it only re-reads a ``run.json`` whose (mtime, size)
changed since the last scan; what it always does per run is one ``stat`` and, for active
runs, one liveness check of the engine's pid. Sorting and filtering are plain functions
over ``RunRow`` so they are tested without a UI.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.protocol.errors import RunError
from engine.protocol.events import decode
from engine.protocol.rundir import ACTIVE, EVENTS, RUN_JSON, RunDirectory, parse_time, run_duration
from engine.protocol.safefiles import open_regular
from tui.runs.progress import RunProgress

#: Sortable columns, in the order the sort key cycles through them.
SORT_KEYS = ("created", "id", "status", "trainer", "config", "progress", "best_ap", "duration")
SORT_LABELS = {"created": "started", "id": "run", "status": "status", "trainer": "trainer",
               "config": "config", "progress": "epoch", "best_ap": "best AP",
               "duration": "duration"}
UNREADABLE = "unreadable"
"""The status of a run whose run.json is unreadable or malformed."""
# Bytes read from the end of events.jsonl to find the progress of an active run whose
# run.json has none yet (one train event is ~400 bytes).
_TAIL_BYTES = 16_384


@dataclass(frozen=True)
class RunRow:
    """One run as the runs table shows it (everything derived from ``run.json``)."""

    id: str
    name: str
    status: str
    trainer: str
    config: str
    path: Path
    created: str = ""
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    epoch: int | None = None
    epochs: int | None = None
    iter: int | None = None
    max_iters: int | None = None
    best_ap: float | None = None
    best_epoch: int | None = None
    best_model: str | None = None
    """Which model scored the best AP (``teacher``, ``student``, ``ema``), when not the
    trained model itself."""
    attempt: int = 1
    duration_s: float | None = None
    """Training time of the attempts that ended (run.json ``duration_s``)."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def config_name(self) -> str:
        """The config file's stem (``fcos_tiny_shapes``), or ``-``."""
        return Path(self.config).stem if self.config else "-"

    @property
    def shown(self) -> RunProgress:
        """Its epoch and iteration, by the rule every front-end shares (tui.runs.progress)."""
        return RunProgress.of(self.status, self.epoch, self.epochs, self.iter, self.max_iters)

    @property
    def shown_epoch(self) -> int | None:
        """The epoch of the last step done, from 1 (a finished run: ``epochs``)."""
        return self.shown.epoch

    @property
    def fraction(self) -> float | None:
        """Progress in [0, 1] by iterations, when known."""
        return self.shown.fraction

    def duration(self, now: float) -> float | None:
        """Seconds of training over every attempt (a resumed run counts them all), up to
        ``now`` while one runs."""
        return run_duration(self.meta, now, status=self.status)

    def search_text(self) -> str:
        return " ".join((self.id, self.name, self.status, self.trainer, self.config)).lower()

    @classmethod
    def from_meta(cls, path: Path, meta: dict[str, Any], status: str,
                  progress: dict[str, Any] | None = None) -> RunRow:
        prog = meta.get("progress") if isinstance(meta.get("progress"), dict) else None
        prog = prog or progress or {}
        best = meta.get("best") if isinstance(meta.get("best"), dict) else {}
        return cls(
            id=str(meta.get("id") or path.name),
            name=str(meta.get("name") or path.name),
            status=status,
            trainer=str(meta.get("trainer") or "-"),
            config=str(meta.get("config_path") or ""),
            path=path,
            created=str(meta.get("created") or ""),
            started=parse_time(meta.get("started")) or parse_time(meta.get("created")),
            ended=parse_time(meta.get("ended")),
            epoch=_int(prog.get("epoch")),
            epochs=_int(prog.get("epochs")),
            iter=_int(prog.get("iter")),
            max_iters=_int(prog.get("max_iters")),
            best_ap=_float(best.get("value")),
            best_epoch=_int(best.get("epoch")),
            best_model=(best["model"] if isinstance(best.get("model"), str)
                        and best["model"] != "model" else None),
            attempt=_int(meta.get("attempt")) or 1,
            duration_s=_float(meta.get("duration_s")),
            meta=meta,
        )

    @classmethod
    def unreadable(cls, path: Path, reason: str) -> RunRow:
        """A run whose run.json cannot be used: listed (status ``unreadable``, the reason
        in ``meta["error"]``) so that one bad run hides nothing, and says what is wrong."""
        return cls(id=path.name, name=path.name, status=UNREADABLE, trainer="-", config="",
                   path=path, meta={"error": reason})


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def tail_progress(events_path: Path) -> dict[str, Any] | None:
    """Progress from the last ``train`` event in the tail of ``events.jsonl`` (or None)."""
    try:
        with open_regular(events_path) as f:  # a planted FIFO must not block the scan
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            chunk = f.read()
    except OSError:
        return None
    for raw in reversed(chunk.split(b"\n")):
        event = decode(raw.decode("utf-8", errors="replace"))
        if event and event.get("type") == "train":
            epochs = None
            iters_per_epoch = _int(event.get("iters_per_epoch"))
            max_iters = _int(event.get("max_iters"))
            if iters_per_epoch and max_iters:
                epochs = max_iters // iters_per_epoch
            epoch = _int(event.get("epoch"))
            return {"epoch": None if epoch is None else epoch + 1, "epochs": epochs,
                    "iter": event.get("iter"), "max_iters": max_iters}
    return None


@dataclass
class ScanResult:
    """What one scan found: the rows, whether anything changed, and runs that just failed."""

    rows: list[RunRow]
    changed: bool
    newly_failed: list[RunRow] = field(default_factory=list)


class RunsIndex:
    """Incremental view of ``runs_dir``: call :meth:`scan` as often as you like."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._meta: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        self._progress: dict[str, tuple[int, dict[str, Any] | None]] = {}
        self._rows: dict[str, RunRow] = {}
        self._scanned = False

    @property
    def rows(self) -> list[RunRow]:
        """The rows of the last scan, newest first."""
        return sorted(self._rows.values(), key=lambda r: r.created, reverse=True)

    def scan(self) -> ScanResult:
        rows: dict[str, RunRow] = {}
        try:
            entries = list(os.scandir(self.runs_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=True):
                continue
            row = self._scan_one(Path(entry.path))
            if row is not None:
                rows[row.path.name] = row
        for gone in set(self._meta) - set(rows):
            self._meta.pop(gone, None)
            self._progress.pop(gone, None)
        newly_failed = []
        if self._scanned:
            for key, row in rows.items():
                old = self._rows.get(key)
                if old is not None and old.active and row.status == "failed":
                    newly_failed.append(row)
        changed = not self._scanned or rows != self._rows
        self._rows = rows
        self._scanned = True
        return ScanResult(self.rows, changed, newly_failed)

    def _scan_one(self, path: Path) -> RunRow | None:
        key = path.name
        try:
            st = os.stat(path / RUN_JSON)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._meta.get(key)
        run = RunDirectory(path)
        if cached is not None and cached[0] == stamp:
            meta = cached[1]
        else:
            try:
                meta = run.read_meta()
            except (RunError, OSError) as exc:
                # Unreadable (hand-edited, planted, vanished mid-scan): keep the last good
                # row if there is one, else list it as unreadable, with the reason.
                old = self._rows.get(key)
                if old is not None and old.status != UNREADABLE:
                    return old
                reason = exc.message if isinstance(exc, RunError) else str(exc)
                return RunRow.unreadable(path, reason)
            self._meta[key] = (stamp, meta)
        status = run.effective_status(meta)
        progress = None
        if status in ACTIVE and not isinstance(meta.get("progress"), dict):
            progress = self._tail_progress(key, path / EVENTS)
        return RunRow.from_meta(path, meta, status, progress)

    def _tail_progress(self, key: str, events: Path) -> dict[str, Any] | None:
        try:
            size = events.stat().st_size
        except OSError:
            return None
        cached = self._progress.get(key)
        if cached is not None and cached[0] == size:
            return cached[1]
        progress = tail_progress(events)
        self._progress[key] = (size, progress)
        return progress


# --------------------------------------------------------------------------- sort + filter

def sort_value(row: RunRow, key: str, now: float) -> Any:
    if key == "progress":
        return row.fraction if row.fraction is not None else (row.epoch or 0) / max(
            1, row.epochs or 1)
    if key == "duration":
        return row.duration(now)
    if key == "config":
        return row.config_name.lower()
    value = getattr(row, key)
    return value.lower() if isinstance(value, str) else value


def sort_rows(rows: Iterable[RunRow], key: str, reverse: bool,
              now: float | None = None) -> list[RunRow]:
    """Rows sorted by ``key`` (one of ``SORT_KEYS``); missing values always go last."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r}; allowed: {', '.join(SORT_KEYS)}")
    now = time.time() if now is None else now
    present, missing = [], []
    for row in rows:
        (missing if sort_value(row, key, now) is None else present).append(row)
    present.sort(key=lambda r: (sort_value(r, key, now), r.created), reverse=reverse)
    missing.sort(key=lambda r: r.created, reverse=True)
    return present + missing


def filter_rows(rows: Iterable[RunRow], query: str) -> list[RunRow]:
    """Rows whose id, name, status, trainer or config contain every word of ``query``."""
    words = query.lower().split()
    if not words:
        return list(rows)
    return [r for r in rows if all(w in r.search_text() for w in words)]


def view_rows(rows: Iterable[RunRow], query: str, key: str, reverse: bool,
              now: Callable[[], float] = time.time) -> list[RunRow]:
    """Filter then sort: what the table displays."""
    return sort_rows(filter_rows(rows, query), key, reverse, now())
