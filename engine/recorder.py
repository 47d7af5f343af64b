"""The engine's side of the run directory: events, ``train.log`` and ``run.json`` updates.

Only rank 0 writes (DESIGN.md: "Rank 0 alone writes the run directory"); on other ranks a
``RunRecorder`` logs to stderr and writes nothing, so trainer code never branches on rank.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.errors import RunError
from engine.events import EventWriter
from engine.rundir import RunDirectory, now_iso, open_run_file

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"


class RunLogHandler(logging.FileHandler):
    """A ``FileHandler`` that opens its file like every file of a run folder: never
    through a symbolic link (:func:`engine.rundir.open_run_file`)."""

    def _open(self):  # noqa: ANN202 - logging's own hook
        return open_run_file(self.baseFilename, "a", encoding=self.encoding)


def setup_logging(train_log: Path | None, rank: int = 0) -> logging.Logger:
    """The ``dettui`` logger: ``train.log`` on rank 0, and stderr (-> stderr.log) on every rank."""
    logger = logging.getLogger("dettui")
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter(LOG_FORMAT if rank == 0 else f"[rank {rank}] {LOG_FORMAT}",
                            LOG_DATEFMT)
    if train_log is not None:
        fh = RunLogHandler(train_log, encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    else:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        logger.addHandler(sh)
    return logger


class RunRecorder:
    """Writes events and metadata of one run (rank 0), thread-safe."""

    def __init__(self, run: RunDirectory | None, rank: int = 0):
        self.run = run if rank == 0 else None
        self.rank = rank
        self._lock = threading.Lock()
        self._writer = (EventWriter(run.events, index=run.events_index)
                        if self.run is not None else None)
        self.logger = setup_logging(run.train_log if self.run is not None else None, rank)
        self._last_progress = 0.0
        self.iter: int | None = None  # the step in progress, for error events
        # This attempt's start (monotonic) and the seconds of the attempts before it, for
        # run.json's ``duration_s`` (training time over every attempt of the run).
        self._attempt_start: float | None = None
        self._seconds_before = 0.0

    @property
    def active(self) -> bool:
        return self.run is not None

    def emit(self, type: str, **fields: Any) -> None:
        if self._writer is None:
            return
        with self._lock:
            self._writer.write(type, **fields)

    def update_meta(self, **fields: Any) -> None:
        if self.run is None:
            return
        with self._lock:
            self.run.update_meta(**fields)

    def progress(self, *, force: bool = False, **fields: Any) -> None:
        """``run.json``'s progress, rewritten at most every 2 s (it is an atomic rewrite)."""
        now = time.monotonic()
        if force or now - self._last_progress >= 2.0:
            self._last_progress = now
            self.update_meta(progress=fields)

    def set_status(self, status: str, message: str = "", **meta: Any) -> None:
        """Emit a ``status`` event and update run.json: ``started`` when an attempt starts
        running; ``ended`` and ``duration_s`` (seconds of every attempt so far, this one
        included) when it ends."""
        self.emit("status", status=status, message=message)
        extra: dict[str, Any] = {}
        if status == "running":
            extra["started"] = now_iso()
            self._attempt_start = time.monotonic()
            self._seconds_before = self._recorded_seconds()
        elif status in ("finished", "failed", "interrupted"):
            extra["ended"] = now_iso()
            if self._attempt_start is not None:
                this_attempt = time.monotonic() - self._attempt_start
                extra["duration_s"] = round(self._seconds_before + this_attempt, 1)
        self.update_meta(status=status, **extra, **meta)

    def _recorded_seconds(self) -> float:
        """``duration_s`` of run.json: the time of the attempts before this one."""
        if self.run is None or not self.run.exists():
            return 0.0
        try:
            value = self.run.read_meta().get("duration_s")
        except RunError:
            return 0.0
        return float(value) if isinstance(value, (int, float)) and value >= 0 else 0.0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for h in self.logger.handlers:
            h.flush()

    def engine_pid_meta(self) -> dict[str, Any]:
        return {"engine_pid": os.getpid()}
