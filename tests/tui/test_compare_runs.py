"""Compare: the config diff and curve reading (pure), and the screen from the runs table."""

from __future__ import annotations

from pathlib import Path

from tests.tui.conftest import make_app, plain, run_pilot, wait_for
from tui.screens.compare import MISSING, CompareScreen, config_diff, flatten, read_run_curves
from tui.widgets.curves import CurvePlot


def test_flatten_and_diff() -> None:
    a = {"epoch": 12, "LearningRate": {"base_lr": 0.01, "schedule": "cosine"},
         "TrainReader": {"sample_transforms": [{"Resize": {"target_size": 160}}]}}
    b = {"epoch": 12, "LearningRate": {"base_lr": 0.02, "schedule": "cosine"},
         "TrainReader": {"sample_transforms": [{"Resize": {"target_size": 320}}]},
         "use_ema": True}
    assert flatten(a)["LearningRate.base_lr"] == 0.01
    diff = dict(config_diff([a, b]))
    assert diff["LearningRate.base_lr"] == [0.01, 0.02]
    assert diff["TrainReader.sample_transforms"][1] == [{"Resize": {"target_size": 320}}]
    assert diff["use_ema"] == [MISSING, True]
    assert "epoch" not in diff and "LearningRate.schedule" not in diff
    assert config_diff([a, a]) == []


def test_read_run_curves(three_runs) -> None:
    alpha = read_run_curves(three_runs[0].path)
    iters, losses = alpha.loss["loss"]
    assert iters == [float(i) for i in range(1, 11)]
    assert losses[0] > losses[-1]
    assert set(alpha.loss) == {"loss", "loss_cls", "loss_box"}
    assert alpha.eval_model == "model"
    assert alpha.metrics["AP"] == ([5.0, 10.0], [0.206, 0.412])
    assert alpha.config["LearningRate"]["base_lr"] == 0.002
    charlie = read_run_curves(three_runs[2].path)
    assert charlie.metrics == {} and charlie.eval_model is None


def test_a_resume_rewinds_the_curves_to_its_start(three_runs) -> None:
    from engine.protocol.events import EventWriter

    run = three_runs[0]  # 10 train iterations, evals at 5 and 10
    with EventWriter(run.events) as events:
        events.write("start", start_iter=5)  # resumed from the checkpoint of iteration 5
        events.write("train", iter=6, loss=9.0, losses={"loss_cls": 5.0, "loss_box": 4.0})
    curves = read_run_curves(run.path)
    assert curves.loss["loss"][0] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert curves.loss["loss"][1][-1] == 9.0
    assert curves.metrics["AP"][0] == [5.0]


def test_compare_selected_runs_from_the_table(runs_dir: Path, three_runs) -> None:
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        from tui.widgets.runs_table import RunsTable

        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("c")  # nothing selected: a hint, no screen
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("space", "space", "space")  # all three, cursor moves down
        assert len(table.selected) == 3
        assert "3 selected" in str(app.home.query_one("#runs-panel").border_title)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        await wait_for(pilot, lambda: len(screen.runs) == 3, what="runs read")
        await pilot.pause()
        grid = screen.query_one("#compare-table")
        rows = {plain(grid.get_row_at(i)[0]).strip(): [plain(c).strip() for c in
                                                       grid.get_row_at(i)[1:]]
                for i in range(grid.row_count)}
        # Columns follow the table's order: charlie, bravo, alpha.
        assert rows["LearningRate.base_lr"] == ["0.002", "0.01", "0.002"]
        assert rows["TrainReader.batch_size"] == ["16", "8", "8"]
        assert rows["ssod_method"] == ["—", "DenseTeacher", "—"]
        assert rows["best AP"] == ["—", "0.105", "0.412"]
        assert rows["status"] == ["interrupted", "failed", "finished"]
        assert "epoch" not in rows and "num_classes" not in rows  # same everywhere
        loss = screen.query_one("#compare-loss", CurvePlot)
        assert [c.name for c in loss.curves] == [r.id for r in screen.runs]
        metric = screen.query_one("#compare-metric", CurvePlot)
        assert len(metric.curves) == 2  # charlie never evaluated
        await pilot.press("t")
        assert "loss_cls" in str(loss.border_title)
        await pilot.press("m")
        assert metric.border_title.startswith("AP50")
        await pilot.press("a")
        assert grid.row_count > len(rows)  # every key now
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)

    run_pilot(app, scenario)


def test_a_long_value_keeps_the_other_runs_columns_in_reach(runs_dir: Path, make_runs) -> None:
    """Issue 19.6: one ~300-character value (a list of augmentations) once made the first
    run's column so wide that the second run's needed ~330 presses of → to reach."""
    from textual.widgets import Static

    from tui.screens.compare import MAX_COLUMN, ValueScreen, value_text

    strong = [{"RandomFlip": {"prob": 0.5}}, {"RandomDistort": {"brightness": [0.6, 1.4],
                                                                  "contrast": [0.6, 1.4]}},
              {"RandomErasing": {"prob": 0.7, "scale": [0.05, 0.2], "ratio": [0.3, 3.3]}},
              {"RandomErasing": {"prob": 0.5, "scale": [0.02, 0.2], "ratio": [0.1, 6.0]}},
              {"RandomErasing": {"prob": 0.3, "scale": [0.02, 0.2], "ratio": [0.05, 8.0]}}]
    long_run = make_runs("20250101-100000-long",
                         extra_config={"SemiTrainReader": {"strong_aug": strong}})
    short_run = make_runs("20250101-110000-short", offset=3600, lr=0.01)
    app = make_app(runs_dir)

    async def scenario(pilot) -> None:
        app.push_screen(CompareScreen([long_run.path, short_run.path]))
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen)
                       and len(app.screen.runs) == 2, what="runs read")
        screen = app.screen
        await pilot.pause(0.3)
        grid = screen.query_one("#compare-table")
        widths = [c.width for c in grid.columns.values()]
        assert max(widths[1:]) <= MAX_COLUMN, widths
        assert sum(widths) + 3 * 2 <= 120  # every column on screen: no → to press
        keys = [plain(grid.get_row_at(i)[0]).strip() for i in range(grid.row_count)]
        row = keys.index("SemiTrainReader.strong_aug")
        assert len(value_text(screen.rows[row][1][0])) > 300  # the value is that long
        grid.move_cursor(row=row)
        await pilot.press("enter")  # the whole value on demand
        await wait_for(pilot, lambda: isinstance(app.screen, ValueScreen), what="the values")
        shown = " ".join(plain(s.render(), width=400) for s in app.screen.query(Static))
        assert '"RandomErasing": {"prob": 0.3' in shown and "20250101-100000-long" in shown
        await pilot.press("escape")
        assert isinstance(app.screen, CompareScreen)

    run_pilot(app, scenario, size=(120, 40))
