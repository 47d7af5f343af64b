"""Help lists every key; enter opens the monitor; the error funnel (one modal per error,
worker failures included); quitting leaves trainings running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.tui.conftest import make_app, make_run, plain, run_pilot, wait_for
from tui.screens.error import ErrorReport, ErrorScreen, show_error
from tui.screens.help import HelpScreen, default_groups
from tui.screens.home import HomeScreen
from tui.screens.monitor import MonitorScreen
from tui.widgets.runs_table import RunsTable


def test_help_lists_every_key_of_every_screen(runs_dir: Path) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help-keys").content)
        for title, bindings in default_groups():
            assert title in text
            for binding in bindings:
                if binding.description:
                    assert binding.description in text, (title, binding.key)
        for expected in ("Resume", "Stop", "Delete", "Compare", "Filter", "Resolved",
                         "New run", "Traceback", "Launch", "Sort"):
            assert expected in text
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)

    run_pilot(app, scenario)


def test_enter_opens_the_monitor_and_escape_comes_back(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        table.move_to(three_runs[0].id)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
        assert app.screen.run_dir == three_runs[0].path
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen))

    run_pilot(app, scenario)


def test_open_run_argument_opens_its_monitor_or_the_error(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir, open_run="alpha")

    async def scenario(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))

    run_pilot(app, scenario)
    app = make_app(runs_dir, open_run="nope")

    async def missing(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "no run 'nope'" in app.screen.report.message
        assert app.screen.report.traceback is None  # a user error: no traceback

    run_pilot(app, missing)


def test_the_same_error_opens_one_modal(runs_dir: Path) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        show_error(app, ErrorReport("Run x failed", "boom"))
        show_error(app, ErrorReport("Run x failed", "boom"))
        await pilot.pause()
        assert sum(isinstance(s, ErrorScreen) for s in app.screen_stack) == 1
        show_error(app, ErrorReport("Run y failed", "bang"))
        await pilot.pause()
        assert sum(isinstance(s, ErrorScreen) for s in app.screen_stack) == 2

    run_pilot(app, scenario)


def test_a_failing_worker_lands_in_the_error_modal(runs_dir: Path) -> None:
    app = make_app(runs_dir)

    def explode() -> None:
        raise OSError(28, "No space left on device")

    async def scenario(pilot) -> None:
        app.run_worker(explode, thread=True, name="scan", exit_on_error=False)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        report = app.screen.report
        assert "No space left on device" in report.message
        assert "OSError" in report.traceback
        await pilot.press("t")
        assert app.screen.query_one("#error-traceback").display

    run_pilot(app, scenario)


def test_error_report_of_a_killed_run_uses_stderr(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-killed", status="failed",
                   stderr="loading...\nTraceback (most recent call last):\n  File 'a.py'\n"
                          "KeyError: 'boxes'\n")
    report = ErrorReport.from_run(run.path)
    assert "exit code 1" in report.message
    assert report.traceback.startswith("Traceback") and report.traceback.endswith("'boxes'")


def test_quit_leaves_the_training_running(runs_dir: Path) -> None:
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                              start_new_session=True)
    try:
        make_run(runs_dir, "20250101-100000-live", status="running", pid=engine.pid)
        app = make_app(runs_dir)

        async def scenario(pilot) -> None:
            await wait_for(pilot, lambda: app.home.query_one(RunsTable).row_count == 1)
            await pilot.press("q")

        run_pilot(app, scenario)
        assert app.return_code in (0, None)
        assert engine.poll() is None  # still training
    finally:
        engine.kill()
        engine.wait()
