"""Semi-supervised runs in the TUI and the console, on the events of a real DenseTeacher run.

One real 4-iteration DenseTeacher run (burn-in for 2 steps, then the semi phase; teacher
from step 2; teacher and student evaluated after each of 2 epochs) is started once per
module through ``dettui run --headless``: its console output is the headless console under
test, its run folder what the monitor reads.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.events import read_events
from tests.conftest import PYTHON, REPO, SEMI_DIR, engine_env, semi_overrides
from tests.tui.conftest import plain, run_pilot, wait_for
from tests.tui.test_monitor import MonitorHost, header_text, loaded
from tui.cli.headless import loss_line
from tui.runs.runmodel import RunModel
from tui.runs.semiinfo import phase_changed, phase_line, semi_schedule
from tui.widgets.curves import CurvePlot
from tui.widgets.semi_panel import SemiPanel, sparkline

DENSE = SEMI_DIR / "denseteacher" / "denseteacher_fcos_tiny_shapes.yml"


class SemiRun:
    def __init__(self, path: Path, console: str) -> None:
        self.path = path
        self.console = console
        self.events = read_events(path / "events.jsonl")


@pytest.fixture(scope="module")
def semi_run(tmp_path_factory: pytest.TempPathFactory) -> SemiRun:
    """A real DenseTeacher run started with ``dettui run --headless`` (console captured)."""
    root = tmp_path_factory.mktemp("semi")
    argv = [PYTHON, "-m", "tui.cli", "run", str(DENSE), "--headless", "--runs-dir",
            str(root / "runs"), "--name", "dense"]
    # unsup_weight 1 (the shapes config has 0.25): the console test reads its half-ramp, 0.5.
    for o in [*semi_overrides(root / "data", epochs=2, epoch_iter=2, semi_start=2, ema_start=1),
              "DenseTeacher.train_cfg.unsup_weight=1.0"]:
        argv += ["-o", o]
    proc = subprocess.run(argv, cwd=REPO, env=engine_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = (root / "runs").iterdir()
    return SemiRun(run, proc.stdout)


def test_the_engine_says_when_each_phase_starts(semi_run: SemiRun) -> None:
    (start,) = [e for e in semi_run.events if e["type"] == "start"]
    # steps done before the phase: the first semi step is iteration 3, the teacher's 2
    assert (start["phase"], start["semi_start_iter"], start["teacher_start_iter"]) == (
        "burn_in", 2, 1)
    trains = [e for e in semi_run.events if e["type"] == "train"]
    assert [e["phase"] for e in trains] == ["burn_in", "burn_in", "semi", "semi"]
    schedule = semi_schedule(start, None)
    assert phase_line(schedule) == ("phase: burn-in → semi at iter 3 (in 3 iters) · "
                                    "teacher from iter 2")
    assert phase_line(semi_schedule(start, trains[1])) == (
        "phase: burn-in → semi at iter 3 (in 1 iter) · teacher from iter 2")
    assert phase_line(semi_schedule(start, trains[-1])) == (
        "phase: semi (since iter 3) · teacher from iter 2")
    assert phase_changed("burn_in", trains[2]) == "phase: burn-in → semi at iter 3"
    assert phase_changed("semi", trains[3]) is None


def test_headless_console_prints_the_phase_change_and_both_models_tables(
        semi_run: SemiRun) -> None:
    lines = semi_run.console.splitlines()
    assert "phase: burn-in → semi at iter 3 (in 3 iters) · teacher from iter 2" in lines
    change = lines.index("phase: burn-in → semi at iter 3")
    # the change comes right before the first semi step's line
    assert lines[change + 1].startswith("epoch 2 iter 3/4")
    assert sum("phase:" in line for line in lines) == 2
    semi_step = next(line for line in lines if line.startswith("epoch 2 iter 4/4"))
    assert "distill_loss_cls" in semi_step and "pseudo points/img" in semi_step
    assert "teacher score" in semi_step and "unsup weight 0.5" in semi_step
    for epoch in (1, 2):
        for model in ("teacher", "student"):
            assert f"per-class AP ({model}, epoch {epoch})" in lines
        side_by_side = lines.index(f"AP by model (epoch {epoch})")
        rows = [line.split("│")[0].strip() for line in lines[side_by_side + 3:side_by_side + 5]]
        assert rows == ["teacher", "student"]
    best = next(line for line in lines if line.startswith("best AP:"))
    assert "(teacher, epoch" in best


def test_loss_line_shows_pseudo_label_stats(semi_run: SemiRun) -> None:
    last = [e for e in semi_run.events if e["type"] == "train"][-1]
    line = loss_line(last)
    assert f"pseudo points/img {last['stats']['pseudo_points_per_image']:.3g}" in line


def test_run_model_keeps_pseudo_label_stats_as_series(semi_run: SemiRun) -> None:
    model = RunModel(semi_run.path)
    model.catch_up()
    snap = model.snapshot()
    assert set(snap.stats) == {"unsup_weight", "pseudo_points_per_image", "pseudo_score"}
    assert "pseudo_score" not in snap.terms  # stats are not loss curves
    weights = snap.train["stats.unsup_weight"]
    assert list(weights[:3]) == [0.0, 0.0, 0.0] and weights[3] > 0
    points = snap.train["stats.pseudo_points_per_image"]
    assert points.size == 4 and points[3] > 0  # NaN until the semi phase reports it
    assert snap.relationship is None and snap.relationship_error is None  # not co-tuning


def test_monitor_shows_phase_teacher_and_student_and_pseudo_label_stats(
        semi_run: SemiRun) -> None:
    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        await wait_for(pilot, lambda: screen.run_kind == "semi", what="a semi run")
        phase = str(screen.query_one("#phase").render())
        assert phase.startswith("phase: semi (since iter 3) · teacher from iter 2")
        assert "pseudo points/img" in phase
        assert "best AP" in header_text(screen) and "teacher" in header_text(screen)
        screen._refresh_plots(force=True)
        ap = screen.query_one("#ap-plot", CurvePlot)
        assert [c.name for c in ap.curves] == ["teacher AP", "student AP"]
        assert [list(c.xs) for c in ap.curves] == [[2.0, 4.0], [2.0, 4.0]]
        summary = screen.query_one("#eval-summary")
        assert [str(summary.get_row_at(i)[0]).strip() for i in range(2)] == [
            "teacher", "student"]
        assert "5 Semi" in str(screen.query_one("#tabs").render())
        await pilot.press("5")
        await pilot.pause()
        panel = screen.query_one(SemiPanel)
        assert screen.pane == "semi" and panel.region.height > 10
        body = plain(panel.query_one("#semi-body").content)
        for label in ("unsup weight", "pseudo points/img", "teacher score"):
            assert label in body
        assert "phase: semi (since iter 3)" in plain(panel.query_one("#semi-phase").content)
        keys = [b.binding.key_display for b in screen.active_bindings.values()
                if b.binding.show]
        assert "1-5" in keys and "1-4" not in keys
        await pilot.press("1")
        assert screen.pane == "loss"

    run_pilot(MonitorHost(semi_run.path), scenario, size=(80, 24))


def test_monitor_follows_a_live_run_from_burn_in_into_the_semi_phase(
        semi_run: SemiRun, tmp_path: Path) -> None:
    """The real run's events written in two goes: first up to the last burn-in step, then
    the rest, as a live engine would."""
    run = tmp_path / semi_run.path.name
    shutil.copytree(semi_run.path, run, ignore=shutil.ignore_patterns("checkpoints"))
    lines = (semi_run.path / "events.jsonl").read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"phase":"semi"' in line
               and '"type":"train"' in line)
    (run / "events.jsonl").write_text("".join(lines[:cut]))

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        await wait_for(pilot, lambda: screen.run_kind == "semi", what="a semi run")
        await wait_for(pilot, lambda: str(screen.query_one("#phase").render()).startswith(
            "phase: burn-in → semi at iter 3 (in 1 iter)"), what="the burn-in line")
        with open(run / "events.jsonl", "a") as f:
            f.write("".join(lines[cut:]))
        await wait_for(pilot, lambda: str(screen.query_one("#phase").render()).startswith(
            "phase: semi (since iter 3)"), what="the semi phase")

    run_pilot(MonitorHost(run), scenario, size=(120, 40))


def test_a_supervised_run_has_no_semi_pane(tmp_path: Path) -> None:
    from tests.tui.conftest import make_run

    run = make_run(tmp_path, "20250101-100000-plain")

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        await pilot.pause(0.3)
        assert screen.run_kind is None and not screen.has_class("-semi")
        assert "5" not in str(screen.query_one("#tabs").render())
        await pilot.press("5")  # no such pane here
        assert screen.pane == "loss"
        keys = [b.binding.key_display for b in screen.active_bindings.values()
                if b.binding.show]
        assert "1-4" in keys and "1-5" not in keys

    run_pilot(MonitorHost(run.path), scenario, size=(80, 24))


def test_sparkline_spans_lowest_to_highest() -> None:
    assert sparkline([1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0], 4) == "▁▃▆█"
    assert sparkline([1, 2], [float("nan"), float("nan")], 4) == ""
    assert sparkline([1, 2, 3], [0.5, 0.5, 0.5], 3) == "▁▁▁"
    # a stat reported from the semi phase on leaves the burn-in cells blank
    assert sparkline([1, 2, 3, 4], [float("nan"), float("nan"), 1.0, 2.0], 8) == "  ▁█"
    assert len(sparkline(range(1000), [float(i % 7) for i in range(1000)], 24)) == 24


def test_fixed_semi_run_has_the_engine_event_shape(semi_run: SemiRun, tmp_path: Path) -> None:
    """The fixed run of the snapshots holds the fields the engine writes, no more, no less."""
    from tests.tui.test_snapshots_semi import write_fixed_semi_run

    fixed = read_events(write_fixed_semi_run(tmp_path).events)
    for kind in ("start", "train", "eval"):
        real = [e for e in semi_run.events if e["type"] == kind]
        made = [e for e in fixed if e["type"] == kind]
        want = {k for k in real[0] if k not in ("summary", "stats", "run_id")}  # optional
        assert {k for k in made[0]} - {"summary", "stats"} >= want, kind
        if kind == "train":
            assert set(made[-1]) == set(real[-1])
            assert set(made[-1]["stats"]) == set(real[-1]["stats"])
            assert set(made[0]["stats"]) == set(real[0]["stats"])


@pytest.mark.parametrize(("stats", "line"), [
    ({"pseudo_points_per_image": 0.5, "pseudo_score": 0.0245, "unsup_weight": 0.5},
     "pseudo points/img 0.5 · teacher score 0.0245"),  # DenseTeacher
    ({"pseudo_pos_per_image": 3.0, "pseudo_ambiguous_per_image": 1.0,
      "pseudo_mined_per_image": 0.5, "pseudo_pos_score": 0.8, "unsup_weight": 1.0},
     "pseudo pos/img 3 · teacher score (pos) 0.8"),  # ARSL
    ({"pseudo_boxes_per_image": 2.0, "pseudo_images_kept": 0.75, "pseudo_score": 0.81,
      "unsup_weight": 1.0}, "pseudo boxes/img 2 · teacher score 0.81"),  # Semi_RTDETR
    ({"unsup_weight": 0.0}, ""),
])
def test_phase_line_shows_labels_per_image_and_the_teacher_score(stats: dict,
                                                                  line: str) -> None:
    from tui.widgets.semi_panel import pseudo_summary

    assert pseudo_summary({"stats": stats}) == line
