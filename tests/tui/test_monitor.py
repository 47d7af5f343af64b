"""The run monitor, driven with Pilot: what it shows, its keys, and live updates."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from textual.app import App

from engine.protocol.errors import RunError
from engine.protocol.events import encode, make_event
from engine.protocol.rundir import RunDirectory
from tests.tui.conftest import run_pilot, wait_for
from tui.process import launcher
from tui.screens.confirm import ConfirmScreen
from tui.screens.error import ErrorScreen
from tui.screens.monitor import MonitorScreen
from tui.widgets.curves import CurvePlot
from tui.widgets.log_panel import LogPanel
from tui.widgets.run_header import RunHeader, format_duration
from tui.widgets.system_panel import SystemPanel

T0 = 1_735_725_600.0
TRACEBACK = ("Traceback (most recent call last):\n"
             '  File "engine/trainers/base.py", line 120, in run_step\n'
             "RuntimeError: CUDA out of memory\n")


def _event(kind: str, t: float, **fields: Any) -> str:
    event = make_event(kind, **fields)
    event["t"] = t
    return encode(event) + "\n"


def train_lines(first: int, last: int, max_iters: int = 100) -> str:
    out = []
    for i in range(first, last + 1):
        cls_loss, box_loss = 2.0 / (1 + 0.1 * i), 1.0 / (1 + 0.05 * i)
        out.append(_event(
            "train", T0 + 10 * i, epoch=(i - 1) // 10, iter=i, epoch_iter=(i - 1) % 10 + 1,
            iters_per_epoch=10, max_iters=max_iters, loss=cls_loss + box_loss,
            losses={"loss_cls": cls_loss, "loss_box": box_loss}, lr=0.01 * (1 - i / 200),
            batch_time=0.5, data_time=0.05, ips=16.0, eta=10.0 * (max_iters - i),
            memory=None))
    return "".join(out)


def write_semi_run(runs_dir: Path, *, status: str = "running", iters: int = 40,
                   alive: bool = True, host: str | None = None) -> RunDirectory:
    """A DenseTeacher run: train events, teacher + student evals every 10 iterations,
    system samples of a machine without NVIDIA GPU, and logs with a traceback."""
    run = RunDirectory.create(runs_dir, run_id="20250101-100000-semi")
    run.write_meta({
        "schema": 1, "id": run.id, "name": "semi", "config_path": "configs/semi.yml",
        "trainer": "DenseTeacher", "status": status, "host": host or socket.gethostname(),
        "pid": os.getpid() if alive else 999_999_999, "created": "2025-01-01T10:00:00+00:00",
        "ended": None if status in ("starting", "running") else "2025-01-01T11:00:00+00:00",
        # run.json counts epochs from 1: the 4th evaluation (event epoch 3) was the best
        "best": {"metric": "AP", "value": 0.2, "epoch": 4, "checkpoint": "best.pt"}})
    text = _event("start", T0, run_id=run.id, epochs=10, iters_per_epoch=10, max_iters=100,
                  start_epoch=0, start_iter=0)
    for block in range(iters // 10):
        text += train_lines(10 * block + 1, 10 * block + 10)
        it = 10 * block + 10
        for model, gain in (("teacher", 0.02), ("student", 0.0)):
            ap = 0.05 * (block + 1) + gain
            text += _event("eval", T0 + 10 * it, epoch=block, iter=it, model=model,
                           metrics={"AP": ap, "AP50": ap * 1.6, "AP75": ap * 0.9,
                                    "APs": ap / 2, "APm": ap, "APl": ap * 1.2},
                           per_class={"circle": ap + 0.01, "square": ap - 0.01})
        text += _event("system", T0 + 10 * it, cpu_percent=40.0 + block, ram_used_mb=6000.0,
                       ram_total_mb=16000.0, proc_rss_mb=1500.0, gpus=[],
                       gpu_status="no NVIDIA GPU (NVML Shared Library Not Found)")
    run.events.write_text(text)
    run.train_log.write_text("".join(f"[{i:03d}] INFO iter {i} loss 1.0\n"
                                     for i in range(1, 61)))
    run.stderr_log.write_text("some warning from a library\n" + TRACEBACK)
    return run


class MonitorHost(App[None]):
    """A bare app that opens the monitor (the real app opens it from the runs table)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def on_mount(self) -> None:
        self.push_screen(MonitorScreen(self.run_dir))


async def loaded(pilot: Any) -> MonitorScreen:
    screen = pilot.app.screen
    assert isinstance(screen, MonitorScreen)
    await wait_for(pilot, lambda: screen.snapshot is not None and not screen.snapshot.loading
                   and screen.snapshot.events_read > 0, what="the history")
    await pilot.pause()
    return screen


def text_of(widget: Any) -> str:
    return str(widget.render())


