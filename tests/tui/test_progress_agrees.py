"""Issue 19.10: one answer to "where is this run": the runs table, ``dettui runs``, the
monitor's header and ``attach`` agree on the epoch, the iteration and the semi phase; the
header says when the run is evaluating; a run that ended before its first system sample
does not wait for one."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path
from typing import Any

from rich.console import Console

from engine.protocol.events import encode, make_event
from engine.protocol.rundir import RUN_SCHEMA_VERSION, RunDirectory
from tests.tui.conftest import make_app, plain, run_pilot, wait_for


def _run(runs: Path, run_id: str, *, status: str, epochs: int, per_epoch: int,
         logged: list[int], done: int, events: tuple[dict[str, Any], ...] = ()) -> RunDirectory:
    """A run whose train events were logged at the steps ``logged`` and which stopped after
    step ``done`` (run.json's progress, as the engine writes it at the end of an attempt)."""
    run = RunDirectory.create(runs, run_id=run_id)
    max_iters = epochs * per_epoch
    run.write_meta({
        "schema": RUN_SCHEMA_VERSION, "id": run_id, "name": run_id, "status": status,
        "trainer": "Trainer", "config_path": "configs/demo/x.yml", "host": socket.gethostname(),
        "pid": os.getpid() if status == "running" else 999_999,
        "created": "2025-01-01T10:00:00+00:00", "started": "2025-01-01T10:00:01+00:00",
        "ended": None if status == "running" else "2025-01-01T10:05:00+00:00",
        "exit_code": None if status == "running" else 130, "attempt": 1, "eval": True,
        "world_size": 1, "best": None,
        "progress": {"epoch": -(-done // per_epoch), "epochs": epochs, "iter": done,
                     "max_iters": max_iters}})
    lines = [make_event("start", epochs=epochs, iters_per_epoch=per_epoch, max_iters=max_iters,
                        start_iter=0)]
    lines += [make_event("train", epoch=(it - 1) // per_epoch, iter=it, iters_per_epoch=per_epoch,
                         max_iters=max_iters, loss=1.0, losses={"loss_cls": 1.0}, lr=0.01)
              for it in logged]
    lines += list(events)
    if status != "running":
        lines.append(make_event("status", status=status))
    run.events.write_text("".join(encode(e) + "\n" for e in lines), encoding="utf-8")
    return run


def _everywhere(tmp_path: Path, run: RunDirectory) -> tuple[str, str, str, str]:
    """What the runs table, ``dettui runs``, the monitor header and its system pane say."""
    from textual.widgets import Static

    from tui.cli.main import _run_cells
    from tui.runs.index import RunsIndex
    from tui.screens.monitor import MonitorScreen
    from tui.widgets.runs_table import fmt_progress

    (row,) = RunsIndex(run.path.parent).scan().rows
    table = fmt_progress(row).plain
    cli = _run_cells(run.read_meta())[2].plain
    app = make_app(run.path.parent)
    seen: dict[str, str] = {}

    async def scenario(pilot) -> None:
        app.push_screen(MonitorScreen(run.path))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen)
                       and app.screen.snapshot is not None
                       and not app.screen.snapshot.loading, what="the monitor")
        await pilot.pause(0.3)
        seen["header"] = plain(app.screen.query_one("#run-progress", Static).render())
        seen["system"] = plain(app.screen.query_one("#sys-waiting", Static).render())

    run_pilot(app, scenario, size=(160, 45))
    return table, cli, seen["header"], seen["system"]


def test_an_interrupted_run_is_in_the_same_epoch_everywhere(tmp_path: Path) -> None:
    # 10 epochs of 5 steps, logged every 5 steps, stopped after step 7: in epoch 2
    run = _run(tmp_path / "runs", "r-stopped", status="interrupted", epochs=10, per_epoch=5,
               logged=[1, 5], done=7)
    table, cli, header, system = _everywhere(tmp_path, run)
    assert table.split()[0] == "2/10", table
    assert cli == "2/10"
    assert "epoch 2/10" in header and "iter 7/50" in header, header
    # ended without a system sample: nothing to wait for
    assert "waiting" not in system and "interrupted" in system, system


def test_a_run_stopped_early_in_its_only_epoch_is_in_epoch_one(tmp_path: Path) -> None:
    run = _run(tmp_path / "runs", "r-early", status="interrupted", epochs=1, per_epoch=16,
               logged=[1], done=2)
    table, cli, header, _ = _everywhere(tmp_path, run)
    assert table.split()[0] == "1/1" and cli == "1/1", (table, cli)
    assert "epoch 1/1" in header and "iter 2/16" in header, header


def test_the_header_says_evaluating_until_the_results_come(tmp_path: Path) -> None:
    from textual.widgets import Static

    from tui.screens.monitor import MonitorScreen

    run = _run(tmp_path / "runs", "r-eval", status="running", epochs=2, per_epoch=5,
               logged=[1, 5], done=5,
               events=(make_event("system", cpu_percent=5.0, gpus=[]),
                       make_event("eval_start", epoch=0, iter=5, models=["ema"], images=40)))
    app = make_app(run.path.parent)

    async def scenario(pilot) -> None:
        await pilot.pause(0.3)
        app.push_screen(MonitorScreen(run.path))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen)
                       and app.screen.snapshot is not None, what="the monitor")
        header = lambda: plain(app.screen.query_one("#run-progress", Static).render())  # noqa: E731
        await wait_for(pilot, lambda: "evaluating ema on 40 images…" in header(),
                       what="evaluating")
        assert "epoch 1/2" in header() and "iter 5/10" in header(), header()
        with open(run.events, "a", encoding="utf-8") as f:
            f.write(encode(make_event("eval", epoch=0, iter=5, model="ema",
                                      metrics={"AP": 0.5}, per_class={})) + "\n")
        await wait_for(pilot, lambda: "evaluating" not in header(), what="the results")

    run_pilot(app, scenario, size=(160, 45))


def test_attach_and_monitor_put_the_semi_phase_at_the_same_step(tmp_path: Path) -> None:
    from tui.cli.headless import HeadlessWatcher
    from tui.runs.semiinfo import phase_line, semi_schedule

    # 12 steps of burn-in: the semi phase starts with step 13; the first semi train event
    # is logged at step 15 (log_iter 5)
    run = RunDirectory.create(tmp_path / "runs", run_id="r-semi")
    run.write_meta({"schema": RUN_SCHEMA_VERSION, "id": "r-semi", "status": "finished",
                    "trainer": "DenseTeacher", "pid": 999_999, "exit_code": 0, "attempt": 1})
    start = make_event("start", epochs=1, iters_per_epoch=20, max_iters=20, start_iter=0,
                       phase="burn_in", semi_start_iter=12)
    trains = [make_event("train", epoch=0, iter=it, iters_per_epoch=20, max_iters=20, loss=1.0,
                         losses={"l": 1.0}, lr=0.01, phase="burn_in" if it <= 12 else "semi")
              for it in (5, 10, 15, 20)]
    run.events.write_text("".join(encode(e) + "\n" for e in [start, *trains,
                                                             make_event("status",
                                                                        status="finished")]))
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None, force_terminal=False)
    HeadlessWatcher(run, None, console=console, stop_on_ctrl_c=False).watch()
    assert "phase: burn-in → semi at iter 13" in buffer.getvalue().splitlines(), buffer.getvalue()
    assert phase_line(semi_schedule(start, trains[2])) == "phase: semi (since iter 13)"
