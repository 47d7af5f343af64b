"""``run.json``, read like any other input: a regular file of bounded size, a JSON object,
and each known key of the type the engine writes (stdlib only).

A run folder may be hand-edited, copied from elsewhere or planted by another user. A
``run.json`` that is ``[]``, not UTF-8, a FIFO, or holds ``"ended": 5`` must make that one
run unreadable, with the reason, and never crash or hang whatever lists or watches runs.
Unknown keys are allowed (newer engines may add some); every known key may be ``null``.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from engine.protocol.errors import RunError
from engine.protocol.safefiles import RefusedFile, read_regular

__all__ = ["MAX_RUN_JSON_BYTES", "check_meta", "read_run_json"]

MAX_RUN_JSON_BYTES = 4 << 20
"""A run.json larger than this is refused unread (real ones are a few KiB)."""

STATUSES = ("starting", "running", "finished", "failed", "interrupted")

_INT, _NUMBER, _STR, _BOOL, _TIME = "an integer", "a number", "a string", "true/false", "time"
_STR_LIST, _OBJECT = "a list of strings", "an object"

FIELDS: dict[str, str] = {
    "schema": _INT, "id": _STR, "name": _STR, "config_path": _STR, "trainer": _STR,
    "architecture": _STR, "status": _STR, "host": _STR, "device": _STR,
    "created": _TIME, "started": _TIME, "ended": _TIME,
    "attempt": _INT, "restarts": _INT, "max_restarts": _INT, "world_size": _INT,
    "epochs": _INT, "max_iters": _INT, "exit_code": _INT,
    "pid": _INT, "pgid": _INT, "engine_pid": _INT, "pid_started": _NUMBER,
    "eval": _BOOL, "overrides": _STR_LIST, "command": _STR_LIST, "weights": _OBJECT,
    "best": _OBJECT, "progress": _OBJECT, "error": _OBJECT,
    "trackers": _OBJECT, "slurm_job_id": _STR,
}
"""Known keys and the type of their value (any may also be null)."""

BEST_FIELDS = {"metric": _STR, "value": _NUMBER, "epoch": _INT, "checkpoint": _STR}
ERROR_FIELDS = {"type": _STR, "message": _STR}
PROGRESS_FIELDS = {"epoch": _INT, "epochs": _INT, "iter": _INT, "max_iters": _INT,
                   "eta": _NUMBER}


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STR_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _OBJECT:
        return isinstance(value, dict)
    if kind == _TIME:
        if not isinstance(value, str):
            return False
        try:
            _dt.datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    raise ValueError(f"unknown field kind {kind!r}")  # a bug in the tables above


def _describe(kind: str) -> str:
    return "an ISO-8601 time string" if kind == _TIME else kind


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_fields(meta: dict[str, Any], fields: dict[str, str], prefix: str) -> None:
    for key, kind in fields.items():
        if key in meta and not _fits(meta[key], kind):
            raise RunError(f"key '{prefix}{key}' must be {_describe(kind)} or null, got "
                           f"{_shown(meta[key])}")


def check_meta(meta: Any) -> dict[str, Any]:
    """``meta`` if it is a run.json object whose known keys have the right types; else a
    ``RunError`` saying which key is wrong (the caller adds the file)."""
    if not isinstance(meta, dict):
        raise RunError(f"must hold a JSON object, got {type(meta).__name__} "
                       f"{_shown(meta)}")
    _check_fields(meta, FIELDS, "")
    if meta.get("status") is not None and meta["status"] not in STATUSES:
        raise RunError(f"key 'status' must be one of {', '.join(STATUSES)}, got "
                       f"{_shown(meta['status'])}")
    for key, fields in (("best", BEST_FIELDS), ("progress", PROGRESS_FIELDS),
                        ("error", ERROR_FIELDS)):
        if isinstance(meta.get(key), dict):
            _check_fields(meta[key], fields, f"{key}.")
    return meta


def read_run_json(path: str | Path) -> dict[str, Any]:
    """The checked contents of a ``run.json``; ``RunError`` naming the file and the problem
    (``FileNotFoundError`` passes through: the caller knows what a missing one means)."""
    path = Path(path)
    try:
        raw = read_regular(path, MAX_RUN_JSON_BYTES)
    except FileNotFoundError:
        raise
    except RefusedFile as exc:
        raise RunError(f"{path} is not read: {exc}") from None
    except OSError as exc:
        raise RunError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RunError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc})") from None
    except ValueError as exc:  # a number of more than 4300 digits
        raise RunError(f"{path} holds a number Python will not read "
                       f"({str(exc).split(':')[0]})") from None
    except RecursionError:
        raise RunError(f"{path} is nested too deeply to be a run.json") from None
    try:
        return check_meta(meta)
    except RunError as exc:
        raise RunError(f"{path}: {exc.message}") from None
