"""Fixtures for the TUI tests: a small configs tree and run folders in the real format.

Runs are written with ``engine.protocol.rundir.RunDirectory`` and ``engine.protocol.events.EventWriter``, so
the tests read exactly what the engine writes. Times are fixed, so tables and snapshots
are deterministic.
"""

from __future__ import annotations

import os
import socket
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import dump_yaml
from engine.protocol.events import encode, make_event
from engine.protocol.rundir import RUN_SCHEMA_VERSION, RunDirectory

BASE_T = 1_735_725_600.0  # 2025-01-01 10:00:00 UTC


CONFIG_FILES = {
    "_base_/runtime.yml": """\
        # shared runtime defaults
        log_iter: 20
        snapshot_epoch: 1
        worker_num: 2
        seed: 42
        """,
    "demo/good.yml": """\
        # a valid config
        _BASE_:
          - ../_base_/runtime.yml
        architecture: FCOS
        num_classes: 4
        epoch: 3
        LearningRate:
          base_lr: 0.002
        TrainDataset: {dataset_dir: data/shapes, synthesize: {num_images: 8}}
        EvalDataset: {dataset_dir: data/shapes, synthesize: {num_images: 4}}
        """,
    "demo/typo.yml": """\
        _BASE_:
          - ../_base_/runtime.yml
        num_classes: 4
        epochs: 3
        """,
    "demo/broken.yml": """\
        num_classes: 4
        model: {min_size: 160
        """,
}


@pytest.fixture(autouse=True)
def steady_text_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text cursors do not blink in tests: a snapshot must not depend on the half second
    in which it is taken (a blinking cursor made ``test_launch`` flaky). The cursor stays
    as focus left it: shown in the focused field, hidden elsewhere."""
    from textual.widgets import Input

    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)


@pytest.fixture
def configs_dir(tmp_path: Path) -> Path:
    """``configs/`` with a base file, a valid config, a typo and a YAML syntax error."""
    root = tmp_path / "configs"
    for rel, text in CONFIG_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


def _iso(t: float) -> str:
    # A fixed +00:00 offset: the table shows times as recorded, whatever the machine's TZ.
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def make_run(runs_dir: Path, run_id: str, *, status: str = "finished", offset: float = 0.0,
             trainer: str = "Trainer", config_path: str = "configs/demo/good.yml",
             epochs: int = 2, iters_per_epoch: int = 5, best: float | None = 0.25,
             lr: float = 0.002, loss_scale: float = 1.0, extra_config: dict | None = None,
             pid: int | None = None, error: dict[str, Any] | None = None,
             stderr: str = "", progress: bool = True, duration: float = 600.0,
             checkpoint: bool = True) -> RunDirectory:
    """A run folder with run.json, config.yaml, train/eval events and logs.

    ``offset`` shifts its times (seconds after BASE_T) so runs sort deterministically.
    ``status='running'`` uses this test process's pid, so the run looks alive.
    """
    run = RunDirectory.create(runs_dir, run_id=run_id)
    t0 = BASE_T + offset
    active = status in ("starting", "running")
    max_iters = epochs * iters_per_epoch
    done_epochs = epochs if not active else max(1, epochs // 2)
    meta: dict[str, Any] = {
        "schema": RUN_SCHEMA_VERSION, "id": run_id, "name": run_id.split("-")[-1],
        "config_path": config_path, "overrides": [], "trainer": trainer,
        "architecture": "FCOS", "weights": {"mode": "none"},
        "command": ["python", "-m", "engine", "train", config_path],
        "status": status, "pid": pid if pid is not None else (os.getpid() if active else 999_999),
        "host": socket.gethostname(), "created": _iso(t0), "started": _iso(t0 + 1),
        "ended": None if active else _iso(t0 + 1 + duration),
        "exit_code": None if active else (0 if status == "finished" else 1),
        "attempt": 1, "eval": True, "world_size": 1, "device": "cpu",
        "best": None if best is None else {"metric": "AP", "value": best, "epoch": epochs,
                                           "checkpoint": "checkpoints/best.pt"},
    }
    if progress:
        meta["progress"] = {"epoch": done_epochs, "epochs": epochs,
                            "iter": done_epochs * iters_per_epoch, "max_iters": max_iters}
    run.write_meta(meta)
    config = {"architecture": "FCOS", "num_classes": 4, "epoch": epochs,
              "LearningRate": {"base_lr": lr, "schedule": "cosine"},
              "TrainReader": {"batch_size": 8}}
    for key, value in (extra_config or {}).items():
        config[key] = value
    run.config_yaml.write_text(dump_yaml(config), encoding="utf-8")
    with open(run.events, "w", encoding="utf-8") as f:
        def put(kind: str, t: float, **fields: Any) -> None:
            event = make_event(kind, **fields)
            event["t"] = t
            f.write(encode(event) + "\n")

        put("start", t0 + 1, run_id=run_id, epochs=epochs, iters_per_epoch=iters_per_epoch,
            max_iters=max_iters)
        for it in range(1, done_epochs * iters_per_epoch + 1):
            epoch = (it - 1) // iters_per_epoch
            cls_loss = loss_scale * 2.0 / (1 + 0.3 * it)
            box_loss = loss_scale * 1.0 / (1 + 0.2 * it)
            put("train", t0 + 1 + it, epoch=epoch, iter=it,
                epoch_iter=(it - 1) % iters_per_epoch + 1, iters_per_epoch=iters_per_epoch,
                max_iters=max_iters, loss=cls_loss + box_loss,
                losses={"loss_cls": cls_loss, "loss_box": box_loss}, lr=lr)
            if it % iters_per_epoch == 0 and best is not None:
                ap = best * (epoch + 1) / epochs
                put("eval", t0 + 1 + it, epoch=epoch, iter=it, model="model",
                    metrics={"AP": ap, "AP50": min(1.0, ap * 1.8), "AP75": ap * 0.9,
                             "APs": ap * 0.5, "APm": ap, "APl": ap * 1.2},
                    per_class={"circle": ap, "square": ap})
        if error is not None:
            put("error", t0 + duration, **error)
        if not active:
            put("status", t0 + duration, status=status)
    run.train_log.write_text(f"[{run_id}] training\n", encoding="utf-8")
    run.stderr_log.write_text(stderr, encoding="utf-8")
    if checkpoint:
        (run.checkpoints / "last.pt").write_bytes(b"not a real checkpoint")
    return run


@pytest.fixture
def make_runs(runs_dir: Path) -> Callable[..., RunDirectory]:
    """``make_runs(run_id, **kwargs)``: a run folder in the test's runs dir."""

    def make(run_id: str, **kwargs: Any) -> RunDirectory:
        return make_run(runs_dir, run_id, **kwargs)

    return make


