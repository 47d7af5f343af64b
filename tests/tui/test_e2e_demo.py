"""End to end, through key presses only: the tree opens on the demo config, fill the
launch form, start a real engine subprocess, watch it finish, find it in the runs table with
its AP, and train it one epoch longer (r asks first; same run id, attempt 2)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from textual.widgets import Input

from engine.protocol.rundir import list_runs
from tests.conftest import DEMO_CONFIG, REPO, tiny_overrides
from tests.tui.conftest import make_app, plain, run_pilot, type_text, wait_for
from tui.screens.error import ErrorScreen
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen
from tui.screens.monitor import MonitorScreen
from tui.screens.train_longer import TrainLongerScreen
from tui.widgets.config_tree import ConfigTree
from tui.widgets.runs_table import RunsTable

ENGINE_TIMEOUT = 150.0


def _only_run(runs_dir: Path) -> dict:
    runs = list_runs(runs_dir)
    assert len(runs) == 1, [r["id"] for r in runs]
    return runs[0]


def _engine_failed(runs_dir: Path) -> str | None:
    runs = list_runs(runs_dir)
    if runs and runs[0]["status"] == "failed":
        stderr = (runs_dir / runs[0]["id"] / "stderr.log").read_text(errors="replace")
        return stderr[-3000:]
    return None


async def _wait_finished(pilot, runs_dir: Path, attempt: int) -> dict:
    def done() -> bool:
        failure = _engine_failed(runs_dir)
        if failure is not None:
            raise AssertionError(f"the engine failed:\n{failure}")
        run = list_runs(runs_dir)
        return bool(run) and run[0]["status"] == "finished" and run[0].get("attempt") == attempt

    await wait_for(pilot, done, timeout=ENGINE_TIMEOUT, what=f"attempt {attempt} to finish")
    return _only_run(runs_dir)


@pytest.mark.slow
def test_launch_watch_and_resume_the_demo(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    overrides = " ".join(tiny_overrides(tmp_path / "shapes", epochs=1, epoch_iter=3))
    app = make_app(runs_dir, REPO / "configs")

    async def scenario(pilot) -> None:
        home = app.home
        tree = home.query_one(ConfigTree)
        await wait_for(pilot, lambda: bool(tree.checks), what="configs checked")
        # No runs yet, so the config tree has the focus, on the demo config (issue 19.13).
        await wait_for(pilot, lambda: app.focused is tree, what="focus on the tree")
        await wait_for(pilot, lambda: tree.current_path == DEMO_CONFIG, what="the demo config")
        # Open the launch form, name the run, add the overrides, launch.
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        form = app.screen
        assert app.focused is form.query_one("#name", Input)
        await type_text(pilot, "e2e demo")
        for _ in range(20):
            if app.focused is form.query_one("#overrides", Input):
                break
            await pilot.press("tab")
        await type_text(pilot, overrides)
        await wait_for(pilot, lambda: "✓" in plain(form.query_one("#launch-status").content),
                       what="form validated")
        await pilot.press("ctrl+s")
        # The monitor of the new run opens while the engine trains.
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=30,
                       what="monitor of the new run")
        run = _only_run(runs_dir)
        assert run["name"] == "e2e demo"
        assert app.screen.run_dir.name == run["id"]
        run = await _wait_finished(pilot, runs_dir, attempt=1)
        assert run["best"] is not None and run["best"]["metric"] == "AP"
        # Back home: the run is in the table, finished, with its AP.
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))
        table = home.query_one(RunsTable)
        for _ in range(5):  # focus went back to the tree; tab over to the table
            if app.focused is table:
                break
            await pilot.press("tab")
        assert app.focused is table

        def row_cells() -> list[str]:
            if table.row_count != 1:
                return []
            return [plain(c).strip() for c in table.get_row_at(0)]

        await wait_for(pilot, lambda: row_cells()[1:2] == ["✓ finished"], what="finished row")
        cells = row_cells()
        assert cells[2] == run["id"]
        # the demo evaluates its EMA weights; the table names a model that is not the raw one
        assert cells[4] == f"{run['best']['value']:.3f} {run['best']['model']}"
        # Resume it: finished, so r asks first (it would train nothing); train it to 2
        # epochs in all: same run, attempt 2, finishes again with the longer schedule.
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainLongerScreen),
                       what="the train-longer question")
        assert app.screen.query_one("#epochs", Input).value == "2"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        run = await _wait_finished(pilot, runs_dir, attempt=2)
        assert run["id"] == cells[2]
        assert run["progress"]["epochs"] == 2 and run["progress"]["epoch"] == 2
        assert not any(isinstance(s, ErrorScreen) for s in app.screen_stack)
        await pilot.press("escape")
        await wait_for(pilot, lambda: row_cells()[1:2] == ["✓ finished"])

    try:
        run_pilot(app, scenario, size=(120, 40))
    finally:
        for run in list_runs(runs_dir):
            pid = run.get("pid")
            if run["status"] in ("starting", "running") and pid:
                os.killpg(pid, signal.SIGKILL)
