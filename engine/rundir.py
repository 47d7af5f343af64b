"""The run directory: the one contract between the engine and every front-end.

```
runs/<run-id>/
  run.json        metadata + live status (atomically rewritten)
  config.yaml     the fully resolved config
  events.jsonl    append-only events (see engine.events)
  train.log       human-readable log lines
  stderr.log      raw stdout/stderr of the engine process(es)
  checkpoints/    last.pt, best.pt, epoch_NNNN.pt
```

stdlib only: the engine writes it, the front-ends read it.

``run.json`` fields shown to people follow the product's conventions (see
``engine.events``): ``best`` is ``{"metric": "AP", "value": 0-1 fraction, "epoch": 1-based,
"checkpoint": path}``; ``progress`` is ``{"epoch": 1-based epoch of the last step done,
"epochs", "iter": steps done, "max_iters", "eta"}`` (rewritten at most every 2 s, and always
at the end of each epoch and of each attempt); ``started``/``ended`` are the current
attempt's; ``duration_s`` is the training time of every attempt that ended, summed
(:func:`run_duration` adds the attempt under way).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import RunError

RUN_SCHEMA_VERSION = 1
RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"
EVENTS = "events.jsonl"
TRAIN_LOG = "train.log"
STDERR_LOG = "stderr.log"
CHECKPOINTS = "checkpoints"
STATUSES = ("starting", "running", "finished", "failed", "interrupted")
ACTIVE = ("starting", "running")
RUNS_DIR_ENV = "DETTUI_RUNS_DIR"

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write via a temp file in the same folder + fsync + os.replace: all or nothing.
    A process killed at any moment leaves the old file or the new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


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
    train_log = property(lambda self: self.path / TRAIN_LOG)
    stderr_log = property(lambda self: self.path / STDERR_LOG)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)

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
        try:
            return json.loads(self.run_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a run (no {RUN_JSON})") from None
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.run_json} is not valid JSON ({exc})") from None
        except OSError as exc:
            raise fs_error(exc, self.run_json, "cannot read run.json") from None

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
                and not pid_alive(meta.get("pid"))):
            return "failed"
        return status

    def last_checkpoint(self) -> Path | None:
        last = self.checkpoints / "last.pt"
        return last if last.exists() else None

    def delete(self) -> None:
        shutil.rmtree(self.path)


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
    started, ended = _parse_iso(meta.get("started")), _parse_iso(meta.get("ended"))
    if status == "running" and started is not None and ended is None:
        now = _dt.datetime.now().timestamp() if now is None else now
        return (recorded or 0.0) + max(0.0, now - started.timestamp())
    if recorded is not None:
        return recorded
    if started is not None and ended is not None:
        return max(0.0, (ended - started).total_seconds())
    return None


def _parse_iso(value: Any) -> _dt.datetime | None:
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
    raise RunError(f"no run {ref!r} in {root}", hint="`dettui runs` lists the runs")


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """The ``run.json`` of every run under ``runs_dir``, newest first, with the effective
    status; unreadable ones are skipped."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    out = []
    try:
        paths = list(root.iterdir())
    except OSError as exc:
        raise fs_error(exc, root, "cannot read the runs folder") from None
    for path in paths:
        run = RunDirectory(path)
        if not run.exists():
            continue
        try:
            meta = run.read_meta()
        except RunError:
            continue
        meta["status"] = run.effective_status(meta)
        meta.setdefault("id", run.id)
        out.append(meta)
    out.sort(key=lambda m: m.get("created", ""), reverse=True)
    return out
