"""One engine per run folder: an exclusive ``fcntl`` lock held for the engine's whole life
(stdlib only: the launcher in the CLI and the TUI takes the same locks).

Two ``dettui resume RUN`` started at the same instant must not both start an engine on the
folder: every iteration would be logged twice, both would write ``last.pt``, and run.json
could name only one of them, so ``dettui stop`` could not reach the other. Two locks:

``engine.lock``
    held by the engine (rank 0, the one that writes the run folder) from before it writes
    anything until it exits; it holds the engine's pid. It is a POSIX record lock
    (``lockf``), owned by the engine process alone: a ``flock`` would be shared with the
    data-loader workers the engine forks, which outlive a SIGKILLed engine for a while and
    kept its run locked against the resume that follows. A record lock ends with the
    process that holds it, so a lock left by a killed engine is simply taken over (the
    stale pid in the file is overwritten). The engine never opens the file a second time:
    closing any descriptor of it would release the lock. A second engine on the folder
    exits with code 2 naming the pid that holds the run, and writes nothing there.
``launch.lock``
    held by a front-end (``dettui resume``, the TUI's ``r``) while it checks that the run is
    not running, marks it ``starting``, starts the engine and records its pid: a second
    front-end waits for that, then sees the run running and refuses (the run.json it
    reads names the engine that was started).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from engine.protocol.errors import RunError
from engine.protocol.safefiles import RefusedFile, open_append, read_regular

ENGINE_LOCK = "engine.lock"
LAUNCH_LOCK = "launch.lock"
LAUNCH_WAIT_S = 60.0  # starting an engine takes a fraction of this


def _open_lock(path: Path) -> int:
    """The lock file, created if missing, opened without following a link and only if it is
    a regular file (a planted link must not make us write elsewhere)."""
    try:
        f = open_append(path, "ab", buffering=0)
    except RefusedFile as exc:
        raise RunError(f"refusing to use the lock file {path}: {exc}",
                       hint="remove it (nothing else uses it), then try again") from None
    except OSError as exc:
        raise RunError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
    fd = os.dup(f.fileno())
    f.close()
    return fd


def lock_holder(path: Path, wait: float = 1.0) -> int | None:
    """The pid written in a lock file (None when it says none). A holder that has just
    taken the lock may not have written its pid yet: wait up to ``wait`` s for it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            text = read_regular(path, 64).decode("ascii", errors="replace").strip()
        except OSError:
            text = ""
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _busy(run_path: Path, holder: int | None) -> RunError:
    who = f"pid {holder}" if holder is not None else "another process"
    return RunError(f"run {run_path.name} is being trained by {who} (it holds "
                    f"{run_path / ENGINE_LOCK}); one engine per run folder",
                    hint="`dettui stop RUN` stops it; `dettui attach RUN` follows it")


class EngineLock:
    """The engine's exclusive lock on its run folder (see the module docstring)."""

    def __init__(self, run_path: str | Path):
        self.run_path = Path(run_path)
        self.path = self.run_path / ENGINE_LOCK
        self._fd: int | None = None

    def acquire(self) -> EngineLock:
        """Take the lock now or raise ``RunError`` naming the pid that holds it."""
        fd = _open_lock(self.path)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(self.run_path, lock_holder(self.path)) from None
            raise RunError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        try:
            os.ftruncate(fd, 0)  # a dead holder's pid goes; the file is opened O_APPEND
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:
            pass  # the lock is what counts; the pid is for the message of a loser
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the record lock

    def __enter__(self) -> EngineLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def engine_lock_holder(run_path: str | Path) -> int | None:
    """The pid of the engine that holds ``run_path``'s lock now, else None (also when the
    lock cannot be tested: the engine then refuses for itself)."""
    path = Path(run_path) / ENGINE_LOCK
    if not path.exists():
        return None
    try:
        fd = _open_lock(path)
    except RunError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the engine's kind of lock
    except OSError:
        return lock_holder(path) or -1
    finally:
        os.close(fd)  # a lock we took is released with it
    return None


def check_not_locked(run_path: str | Path) -> None:
    """Refuse (``RunError``, naming the pid) to start an engine on a run folder whose lock
    an engine holds: also one started by hand, which run.json may not name."""
    holder = engine_lock_holder(run_path)
    if holder is not None:
        raise _busy(Path(run_path), holder if holder > 0 else None)


@contextlib.contextmanager
def launching(run_path: str | Path, wait: float = LAUNCH_WAIT_S) -> Iterator[None]:
    """Hold ``launch.lock`` while a front-end checks and starts the run's engine; another
    front-end starting the same run waits here (at most ``wait`` s) and then sees it
    running."""
    path = Path(run_path) / LAUNCH_LOCK
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunError(f"cannot lock {path}: {exc.strerror or exc}") from None
                if time.monotonic() >= deadline:
                    raise RunError(f"run {Path(run_path).name} is being started by another "
                                   f"process (it holds {path} for more than {wait:g} s)"
                                   ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