def header_text(screen: MonitorScreen) -> str:
    return " ".join(str(w.render()) for w in screen.query_one(RunHeader).query("Static"))


def test_monitor_shows_status_progress_losses_evals_and_no_gpu(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        header = header_text(screen)
        assert "RUNNING" in header and run.id in header and "DenseTeacher" in header
        assert "epoch 4/10" in header and "iter 40/100" in header
        assert "ETA 0:10:00" in header
        assert "best AP 0.200 @ epoch 4" in header  # a 0-1 fraction, 1-based epoch
        assert "━ 40%" in header  # the progress bar
        loss = screen.query_one("#loss-plot", CurvePlot)
        assert [c.name for c in loss.curves] == ["loss", "loss_cls", "loss_box"]
        assert len(loss.curves[0].xs) == 40
        ap = screen.query_one("#ap-plot", CurvePlot)
        assert [c.name for c in ap.curves] == ["teacher AP", "student AP"]
        summary = screen.query_one("#eval-summary")
        assert [str(summary.get_row_at(i)[0]).strip() for i in range(summary.row_count)] == [
            "teacher", "student"]
        row = [str(cell).strip() for cell in summary.get_row_at(0)]
        assert row[1] == "0.220"  # teacher AP of the last eval, on the 0-1 scale
        caption = str(screen.query_one("#eval-caption").render())
        assert "epoch 4 · iter 40" in caption  # epoch 3 in the event: shown 1-based
        classes = screen.query_one("#eval-classes")
        assert classes.row_count == 2 and len(classes.columns) == 3
        system = screen.query_one(SystemPanel)
        assert system.gpu_count == 0
        assert "no NVIDIA GPU" in text_of(system.query_one("#no-gpu"))
        assert "NVML Shared Library Not Found" in text_of(system.query_one("#no-gpu"))

    run_pilot(MonitorHost(run.path), scenario, size=(160, 50))


def test_plot_toggles_smoothing_log_scale_and_wall_time(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        loss = screen.query_one("#loss-plot", CurvePlot)
        assert not (loss.smooth or loss.log_y or loss.x_time)
        await pilot.press("m", "y", "x")
        await pilot.pause()
        assert loss.smooth and loss.log_y and loss.x_time
        assert screen.query_one("#ap-plot", CurvePlot).log_y
        assert loss.curves[0].xs[0] == T0 + 10  # wall time of the first step
        assert "x: time" in loss.border_subtitle and "log y" in loss.border_subtitle
        assert "elapsed" in text_of(loss)
        await pilot.press("x")
        await pilot.pause()
        assert loss.curves[0].xs[0] == 1.0

    run_pilot(MonitorHost(run.path), scenario, size=(160, 50))


def test_log_panel_follow_search_and_jump_to_traceback(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        panel = screen.query_one(LogPanel)
        await wait_for(pilot, lambda: len(panel.view.lines) == 60, what="train.log")
        view = panel.view
        assert view.follow and view.is_vertical_scroll_end
        await pilot.press("f")
        assert not view.follow
        await pilot.press("f")
        assert view.follow
        await pilot.press("slash")
        await pilot.press(*"iter 2", "enter")
        await pilot.pause()
        assert view.search == "iter 2" and not view.follow
        assert view.lines[view.cursor].startswith("[002]")
        await pilot.press("n")
        assert view.lines[view.cursor].startswith("[020]")
        await pilot.press("N")
        assert view.lines[view.cursor].startswith("[002]")
        await pilot.press("e")
        await pilot.pause()
        assert panel.source == "stderr.log"
        assert panel.view.lines[panel.view.cursor].startswith("Traceback")
        await pilot.press("t")
        assert panel.source == "train.log"

    run_pilot(MonitorHost(run.path), scenario, size=(160, 50))


def test_live_events_and_log_lines_reach_the_screen(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        with open(run.events, "a") as f:
            f.write(train_lines(41, 45))
            f.write(train_lines(46, 46)[:40])  # a line the writer is still writing
        with open(run.train_log, "a") as f:
            f.write("[061] INFO fresh line\n")
        await wait_for(pilot, lambda: screen.snapshot.train_version > 0
                       and len(screen.snapshot.train["iter"]) == 45, what="new events")
        await wait_for(pilot, lambda: "iter 45/100" in header_text(screen), what="header")
        panel = screen.query_one(LogPanel)
        await wait_for(pilot, lambda: panel.view.lines[-1].endswith("fresh line"),
                       what="the new log line")
        assert panel.view.is_vertical_scroll_end

    run_pilot(MonitorHost(run.path), scenario, size=(160, 50))


def test_narrow_terminal_shows_one_pane_at_a_time(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        assert screen.has_class("-narrow")
        loss, system = screen.query_one("#loss-plot"), screen.query_one("#pane-system")
        assert loss.region.height > 10 and system.region.height == 0
        await pilot.press("3")
        await pilot.pause()
        assert system.region.height > 10 and loss.region.height == 0
        await pilot.press("z")
        assert screen.maximized is system
        await pilot.press("z")
        assert screen.maximized is None
        await pilot.press("e")  # jumps to the logs pane
        await pilot.pause()
        assert screen.pane == "logs" and screen.query_one(LogPanel).region.height > 10
        workers = list(screen.workers)
        await pilot.press("q")
        assert not isinstance(pilot.app.screen, MonitorScreen)
        await pilot.pause()
        assert workers and all(w.is_cancelled for w in workers)  # the reader stops

    run_pilot(MonitorHost(run.path), scenario, size=(80, 24))


def test_stop_and_resume_keys_call_the_launcher(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(launcher, "stop", lambda run: calls.append(("stop", run.id)) or True)

    def refuse(run: RunDirectory) -> None:
        calls.append(("resume", run.id))
        raise RunError(f"run {run.id} has no checkpoint to resume from")

    monkeypatch.setattr(launcher, "resume", refuse)
    live = write_semi_run(tmp_path / "a")
    ended = write_semi_run(tmp_path / "b", status="interrupted", alive=False)

    async def on_live(pilot: Any) -> None:
        screen = await loaded(pilot)
        assert screen.check_action("resume", ()) is False
        await pilot.press("r", "s")
        assert calls == []  # `s` asks before it stops a training
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("n")
        assert calls == [] and pilot.app.screen is screen
        await pilot.press("s", "y")
        assert calls == [("stop", live.id)]

    async def on_ended(pilot: Any) -> None:
        screen = await loaded(pilot)
        assert "INTERRUPTED" in header_text(screen)
        await pilot.press("s", "r")
        await pilot.pause()
        assert calls[-1] == ("resume", ended.id) and len(calls) == 2
        assert isinstance(pilot.app.screen, ErrorScreen)
        assert "no checkpoint" in pilot.app.screen.report.message

    run_pilot(MonitorHost(live.path), on_live, size=(160, 50))
    run_pilot(MonitorHost(ended.path), on_ended, size=(160, 50))

    # a finished run: resumed as it is it would train nothing, so r asks first (19.5)
    from tui.screens.train_longer import TrainLongerScreen

    done = write_semi_run(tmp_path / "c", status="finished", alive=False)

    async def on_finished(pilot: Any) -> None:
        await loaded(pilot)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, TrainLongerScreen),
                       what="the train-longer question")
        await pilot.press("escape")
        await pilot.pause()
        assert len(calls) == 2  # nothing resumed

    run_pilot(MonitorHost(done.path), on_finished, size=(160, 50))


def test_a_run_that_fails_while_watched_opens_the_error_modal(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        # a run this TUI launched (one started elsewhere only notifies: test_failed_run_notice)
        pilot.app.started_runs = {run.path.resolve()}
        with open(run.events, "a") as f:
            f.write(_event("error", T0 + 999, error_type="RuntimeError",
                           message="CUDA out of memory", traceback=TRACEBACK,
                           user_error=False))
        run.update_meta(status="failed", exit_code=1)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ErrorScreen),
                       what="the error modal")
        assert "CUDA out of memory" in pilot.app.screen.report.message
        await pilot.press("escape")
        assert "CUDA out of memory" in text_of(screen.query_one("#banner"))
        assert "FAILED" in header_text(screen)

    run_pilot(MonitorHost(run.path), scenario, size=(160, 50))


def test_an_empty_run_waits_politely(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="fresh")
    run.write_meta({"schema": 1, "id": "fresh", "status": "starting", "pid": os.getpid(),
                    "host": socket.gethostname()})

    async def scenario(pilot: Any) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.snapshot is not None and
                       screen.snapshot.status == "starting" and not screen.snapshot.loading,
                       what="run.json and the (missing) events")
        await pilot.pause()
        assert "no training step yet" in header_text(screen)
        assert "no train event yet" in text_of(screen.query_one("#loss-plot"))
        # said once in the Eval pane (the plot), not again by the table under it
        assert "no evaluation yet" in text_of(screen.query_one("#ap-plot"))
        shown = [w for w in screen.query_one("#pane-eval").query("*")
                 if w.display and "no evaluation yet" in text_of(w)]
        assert len(shown) == 1, shown
        assert "waiting" in text_of(screen.query_one("#sys-waiting"))

    run_pilot(MonitorHost(run.path), scenario, size=(120, 40))


def test_format_duration() -> None:
    assert format_duration(3725.9) == "1:02:05"
    assert format_duration(90_061) == "1d 1:01:01"
    assert format_duration(None) == "-" and format_duration(float("nan")) == "-"
