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
from typing import Any, Literal

from engine.protocol.errors import DiskFull, RunError
from engine.protocol.events import EventWriter
from engine.protocol.rundir import RunDirectory, append_whole, now_iso, open_run_file
from engine.trackers import TrackerFeed

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"


class RunLogHandler(logging.Handler):
    """Appends log lines to ``train.log``, opened like every file of a run folder: never
    through a symbolic link (:func:`engine.protocol.rundir.open_run_file`). Each line is written
    whole or not at all; a line that does not fit raises
    :class:`~engine.protocol.errors.DiskFull` to the code that logged it (logging's own handlers
    would print a traceback and go on, and training would go on without its log)."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self._file = open_run_file(self.path, "ab", buffering=0)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", errors="replace")
            append_whole(self._file, data, self.path)
        except DiskFull:
            raise
        except Exception:  # noqa: BLE001 - logging's contract: report, never crash
            self.handleError(record)

    def close(self) -> None:
        with self.lock:
            if not self._file.closed:
                self._file.close()
        super().close()


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
        fh = RunLogHandler(train_log)
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
        self.trackers: TrackerFeed | None = None

    @property
    def active(self) -> bool:
        return self.run is not None

    def emit(self, type: str, **fields: Any) -> None:
        if self._writer is None:
            return
        with self._lock:
            event = self._writer.write(type, **fields)
        if self.trackers is not None:  # outside the lock: a tracker's warning is an event
            self.trackers.handle(event)

    def note(self, level: Literal["info", "warning", "error"], message: str) -> None:
        """Tell people: ``message`` in the log (train.log, stderr) and as a ``log`` event
        (the console and the TUI show it). ``level``: ``info``, ``warning`` or ``error``."""
        getattr(self.logger, level)(message)
        self.emit("log", level=level, message=message)

    def attach_trackers(self, feed: TrackerFeed) -> None:
        """Hand every event written from now on to TensorBoard / W&B (rank 0 only)."""
        if self.active:
            self.trackers = feed

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
        self.update_meta(status=status, **self._status_fields(status), **meta)

    def _status_fields(self, status: str) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if status == "running":
            extra["started"] = now_iso()
            extra["error"] = None  # an earlier attempt's failure is not this one's
            self._attempt_start = time.monotonic()
            self._seconds_before = self._recorded_seconds()
        elif status in ("finished", "failed", "interrupted"):
            extra["ended"] = now_iso()
            if self._attempt_start is not None:
                this_attempt = time.monotonic() - self._attempt_start
                extra["duration_s"] = round(self._seconds_before + this_attempt, 1)
        return extra

    def record_failure(self, error_type: str, message: str, *, log_message: str,
                       traceback: str, user_error: bool, exit_code: int,
                       **details: Any) -> list[str]:
        """End the attempt as ``failed``: a log line, an ``error`` event, a ``status``
        event, and run.json's ``status``, ``exit_code`` and ``error`` ({type, message}).

        Each is written on its own: when the disk is full one of them may not fit
        (``events.jsonl`` at a file size limit, say) and must not keep the others out.
        run.json goes last, as with every status (a front-end that sees ``failed`` finds
        the error event already there), and is the most likely to fit: a few KiB,
        rewritten whole. Returns what could not be written, for stderr."""
        not_written = []
        writes = (
            ("train.log", lambda: self.logger.error(log_message)),
            ("the error event", lambda: self.emit(
                "error", error_type=error_type, message=message, traceback=traceback,
                user_error=user_error, iter=self.iter, **details)),
            ("the status event", lambda: self.emit("status", status="failed",
                                                   message=message)),
            ("run.json", lambda: self.update_meta(
                status="failed", exit_code=exit_code, **self._status_fields("failed"),
                error={"type": error_type, "message": message})),
        )
        for what, write in writes:
            try:
                write()
            except (DiskFull, OSError, RunError) as exc:
                not_written.append(f"{what}: {exc}")
        return not_written

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
        if self.trackers is not None:
            feed, self.trackers = self.trackers, None
            feed.close()
        if self._writer is not None:
            self._writer.close()
        for h in self.logger.handlers:
            h.flush()

    def engine_pid_meta(self) -> dict[str, Any]:
        return {"engine_pid": os.getpid()}
