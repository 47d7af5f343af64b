"""Is the process that ``run.json`` names still this run's engine? (psutil; no torch)

``run.json`` holds the ``pid`` to signal, but a run folder is input like any other: a run
copied from another machine, marked ``finished`` long ago, or edited by another user can
name any process, and ``kill(-1, SIGINT)`` reaches every process the user may signal. So
nothing is signalled, and no run is believed to be running, on the word of ``run.json``
alone:

* :func:`pid_alive` (is the run still going? for status displays) wants a plausible pid
  (an integer > 1, never a bool) of a live, non-zombie process, started when ``run.json``
  says it was (``pid_started``, recorded at launch): a pid reused by a new process after
  the engine died does not keep a dead run "running".
* :func:`engine_pid` (may we signal it?) wants more: the run is active and on this host,
  and the process is provably this run's engine: its command line names this run folder
  (``--run-dir``; what dettui's launcher, the supervisor and torchrun are started with),
  or it holds this run's ``events.jsonl`` open (an engine that made its own run folder).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import psutil

from engine.protocol.errors import RunError

__all__ = ["START_TIME_TOLERANCE_S", "engine_pid", "pid_alive", "plausible_pid",
           "process_start_time"]

ACTIVE = ("starting", "running")
START_TIME_TOLERANCE_S = 2.0
"""How far a process's start time may drift from the recorded one (the boot time it is
derived from moves with clock adjustments); a reused pid starts much later."""


def plausible_pid(pid: object) -> bool:
    """An integer > 1 (pid 1 is init; 0, negative pids and bools mean process groups or
    every process to ``kill``)."""
    return type(pid) is int and pid > 1


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _same_start(proc: psutil.Process, recorded: object) -> bool:
    if not isinstance(recorded, (int, float)) or isinstance(recorded, bool):
        return True  # nothing recorded (a run from before dettui recorded it)
    return abs(proc.create_time() - float(recorded)) <= START_TIME_TOLERANCE_S


def pid_alive(pid: object, started: object = None) -> bool:
    """Whether ``pid`` is a plausible pid of a live process that started at ``started``
    (when given; see the module docstring)."""
    if not plausible_pid(pid):
        return False
    try:
        proc = psutil.Process(pid)  # type: ignore[arg-type]
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped
            return False
        return _same_start(proc, started)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # another user's process: it exists; there is nothing more to learn


def _same_path(arg: str, folder: str, cwd: str | None) -> bool:
    if not os.path.isabs(arg):
        if cwd is None:
            return False
        arg = os.path.join(cwd, arg)
    return os.path.realpath(arg) == folder


def _names_run_folder(proc: psutil.Process, run_path: Path) -> bool:
    folder = os.path.realpath(run_path)
    cmdline = proc.cmdline()
    try:
        cwd: str | None = proc.cwd()
    except (psutil.Error, OSError):
        cwd = None
    for i, arg in enumerate(cmdline):
        if arg == "--run-dir" and i + 1 < len(cmdline):
            value = cmdline[i + 1]
        elif arg.startswith("--run-dir="):
            value = arg.partition("=")[2]
        else:
            continue
        if _same_path(value, folder, cwd):
            return True
    events = os.path.realpath(run_path / "events.jsonl")
    try:
        return any(os.path.realpath(f.path) == events for f in proc.open_files())
    except (psutil.Error, OSError):
        return False


def engine_pid(run_path: str | Path, meta: dict[str, Any]) -> int:
    """The pid of this run's engine (or of the launcher process that runs it: torchrun,
    the supervisor), proven as the module docstring says; otherwise a ``RunError`` saying
    why it is not signalled."""
    run_path = Path(run_path)
    run_id = run_path.name
    status = meta.get("status")
    if status not in ACTIVE:
        raise RunError(f"run {run_id} is not running (status {status!r}): nothing to stop")
    host, here = meta.get("host"), socket.gethostname()
    if host != here:
        raise RunError(f"run {run_id} runs on host {host!r}, not on this one ({here!r}); "
                       "its pid means nothing here", hint="stop it from a shell on that host")
    pid = meta.get("pid")
    if pid is None:
        raise RunError(f"run {run_id}'s run.json names no engine process (no pid); nothing "
                       "was signalled")
    if not plausible_pid(pid):
        raise RunError(f"run {run_id}'s run.json holds pid {pid!r}, which is no process this "
                       "tool started (a pid is an integer > 1); nothing was signalled")
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise psutil.NoSuchProcess(pid)
        if not _same_start(proc, meta.get("pid_started")):
            raise RunError(
                f"process {pid} is not run {run_id}'s engine: it started at "
                f"{proc.create_time():.0f}, the engine at {meta.get('pid_started'):.0f} "
                "(the engine is gone and its pid was reused); nothing was signalled")
        if not _names_run_folder(proc, run_path):
            raise RunError(f"process {pid} ({proc.name()}) is not run {run_id}'s engine: "
                           "its command line does not name this run folder and it does not "
                           "write its events; nothing was signalled")
    except psutil.NoSuchProcess:
        raise RunError(f"run {run_id}'s engine (pid {pid}) is gone; nothing was signalled")\
            from None
    except psutil.AccessDenied:
        raise RunError(f"process {pid} belongs to another user: it is not run {run_id}'s "
                       "engine as this user started it; nothing was signalled") from None
    return pid
