"""A run that fails: the error modal for a run this TUI launched or resumed; a notification
only for one started from another shell, which every open TUI sees fail (issue 19.4).
And the launch form refuses a trainer on an architecture it cannot train, saying why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Select

from engine.protocol.events import encode, make_event
from engine.protocol.rundir import RunDirectory
from tests.conftest import SEMI_DIR
from tests.tui.conftest import make_app, make_run, plain, run_pilot, wait_for
from tests.tui.test_launch_form import _open_form, _status
from tui.process.spec import LaunchSpec
from tui.screens import launch as launch_module
from tui.screens.error import ErrorScreen
from tui.screens.launch import LaunchScreen
from tui.screens.monitor import MonitorScreen
from tui.widgets.runs_table import RunsTable

DENSE = SEMI_DIR / "denseteacher" / "denseteacher_fcos_tiny_shapes.yml"
ERROR = {"error_type": "RuntimeError", "message": "CUDA out of memory", "user_error": False}


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch) -> None:
    monkeypatch.setattr(launch_module, "gpus", lambda: [])
    monkeypatch.setattr(launch_module, "nvml_status", lambda: "no NVIDIA GPU (test)")


def fail(run: RunDirectory) -> None:
    """What a dying engine leaves: an error event, then run.json says failed."""
    with open(run.events, "a", encoding="utf-8") as f:
        f.write(encode(make_event("error", **ERROR)) + "\n")
    run.update_meta(status="failed", exit_code=1, error=ERROR)


def failure_notices(app, run: RunDirectory) -> list[str]:
    return [str(n.message) for n in app._notifications
            if f"Run {run.id} failed" in str(n.title)]


def modals(app) -> int:
    return sum(isinstance(s, ErrorScreen) for s in app.screen_stack)


def test_a_run_started_elsewhere_that_fails_only_notifies(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-elsewhere", status="running")
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        await wait_for(pilot, lambda: app.home.query_one(RunsTable).row_count == 1)
        fail(run)
        await wait_for(pilot, lambda: failure_notices(app, run), what="the notification")
        assert modals(app) == 0
        (notice,) = failure_notices(app, run)
        assert "CUDA out of memory" in notice and "e on its row" in notice
        await pilot.pause(1.5)  # more scans: still one notice, still no modal
        assert len(failure_notices(app, run)) == 1 and modals(app) == 0

    run_pilot(app, scenario)


def test_a_run_this_tui_launched_that_fails_opens_the_modal(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-ours", status="running")
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        await wait_for(pilot, lambda: app.home.query_one(RunsTable).row_count == 1)
        # what the launch form hands back after a launch (its engine: any process)
        app.home._launched((run, subprocess.Popen([sys.executable, "-c", "pass"])))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        fail(run)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), what="the modal")
        assert "CUDA out of memory" in app.screen.report.message
        await pilot.pause(1.5)  # the home screen and the monitor both saw it: one modal
        assert modals(app) == 1 and not failure_notices(app, run)

    run_pilot(app, scenario)


def test_a_watched_run_started_elsewhere_fails_into_the_banner(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-watched", status="running")
    app = make_app(runs_dir, open_run=run.id)

    async def scenario(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        screen = app.screen
        await wait_for(pilot, lambda: screen.snapshot is not None, what="the run read")
        fail(run)
        await wait_for(pilot, lambda: "CUDA out of memory" in plain(
            screen.query_one("#banner").content), what="the banner")
        await wait_for(pilot, lambda: failure_notices(app, run), what="the notification")
        assert modals(app) == 0 and len(failure_notices(app, run)) == 1

    run_pilot(app, scenario)


def test_the_form_refuses_a_trainer_on_an_architecture_it_cannot_train(
        runs_dir: Path) -> None:
    app = make_app(runs_dir, None, launch=LaunchSpec(config=DENSE, runs_dir=runs_dir))

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await wait_for(pilot, lambda: "✓ FCOS" in _status(screen), what="validated")
        screen.query_one("#trainer", Select).value = "Semi_RTDETR"
        await wait_for(pilot, lambda: "needs architecture" in _status(screen),
                       what="the refusal")
        status = " ".join(_status(screen).split())
        assert "key 'ssod_method'" in status
        assert "Semi_RTDETR trains RT-DETR on its pseudo-labels, so it needs architecture " \
               "RTDETR; this config has architecture FCOS" in status
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not screen.launching, what="the launch refused")
        await pilot.pause(0.2)
        assert isinstance(app.screen, LaunchScreen) and not any(runs_dir.iterdir())
        screen.query_one("#trainer", Select).value = "ARSL"  # ARSL trains FCOS
        await wait_for(pilot, lambda: "✓ FCOS" in _status(screen), what="accepted again")

    run_pilot(app, scenario, size=(100, 36))
