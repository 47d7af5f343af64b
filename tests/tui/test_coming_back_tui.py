"""Coming back to a run in the TUI (issue 7): the runs table keeps ids whole at 80 and 120
columns and shows a resumed finished run as finished; the monitor's eval pane, header and
log pane show what they must at 80x24 and 120x36; keys ask or go back instead of stopping or
quitting; the launch form checks the device and the runs folder; `n` and the tree keep
the config the user chose.

Run folders are in the real format (``make_run``, the monitor fixtures); Pilot drives the
real app.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from textual.widgets import DataTable, Input

from tests.tui.conftest import make_app, make_run, plain, run_pilot, wait_for
from tests.tui.test_monitor import MonitorHost, loaded, write_semi_run
from tests.tui.test_monitor_widgets import One
from tests.tui.test_snapshots_monitor import write_fixed_run
from tui.process.spec import LaunchSpec
from tui.runs.index import RunsIndex
from tui.screens import launch as launch_module
from tui.screens.compare import CompareScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.error import ErrorReport, ErrorScreen, show_error
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen
from tui.widgets import config_tree as config_tree_module
from tui.widgets.config_tree import ConfigTree
from tui.widgets.log_panel import LogPanel, LogView
from tui.widgets.run_header import RunHeader
from tui.widgets.runs_table import RunsTable

LONG_IDS = ["20261127-194059-fcos_tiny_shapes", "20261127-184059-retinanet_tiny_shapes",
            "20261127-174059-faster_rcnn_tiny_shapes-2"]


@pytest.fixture
def no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch_module, "gpus", lambda: [])
    monkeypatch.setattr(launch_module, "nvml_status", lambda: "no NVIDIA GPU (test)")


def _long_runs(runs_dir: Path) -> None:
    make_run(runs_dir, LONG_IDS[0], config_path="configs/demo/fcos_tiny_shapes.yml")
    make_run(runs_dir, LONG_IDS[1], offset=60, trainer="DenseTeacher",
             config_path="configs/demo/retinanet_tiny_shapes.yml")
    make_run(runs_dir, LONG_IDS[2], offset=120, status="interrupted",
             config_path="configs/demo/faster_rcnn_tiny_shapes.yml")


# ------------------------------------------------------------- 7.3: the TUI runs table
@pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=["80x24", "120x36"])
def test_runs_table_keeps_ids_whole_and_fits_the_width(runs_dir: Path,
                                                       size: tuple[int, int]) -> None:
    _long_runs(runs_dir)
    app = make_app(runs_dir)

    async def scenario(pilot: Any) -> None:
        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await wait_for(
            pilot, lambda: table.virtual_size.width <= table.size.width)  # nothing off to the right
        assert not table.show_horizontal_scrollbar
        ids = [plain(table.get_row(key)[2]).strip() for key in LONG_IDS]
        assert ids == LONG_IDS  # whole
        shown = [key for key in table.columns]
        if size[0] == 80:
            assert table.hidden_columns  # what was left out, and the panel says so
            assert "wider terminal" in str(app.home.query_one("#runs-panel").border_subtitle)
        else:  # 120 columns: everything but the start time (the id begins with it)
            assert [k.value for k in shown][:8] == ["sel", "status", "id", "progress",
                                                    "best_ap", "duration", "trainer",
                                                    "config"]

    run_pilot(app, scenario, size=size)


# ----------------------------------------------- 7.7: a resumed run that finished, in the index
def test_a_finished_run_with_a_stale_progress_shows_every_epoch_and_all_attempts(
        runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-t1", epochs=3, iters_per_epoch=125)
    meta = run.read_meta()
    # written by an engine before the fix: the last progress write was rate-limited away
    meta.update(progress={"epoch": 3, "epochs": 3, "iter": 370, "max_iters": 375},
                attempt=2, duration_s=1234.5)
    run.write_meta(meta)
    row = RunsIndex(runs_dir).scan().rows[0]
    assert row.shown_epoch == 3  # finished: all 3 epochs, not "2/3"
    assert row.duration(now=0.0) == 1234.5  # both attempts, not the last one's 600 s


# ------------------------------------------------------------- 7.8: the eval pane's numbers
@pytest.mark.parametrize("size", [(120, 36), (80, 24)], ids=["120x36", "80x24"])
def test_the_latest_eval_row_is_visible_in_the_default_layout(tmp_path: Path,
                                                              size: tuple[int, int]) -> None:
    run = write_fixed_run(tmp_path / "runs")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        if size[0] < 120:
            await pilot.press("2")
            await pilot.pause(0.2)
        summary = screen.query_one("#eval-summary", DataTable)
        await wait_for(pilot, lambda: summary.row_count == 2, what="the eval rows")
        await wait_for(
            pilot, lambda: summary.size.height >= summary.row_count + 1)  # header + every model
        assert summary.virtual_size.width <= summary.size.width  # no sideways scroll
        assert not summary.show_horizontal_scrollbar  # (it used to cover the one row)
        row = [str(c).strip() for c in summary.get_row_at(0)]
        assert row[:2] == ["teacher", "0.270"]

    run_pilot(MonitorHost(run.path), scenario, size=size)


def test_the_ap_chart_labels_ap_with_3_decimals() -> None:
    import re

    from tui.widgets.curves import Curve, CurvePlot

    plot = CurvePlot(x_label="iter", y_format="{:.3f}")

    async def scenario(pilot: Any) -> None:
        plot.set_curves([Curve("model AP", [100, 150, 200], [0.0314, 0.0208, 0.1873])])
        await pilot.pause()
        text = plain(plot.render())
        labels = re.findall(r"(\d+\.\d+)\s*┤", text)
        assert labels and all(re.fullmatch(r"0\.\d{3}", v) for v in labels), text

    run_pilot(One(plot), scenario, size=(60, 16))


# ------------------------------------------------------------- 7.13: the monitor header
def test_header_shows_the_best_ap_and_throughput_at_120_columns(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs", status="finished", alive=False)

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        header = screen.query_one(RunHeader)
        width = header.content_region.width
        title, progress = (plain(w.render()).rstrip("\n") for w in header.query("Static"))
        assert cell_len(progress) <= width, progress  # nothing cut at the end
        assert "ended 01-01 11:00" in progress and "T11:00:00" not in progress
        assert "img/s 16.0" in progress
        assert title.find("best AP 0.200 @ epoch 4") + len("best AP 0.200 @ epoch 4") <= width

    run_pilot(MonitorHost(run.path), scenario, size=(120, 36))


# ------------------------------------------------------------------ 7.9: the log pane
def test_the_search_hit_on_the_highlighted_line_stands_out() -> None:
    view = LogView("train.log")

    async def scenario(pilot: Any) -> None:
        view.append([f"iter {i} loss 0.{i:03d}" for i in range(1, 40)])
        await pilot.pause()
        view.search = "loss"
        hit = view.find("loss", None)
        view.jump_to(hit)
        await pilot.pause()
        strip = view.render_line(hit - view.first_index - round(view.scroll_offset.y))
        match = next(s for s in strip if s.text == "loss")
        assert match.style.bgcolor.name == "yellow"  # not the cursor's dark grey
        other = next(s for s in strip if s.text.startswith(" 0."))
        assert other.style.bgcolor.name == "grey23"  # the highlighted line around it

    run_pilot(One(view), scenario, size=(80, 20))


def test_a_finished_runs_log_shows_its_last_line_and_scrolls_sideways(tmp_path: Path) -> None:
    run = write_fixed_run(tmp_path / "runs")
    long = "".join(f"2025-01-01 12:00:{i % 60:02d} INFO epoch 10 iter {i} " + "x" * 150 + "\n"
                   for i in range(1, 120))
    run.train_log.write_text(long + "2025-01-01 12:46:40 INFO training finished\n")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        view = screen.query_one(LogPanel).view
        await wait_for(pilot, lambda: len(view.lines) == 120, what="the log")
        await wait_for(pilot, lambda: view.follow)
        assert not view.show_horizontal_scrollbar  # no bar (nor its stray block)
        visible = view.scroll_offset.y + view.scrollable_content_region.height
        assert visible >= len(view.lines)  # the last line is on screen
        assert "→ more" in str(screen.query_one(LogPanel).border_subtitle)
        await pilot.press("4")
        await pilot.press("right", "right")
        assert view.scroll_x == 2
        assert "col 3" in str(screen.query_one(LogPanel).border_subtitle)

    run_pilot(MonitorHost(run.path), scenario, size=(120, 36))


def test_help_lists_the_log_keys(runs_dir: Path) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot: Any) -> None:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help-keys").content)
        assert "Monitor log" in text and "←→" in text and "Scroll sideways" in text

    run_pilot(app, scenario)


# ----------------------------------------------------------------------- 7.10: keys
def test_q_goes_back_from_compare_and_closes_an_error_instead_of_quitting(
        runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot: Any) -> None:
        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("space", "space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.press("q")
        assert isinstance(app.screen, HomeScreen) and app.is_running
        show_error(app, ErrorReport("Run x failed", "boom"))
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
        await pilot.press("q")
        assert isinstance(app.screen, HomeScreen) and app.is_running

    run_pilot(app, scenario)


def test_quitting_with_runs_training_says_they_keep_running(runs_dir: Path) -> None:
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                              start_new_session=True)
    try:
        make_run(runs_dir, "20250101-100000-live", status="running", pid=engine.pid)
        make_run(runs_dir, "20250101-090000-done", offset=-3600)
        app = make_app(runs_dir)

        async def scenario(pilot: Any) -> None:
            await wait_for(pilot, lambda: app.home.query_one(RunsTable).row_count == 2)
            await pilot.press("q")

        run_pilot(app, scenario)
        message = plain(app.exit_message)
        assert "1 run keeps training in the background: 20250101-100000-live" in message
        assert f"dettui attach 20250101-100000-live --runs-dir {runs_dir}" in message
        assert engine.poll() is None
    finally:
        engine.kill()
        engine.wait()


def test_stop_in_the_monitor_asks_first(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")
    # A stand-in engine: stop() signals only a process whose command line names the run.
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                               "--run-dir", str(run.path)], start_new_session=True)
    try:
        meta = run.read_meta()
        run.write_meta({**meta, "pid": engine.pid})

        async def scenario(pilot: Any) -> None:
            await loaded(pilot)
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))
            await pilot.press("escape")
            await pilot.pause(0.3)
            assert engine.poll() is None  # not stopped
            await pilot.press("s", "y")
            assert engine.wait(timeout=15) != 0  # the real SIGINT

        run_pilot(MonitorHost(run.path), scenario, size=(120, 36))
    finally:
        engine.kill()
        engine.wait()


# ------------------------------------------------- 7.11, 7.12: the launch form refuses early
def test_the_form_refuses_a_cuda_device_this_machine_lacks(
        runs_dir: Path, configs_dir: Path, monkeypatch: pytest.MonkeyPatch, no_gpus) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no usable GPU, on any machine
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir,
                      device="cuda")
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        screen = app.screen
        status = screen.query_one("#launch-status")
        await wait_for(pilot, lambda: "device" in plain(status.content), what="the verdict")
        assert "no usable NVIDIA GPU" in plain(status.content)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not screen.launching)
        await pilot.pause(0.2)
        assert app.screen is screen and list(runs_dir.iterdir()) == []

    run_pilot(app, scenario)


def test_the_form_reports_a_runs_folder_the_os_refuses(tmp_path: Path, configs_dir: Path,
                                                       no_gpus) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=blocker)
    app = make_app(tmp_path / "runs", configs_dir, launch=spec)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        screen = app.screen
        status = screen.query_one("#launch-status")
        await wait_for(pilot, lambda: "✓" in plain(status.content), what="a valid form")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "cannot use the runs folder" in plain(status.content),
                       what="the refusal")
        assert str(blocker) in plain(status.content)
        assert app.screen is screen  # no error modal with a traceback, the form stays

    run_pilot(app, scenario)


# ----------------------------------------------- 7.13: the form's name, the tree's choice
def test_the_name_placeholder_follows_the_config(runs_dir: Path, configs_dir: Path,
                                                 no_gpus) -> None:
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        name = app.screen.query_one("#name", Input)
        assert name.placeholder == "good"
        app.screen.query_one("#config", Input).value = str(configs_dir / "demo" / "typo.yml")
        await pilot.pause()
        assert name.placeholder == "typo"  # what the run will be called

    run_pilot(app, scenario)


def test_n_after_the_launch_form_of_the_command_line_uses_that_config(
        runs_dir: Path, configs_dir: Path, no_gpus) -> None:
    chosen = configs_dir / "demo" / "typo.yml"  # not the tree's first runnable config
    app = make_app(runs_dir, configs_dir, launch=LaunchSpec(config=chosen, runs_dir=runs_dir))

    async def scenario(pilot: Any) -> None:
        tree = app.home.query_one(ConfigTree)
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await wait_for(pilot, lambda: len(tree.checks) == 4, what="the configs checked")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.home, what="the home screen")
        assert tree.current_path == chosen
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen))
        assert app.screen.query_one("#config", Input).value == str(chosen)

    run_pilot(app, scenario)


def test_the_config_picked_before_the_first_check_stays_picked(
        runs_dir: Path, configs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first check of the configs is held back until the user has moved the cursor
    # (it takes a while on a big configs tree): its verdicts must not move the cursor.
    release = threading.Event()
    real_check = config_tree_module.check_configs

    def slow_check(paths: Any) -> Any:
        release.wait(10)
        return real_check(paths)

    monkeypatch.setattr(config_tree_module, "check_configs", slow_check)
    chosen = configs_dir / "demo" / "typo.yml"
    app = make_app(runs_dir, configs_dir)

    async def scenario(pilot: Any) -> None:
        tree = app.home.query_one(ConfigTree)
        await wait_for(pilot, lambda: tree.select_path(chosen), what="the tree built")
        await wait_for(pilot, lambda: tree.current_path == chosen, what="the cursor moved")
        release.set()
        await wait_for(pilot, lambda: len(tree.checks) == 4, what="the configs checked")
        await pilot.pause(0.3)
        assert tree.current_path == chosen

    run_pilot(app, scenario)
