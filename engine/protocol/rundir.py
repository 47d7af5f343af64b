"""The run directory: the one contract between the engine and every front-end.

```
runs/<run-id>/
  run.json        metadata + live status (atomically rewritten)
  config.yaml     the fully resolved config
  events.jsonl    append-only events (see engine.protocol.events)
  events.idx      a binary index of events.jsonl with the train curves (protocol.eventindex)
  train.log       human-readable log lines
  stderr.log      raw stdout/stderr of the engine process(es)
  checkpoints/    last.pt, best.pt, epoch_NNNN.pt
  cot_relationship.json   co-tuning runs only: the learned target -> source class relationship
  engine.lock     locked by the engine for its whole life: one engine per run (protocol.runlock)
  launch.lock     locked by a front-end while it starts the run's engine
```

stdlib only (psutil, imported on use, for liveness): the engine writes it, the front-ends
read it. Everything in a run folder is input like any other (it may be copied, hand-edited
or planted): ``run.json`` is checked as it is read (:mod:`engine.protocol.runmeta`), the engine
never writes through a symbolic link in it (:meth:`RunDirectory.check_writable`,
:func:`open_run_file`), and a pid from it is never trusted alone (:mod:`engine.protocol.ownership`).

``run.json`` fields shown to people follow the product's conventions (see
``engine.protocol.events``): ``best`` is ``{"metric": "AP", "value": 0-1 fraction, "epoch": 1-based,
"checkpoint": path}``; ``progress`` is ``{"epoch": 1-based epoch of the last step done,
"epochs", "iter": steps done, "max_iters", "eta"}`` (rewritten at most every 2 s, and always
at the end of each epoch and of each attempt); ``started``/``ended`` are the current
attempt's; ``duration_s`` is the training time of every attempt that ended, summed
(:func:`run_duration` adds the attempt under way); ``error`` is ``{"type", "message"}``
of the current attempt's failure (null while it runs; written even when ``events.jsonl``
is too full for the error event);
``trackers`` is ``{"tensorboard": folder or null, "wandb": bool}`` (a resume logs there too).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

from engine.protocol.errors import DiskFull, RunError
from engine.protocol.runmeta import read_run_json
from engine.protocol.safefiles import RefusedFile, open_append

RUN_SCHEMA_VERSION = 1
RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"
EVENTS = "events.jsonl"
EVENTS_INDEX = "events.idx"
PREVIEWS = "previews"
TRAIN_LOG = "train.log"
STDERR_LOG = "stderr.log"
CHECKPOINTS = "checkpoints"
COT_RELATIONSHIP = "cot_relationship.json"
STATUSES = ("starting", "running", "finished", "failed", "interrupted")
ACTIVE = ("starting", "running")
RUNS_DIR_ENV = "DETTUI_RUNS_DIR"

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write via a temp file in the same folder + fsync + os.replace: all or nothing.
    A process killed at any moment leaves the old file or the new one, never a torn one.
    A write that fails for want of space removes the temp file and raises
    :class:`~engine.protocol.errors.DiskFull` naming ``path``; the old file stays as it was."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # a delayed allocation can fail only here (ENOSPC)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        full = DiskFull.from_os_error(exc, path) if isinstance(exc, OSError) else None
        if full is not None:
            raise full from exc
        raise
    _fsync_dir(path.parent)
    return path


def append_whole(file: IO[bytes], data: bytes, path: str | Path) -> None:
    """Append all of ``data`` to an unbuffered file opened for appending, or nothing.

    Near a full disk or a file size limit a write is cut short, then the next one fails:
    the bytes that did get in are cut off again (``ftruncate``), so a reader or a resumed
    run never meets half a line. A failure for want of space raises
    :class:`~engine.protocol.errors.DiskFull` naming ``path``; other errors pass through.
    One writer per file is assumed (rank 0 alone writes a run folder)."""
    fd = file.fileno()
    done = 0
    try:
        while done < len(data):
            n = os.write(fd, data[done:])
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += n
    except OSError as exc:
        if done:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, os.fstat(fd).st_size - done)
        full = DiskFull.from_os_error(exc, path)
        if full is not None:
            raise full from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def check_run_id(run_id: str) -> str:
    """A run id is one path component of safe characters: it can't escape the runs dir."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id) or ".." in run_id:
        raise RunError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' "
                       "(no path separators, no '..')")
    return run_id


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug[:60] or "run"


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def pid_alive(pid: object, started: object = None) -> bool:
    """Whether ``pid`` is a plausible pid of a live process (started at ``started`` when
    that is known): see :func:`engine.protocol.ownership.pid_alive`."""
    from engine.protocol.ownership import pid_alive as alive  # psutil: only when needed

    return alive(pid, started)


