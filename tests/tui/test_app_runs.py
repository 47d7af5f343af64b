"""Runs table flows: live refresh, sort, filter, delete (with confirmation, refused while
running), stop, resume refusal, the error modal of a failed run, and a crash while we watch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.tui.conftest import make_app, make_run, plain, run_pilot, wait_for
from tui.screens.error import ErrorScreen, note_started
from tui.screens.home import ConfirmScreen, HomeScreen
from tui.widgets.runs_table import RunsTable


def _names(table: RunsTable) -> list[str]:
    return [r.id.split("-")[-1] for r in table.view]


def _table(app) -> RunsTable:
    return app.home.query_one(RunsTable)


async def _ready(pilot, app, n: int) -> RunsTable:
    table = _table(app)
    await wait_for(pilot, lambda: table.row_count == n, what=f"{n} rows in the runs table")
    return table


def test_table_shows_runs_with_status_progress_and_ap(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        table = await _ready(pilot, app, 3)
        assert _names(table) == ["charlie", "bravo", "alpha"]
        alpha = [plain(c).strip() for c in table.get_row("20250101-100000-alpha")]
        assert alpha[1] == "✓ finished"
        assert alpha[3:6] == ["2/2", "0.412", "10m00s"]
        assert alpha[6:] == ["Trainer", "good", "01-01 10:00"]
        assert "Runs (3)" in str(app.home.query_one("#runs-panel").border_title)

    run_pilot(app, scenario)


def test_an_empty_runs_folder_says_what_to_do_and_focuses_the_configs(
        runs_dir: Path, configs_dir: Path) -> None:
    app = make_app(runs_dir, configs_dir)

    async def scenario(pilot) -> None:
        from tui.widgets.config_tree import ConfigTree

        await wait_for(pilot, lambda: isinstance(app.focused, ConfigTree), what="tree focus")
        assert "press n to start one" in plain(app.home.query_one("#runs-empty").content)

    run_pilot(app, scenario)


def test_new_runs_appear_live(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        table = await _ready(pilot, app, 3)
        make_run(runs_dir, "20250102-090000-delta", offset=86400)
        await wait_for(pilot, lambda: table.row_count == 4, timeout=15, what="polled new run")
        assert _names(table)[0] == "delta"

    run_pilot(app, scenario)


def test_sort_key_cycles_columns_and_reverses(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        table = await _ready(pilot, app, 3)
        assert table.sort_key == "created"
        await pilot.press("o")  # run id
        assert table.sort_key == "id"
        assert _names(table) == ["charlie", "bravo", "alpha"]  # descending
        await pilot.press("O")
        assert _names(table) == ["alpha", "bravo", "charlie"]
        while table.sort_key != "best_ap":
            await pilot.press("o")
        assert _names(table) == ["bravo", "alpha", "charlie"]  # ascending; no AP last
        await pilot.press("O")
        assert _names(table) == ["alpha", "bravo", "charlie"]
        assert "best AP ▼" in str(app.home.query_one("#runs-panel").border_title)
        header = plain(table.columns["best_ap"].label)
        assert "▼" in header

    run_pilot(app, scenario)


def test_filter_with_slash_and_clear_with_escape(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        table = await _ready(pilot, app, 3)
        await pilot.press("slash")
        await pilot.press(*"dense")
        assert _names(table) == ["bravo"]
        assert "filter “dense”" in str(app.home.query_one("#runs-panel").border_title)
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.focused is table
        assert _names(table) == ["bravo"]
        await pilot.press("slash", "backspace", "backspace", "backspace", "backspace",
                          "backspace", *"zzz")
        assert table.row_count == 0
        assert "No run matches" in plain(app.home.query_one("#runs-empty").content)
        await pilot.press("escape")
        assert _names(table) == ["charlie", "bravo", "alpha"]
        assert not app.home.query_one("#runs-filter").display

    run_pilot(app, scenario)


def test_delete_asks_first_and_removes_the_folder(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)
    alpha = three_runs[0]

    async def scenario(pilot) -> None:
        table = await _ready(pilot, app, 3)
        table.move_to(alpha.id)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, HomeScreen)
        assert alpha.path.exists()
        await pilot.press("d")
        await pilot.press("y")
        await wait_for(pilot, lambda: not alpha.path.exists(), what="folder deleted")
        await wait_for(pilot, lambda: table.row_count == 2, what="row removed")

    run_pilot(app, scenario)


def test_delete_is_refused_on_a_running_run(runs_dir: Path) -> None:
    live = make_run(runs_dir, "20250101-100000-live", status="running")  # our pid: alive
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        await _ready(pilot, app, 1)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)  # no confirmation offered
        assert live.path.exists()
        assert any("Refusing to delete" in str(n.message) for n in app._notifications)

    run_pilot(app, scenario)


def test_stop_asks_first_then_signals_the_engine_process(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-live", status="running")
    # A stand-in engine: what stop() checks is that its command line names the run folder.
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                               "--run-dir", str(run.path)])
    try:
        run.update_meta(pid=engine.pid)
        app = make_app(runs_dir)

        async def scenario(pilot) -> None:
            await _ready(pilot, app, 1)
            await pilot.press("s")  # one stray key stops nothing: it asks
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Stop run 20250101-100000-live?" in plain(
                app.screen.query_one("#confirm-question").content)
            await pilot.press("n")
            await pilot.pause(0.3)
            assert engine.poll() is None and not isinstance(app.screen, ConfirmScreen)
            await pilot.press("s", "y")
            await pilot.pause()
            assert engine.wait(timeout=15) != 0  # SIGINT: KeyboardInterrupt in the sleeper
            assert any("Stopping" in str(n.message) for n in app._notifications)

        run_pilot(app, scenario)
    finally:
        engine.kill()
        engine.wait()


def test_resume_without_checkpoint_shows_the_error(runs_dir: Path) -> None:
    make_run(runs_dir, "20250101-100000-empty", status="interrupted", checkpoint=False)
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        await _ready(pilot, app, 1)
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ErrorScreen)
        assert "no checkpoint" in app.screen.report.message

    run_pilot(app, scenario)


def test_error_key_opens_the_failed_runs_message_and_traceback(runs_dir: Path,
                                                               three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        table = await _ready(pilot, app, 3)
        table.move_to(three_runs[1].id)
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, ErrorScreen)
        assert screen.report.message == "RuntimeError: CUDA out of memory"
        assert "20250101-110000-bravo" in screen.report.title
        traceback = screen.query_one("#error-traceback")
        assert not traceback.display
        await pilot.press("t")
        assert traceback.display
        assert "Traceback (most recent call last)" in screen.report.traceback
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)

    run_pilot(app, scenario)


def test_a_run_that_crashes_while_watched_opens_the_error_modal(runs_dir: Path) -> None:
    live = make_run(runs_dir, "20250101-100000-live", status="running")
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        await _ready(pilot, app, 1)
        note_started(app, live.path)  # launched here (elsewhere: test_failed_run_notice)
        # The engine dies hard: no error event, its traceback only in stderr.log.
        live.stderr_log.write_text("Traceback (most recent call last):\n  boom\n"
                                   "MemoryError\n", encoding="utf-8")
        live.update_meta(pid=999_999_99)
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), timeout=15,
                       what="error modal")
        report = app.screen.report
        assert "engine process is gone" in report.message
        assert report.traceback.endswith("MemoryError")

    run_pilot(app, scenario)


def test_resume_of_a_finished_run_asks_first(runs_dir: Path) -> None:
    """Issue 19.5 (the TUI's r): resumed as it is, a finished run trains nothing; r asks
    whether to train it longer and how long, and starts nothing unless told."""
    from textual.widgets import Input

    from tui.screens.train_longer import TrainLongerScreen

    run = make_run(runs_dir, "20250101-100000-done", epochs=2, iters_per_epoch=5)
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        await _ready(pilot, app, 1)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainLongerScreen),
                       what="the question")
        text = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "finished: it trained all 2 epochs, 10 steps" in text, text
        assert "\n\nTrain it longer?" in text and "⏎" not in text, text
        assert app.screen.query_one("#epochs", Input).value == "4"
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, TrainLongerScreen)
        meta = run.read_meta()
        assert (meta["status"], meta["attempt"]) == ("finished", 1)  # nothing started
        assert not app.home.processes
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainLongerScreen),
                       what="the question again")
        field = app.screen.query_one("#epochs", Input)
        field.value = "2"  # not longer than it trained: refused in the dialog
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, TrainLongerScreen)
        assert "at least 3" in str(app.screen.query_one("#train-longer-error").render())
        field.value = "3"
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.home.processes), what="the resume started")
        try:
            meta = run.read_meta()
            assert meta["attempt"] == 2 and "epoch=3" in meta["command"], meta["command"]
        finally:
            for proc in app.home.processes:  # the engine this test started (own session)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    run_pilot(app, scenario)