@pytest.fixture
def three_runs(make_runs: Callable[..., RunDirectory]) -> list[RunDirectory]:
    """A finished FCOS run, a failed DenseTeacher run and an interrupted one."""
    return [
        make_runs("20250101-100000-alpha", offset=0, best=0.412, lr=0.002),
        make_runs("20250101-110000-bravo", offset=3600, status="failed", best=0.105,
                  trainer="DenseTeacher", lr=0.01, loss_scale=1.5, duration=125,
                  extra_config={"ssod_method": "DenseTeacher"},
                  error={"error_type": "RuntimeError", "message": "CUDA out of memory",
                         "traceback": "Traceback (most recent call last):\n  File \"x.py\","
                                      " line 1, in <module>\nRuntimeError: CUDA out of memory",
                         "user_error": False}),
        make_runs("20250101-120000-charlie", offset=7200, status="interrupted", best=None,
                  lr=0.002, duration=4000, extra_config={"TrainReader": {"batch_size": 16}}),
    ]



def run_pilot(app: Any, scenario: Callable[[Any], Any], size: tuple[int, int] = (120, 40)) -> None:
    """Run ``await scenario(pilot)`` inside ``app.run_test`` (no async plugin needed)."""
    import asyncio

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def wait_for(pilot: Any, predicate: Callable[[], bool], timeout: float = 15.0,
                   what: str = "condition") -> None:
    """Let the app run until ``predicate()`` holds (workers and timers are real threads).

    The timeout is generous: the suite runs on two workers, so a TUI test may share its
    two cores with a training engine and another pytest process."""
    import time as _time

    deadline = _time.monotonic() + timeout
    while not predicate():
        if _time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


def tables_settled(screen: Any) -> bool:
    """Whether every DataTable on ``screen`` has measured the rows added to it.

    A DataTable sizes its columns for new rows only when its own message queue is idle
    (``DataTable._on_idle``); on a loaded machine a screenshot could land in between and
    show columns cut to their header's width (a flaky snapshot). Textual exposes no public
    flag for it, so this reads the two it keeps."""
    from textual.widgets import DataTable

    return all(not table._require_update_dimensions and not table._updated_cells
               for table in screen.query(DataTable))


def plain(renderable: Any, width: int = 200) -> str:
    """A Rich renderable (or a Static's content) as plain text."""
    from rich.console import Console

    console = Console(width=width, color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def make_app(runs_dir: Path, configs_dir: Path | None = None, **kwargs: Any) -> Any:
    from tui.app import DettuiApp

    return DettuiApp(runs_dir, [configs_dir] if configs_dir else [], **kwargs)


async def type_text(pilot: Any, text: str) -> None:
    """Type ``text`` into the focused widget as key events, like ``pilot.press(*text)`` but
    without waiting for the app to go idle after every character (that costs ~80 ms each)."""
    from textual import events
    from textual.keys import _character_to_key

    app = pilot.app
    for char in text:
        key = char if char.isalnum() else _character_to_key(char)
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)
    await pilot.pause()