def open_run_file(path: str | Path, mode: str = "ab", **kwargs: Any) -> IO[Any]:
    """Open a file of a run folder for appending: never through a symbolic link, only a
    regular file (a planted link would make the engine write outside the run folder)."""
    try:
        return open_append(path, mode, **kwargs)
    except RefusedFile as exc:
        raise RunError(f"refusing to write {path}: {exc}; the files of a run folder must be "
                       "regular files, and nothing is written through a link out of it",
                       hint="remove the link (or start a new run)") from None


class RunDirectory:
    """One run's folder: paths, metadata and liveness."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    run_json = property(lambda self: self.path / RUN_JSON)
    config_yaml = property(lambda self: self.path / CONFIG_YAML)
    events = property(lambda self: self.path / EVENTS)
    events_index = property(lambda self: self.path / EVENTS_INDEX)
    previews = property(lambda self: self.path / PREVIEWS)
    train_log = property(lambda self: self.path / TRAIN_LOG)
    stderr_log = property(lambda self: self.path / STDERR_LOG)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    cot_relationship = property(lambda self: self.path / COT_RELATIONSHIP)

    @classmethod
    def create(cls, runs_dir: str | Path, name: str | None = None,
               run_id: str | None = None) -> RunDirectory:
        """Make a new, empty run folder with a unique id (``YYYYmmdd-HHMMSS-name``)."""
        root = Path(runs_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fs_error(exc, root, "cannot use the runs folder") from None
        if run_id is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            base = f"{stamp}-{slugify(name or 'run')}"
            run_id, n = base, 1
            while (root / run_id).exists():
                n += 1
                run_id = f"{base}-{n}"
        check_run_id(run_id)
        path = root / run_id
        try:
            path.mkdir()
        except FileExistsError:
            raise RunError(f"run {run_id!r} already exists in {root}") from None
        except OSError as exc:
            raise fs_error(exc, path, "cannot create the run folder") from None
        try:
            (path / CHECKPOINTS).mkdir()
        except OSError as exc:
            raise fs_error(exc, path / CHECKPOINTS, "cannot create the run folder") from None
        return cls(path)

    def exists(self) -> bool:
        return self.run_json.exists()

    def read_meta(self) -> dict[str, Any]:
        """``run.json``, checked (:func:`engine.protocol.runmeta.read_run_json`): a ``RunError``
        names the file and what is wrong with it."""
        try:
            return read_run_json(self.run_json)
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a run (no {RUN_JSON})") from None

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_text(self.run_json, json.dumps(meta, indent=2, sort_keys=False) + "\n")

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        meta = self.read_meta() if self.exists() else {}
        meta.update(fields)
        self.write_meta(meta)
        return meta

    def effective_status(self, meta: dict[str, Any] | None = None) -> str:
        """``run.json``'s status, except that an active run whose process is gone (on this
        host) is ``failed``: the engine was killed before it could say so."""
        meta = meta if meta is not None else self.read_meta()
        status = meta.get("status", "failed")
        if (status in ACTIVE and meta.get("host") == socket.gethostname()
                and not pid_alive(meta.get("pid"), meta.get("pid_started"))):
            return "failed"
        return status

    def check_writable(self) -> None:
        """Refuse (``RunError``) a run folder whose fixed entries are symbolic links, or
        whose ``checkpoints`` is not a folder: the engine would write through them, outside
        the run folder. Files are also opened with :func:`open_run_file` (no link followed);
        this check says so before anything starts."""
        for name in (RUN_JSON, CONFIG_YAML, EVENTS, TRAIN_LOG, STDERR_LOG, CHECKPOINTS):
            entry = self.path / name
            if entry.is_symlink():
                raise RunError(f"refusing to write run folder {self.path}: {name} is a "
                               f"symbolic link (to {os.readlink(entry)}); the engine writes "
                               "only regular files inside the run folder, never through a "
                               "link out of it", hint="remove the link (or start a new run)")
        if self.checkpoints.exists() and not self.checkpoints.is_dir():
            raise RunError(f"refusing to write run folder {self.path}: {CHECKPOINTS} is not "
                           "a folder")

    def last_checkpoint(self) -> Path | None:
        last = self.checkpoints / "last.pt"
        return last if last.exists() else None

    def delete(self) -> str:
        """Remove the run. A run folder that is a symbolic link loses only the link (what it
        points at may be anyone's); returns ``"link"`` then, else ``"folder"``."""
        if self.path.is_symlink():
            self.path.unlink()
            return "link"
        shutil.rmtree(self.path)
        return "folder"


def fs_error(exc: OSError, path: str | Path, doing: str) -> RunError:
    """An OS error at the runs folder or a run folder (a file in the way, no permission,
    a name too long, a full disk) as one clear message that names the path."""
    why = exc.strerror or type(exc).__name__
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        why += " (a file is in the way of a folder)"
    where = exc.filename if isinstance(exc.filename, str) and exc.filename else str(path)
    return RunError(f"{doing}: {why}: {where}",
                    hint="choose another folder with --runs-dir (or DETTUI_RUNS_DIR), or fix "
                         "that path's type and permissions")


def run_duration(meta: dict[str, Any], now: float | None = None,
                 status: str | None = None) -> float | None:
    """Seconds of training over every attempt of a run: ``duration_s`` (the attempts that
    ended) plus, while an attempt runs, the time since it started. Runs written before
    ``duration_s`` existed fall back to ``ended - started``. ``status`` overrides
    ``meta["status"]`` (pass the effective one); None when unknown."""
    status = status if status is not None else meta.get("status")
    recorded = meta.get("duration_s")
    recorded = (float(recorded) if isinstance(recorded, (int, float))
                and not isinstance(recorded, bool) and recorded >= 0 else None)
    started, ended = parse_time(meta.get("started")), parse_time(meta.get("ended"))
    if status == "running" and started is not None and ended is None:
        now = _dt.datetime.now().timestamp() if now is None else now
        return (recorded or 0.0) + max(0.0, now - started.timestamp())
    if recorded is not None:
        return recorded
    if started is not None and ended is not None:
        return max(0.0, (ended - started).total_seconds())
    return None


def parse_time(value: Any) -> _dt.datetime | None:
    """An ISO-8601 time from run.json (``now_iso``'s form), or None when missing or
    unparsable: the one parser of run times, for the engine and the front-ends."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def resolve_run(runs_dir: str | Path, ref: str) -> RunDirectory:
    """A run by id (in ``runs_dir``), by a unique id prefix, or by the path of its folder."""
    root = Path(runs_dir)
    as_path = Path(ref)
    if (as_path / RUN_JSON).exists() and ("/" in ref or as_path.is_absolute()):
        return RunDirectory(as_path)
    check_run_id(ref)
    run = RunDirectory(root / ref)
    if run.exists():
        return run
    matches = [p for p in sorted(root.glob(f"{ref}*")) if (p / RUN_JSON).exists()]
    matches += [p for p in sorted(root.iterdir()) if p.is_dir() and (p / RUN_JSON).exists()
                and ref in p.name and p not in matches] if root.is_dir() else []
    if len(matches) == 1:
        return RunDirectory(matches[0])
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:5])
        raise RunError(f"run {ref!r} is ambiguous in {root}: {names}")
    where = f"the runs folder {root.resolve()}" + ("" if root.is_dir() else
                                                   " (there is no such folder)")
    raise RunError(f"no run {ref!r} in {where}",
                   hint="`dettui runs` lists the runs; --runs-dir DIR (or DETTUI_RUNS_DIR) "
                        "looks in another folder")


def scan_runs(runs_dir: str | Path
              ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Every run under ``runs_dir``: the ``run.json`` of the readable ones, newest first,
    with the effective status; and ``(folder name, reason)`` of each unreadable one (one
    bad run.json must never hide the others)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return [], []
    out, unreadable = [], []
    try:
        paths = sorted(root.iterdir())
    except OSError as exc:
        raise fs_error(exc, root, "cannot read the runs folder") from None
    for path in paths:
        run = RunDirectory(path)
        if path.name.startswith(".") or not run.run_json.exists():
            continue
        try:
            meta = run.read_meta()
        except RunError as exc:
            unreadable.append((path.name, exc.message))
            continue
        meta["status"] = run.effective_status(meta)
        meta.setdefault("id", run.id)
        out.append(meta)
    out.sort(key=lambda m: m.get("created") or "", reverse=True)
    return out, unreadable


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """The ``run.json`` of every readable run under ``runs_dir``, newest first, with the
    effective status (see :func:`scan_runs` for the unreadable ones)."""
    return scan_runs(runs_dir)[0]
