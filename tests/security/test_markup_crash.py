"""Point 3: ``[/]`` (or any markup) in a run.json, an event or a dataset's class names is
text: the TUI starts and shows it, the monitor shows it, and the headless console's exit
code is how the run ended, whatever it printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.protocol.events import encode, make_event
from tests.conftest import DEMO_CONFIG, REPO, engine_env
from tests.security.helpers import dettui, out, write_run
from tests.tui.conftest import make_app, plain, run_pilot, wait_for

CLOSE = "[/]"
NAMES = [CLOSE, "[bold]", "[link=file:///etc/passwd]x[/link]", "[@click=app.quit]q[/]"]


def _events(run: Path, *events: dict) -> None:
    with open(run / "events.jsonl", "w", encoding="utf-8") as f:
        for ev in events:
            f.write(encode(ev) + "\n")


def test_tui_starts_with_markup_in_run_json(tmp_path: Path) -> None:
    from tui.widgets.runs_table import RunsTable

    runs = tmp_path / "runs"
    write_run(runs, "r1", trainer=CLOSE, config_path="cfg/[bold]x[@click=app.quit].yml",
              name=NAMES[3])
    app = make_app(runs)

    async def scenario(pilot) -> None:
        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the run in the table")
        cells = [plain(c).strip() for c in table.get_row("r1")]
        assert CLOSE in cells and "[bold]x[@click=app.quit]" in cells

    run_pilot(app, scenario)


def test_monitor_shows_markup_in_events_as_text(tmp_path: Path) -> None:
    from tui.screens.monitor import MonitorScreen
    from tui.widgets.eval_table import EvalTable

    runs = tmp_path / "runs"
    run = write_run(runs, "r1", status="failed", exit_code=1, trainer=CLOSE)
    _events(run,
            make_event("start", trainer=CLOSE, epochs=1, iters_per_epoch=1, max_iters=1),
            make_event("train", epoch=0, iter=1, iters_per_epoch=1, max_iters=1, loss=1.0,
                       losses={CLOSE: 1.0}, lr=0.01),
            make_event("eval", epoch=0, iter=1, model=CLOSE, metrics={"AP": 0.5},
                       per_class={name: 0.5 for name in NAMES}),
            make_event("system", cpu_percent=1.0, gpus=[{"index": 0, "name": CLOSE}],
                       gpu_status=CLOSE),
            make_event("error", error_type=CLOSE, message=f"bad {CLOSE}", user_error=False),
            make_event("status", status="failed"))
    app = make_app(runs)

    async def scenario(pilot) -> None:
        await pilot.pause(0.3)
        app.push_screen(MonitorScreen(run))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen)
                       and app.screen.snapshot is not None
                       and not app.screen.snapshot.loading, what="the monitor")
        await pilot.pause(1.0)
        assert isinstance(app.screen, MonitorScreen)
        classes = app.screen.query_one(EvalTable).query_one("#eval-classes")
        shown = {plain(classes.get_row_at(i)[0]).strip() for i in range(classes.row_count)}
        assert shown == set(NAMES)
        svg = app.export_screenshot().replace("&#160;", " ")
        assert "[/]: bad [/]" in svg  # the banner: error type and message

    run_pilot(app, scenario, size=(160, 50))


def test_attach_exit_code_is_the_runs_not_the_printing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = write_run(runs, "r1", status="finished", exit_code=0)
    _events(run,
            make_event("start", trainer=CLOSE, device=CLOSE, epochs=1, iters_per_epoch=1,
                       max_iters=1),
            make_event("train", epoch=0, iter=1, iters_per_epoch=1, max_iters=1, loss=1.0,
                       losses={CLOSE: 1.0}, lr=0.01),
            make_event("log", level="warning", message=CLOSE),
            make_event("eval", epoch=0, iter=1, model=CLOSE, metrics={"AP": 0.5},
                       per_class={name: 0.5 for name in NAMES}, summary=[CLOSE]),
            make_event("checkpoint", kind="best", path=f"/x/{CLOSE}", epoch=0, iter=1),
            make_event("status", status="finished"))
    proc = dettui("attach", "r1", "--runs-dir", str(runs))
    assert proc.returncode == 0, out(proc)
    assert "Traceback" not in out(proc) and "MarkupError" not in out(proc)
    for name in NAMES:
        assert name in out(proc)


@pytest.mark.slow
def test_headless_run_with_markup_class_names_exits_as_the_run_ended(tmp_path: Path) -> None:
    """A real tiny training whose dataset's category names are markup: the engine finishes,
    and so must the console, with exit code 0, after printing the per-class table."""
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "engine", "shapes", str(data), "--train", "4",
                    "--val", "2", "--seed", "1", "--image-size", "64"], cwd=REPO,
                   env=engine_env(), check=True, capture_output=True)
    for split in ("train", "val"):
        anno = data / "annotations" / f"{split}.json"
        coco = json.loads(anno.read_text())
        for cat, name in zip(coco["categories"], NAMES):
            cat["name"] = name
        anno.write_text(json.dumps(coco))
    opts = []
    for section, split in (("TrainDataset", "train"), ("EvalDataset", "val")):
        opts += ["-o", f"{section}.dataset_dir={data}", "-o", f"{section}.image_dir={split}",
                 "-o", f"{section}.anno_path=annotations/{split}.json",
                 "-o", f"{section}.synthesize=null"]
    opts += ["-o", "epoch=1", "-o", "epoch_iter=1", "-o", "worker_num=0",
             "-o", "TrainReader.batch_size=2", "-o", "EvalReader.batch_size=2",
             "-o", "model.min_size=64", "-o", "model.max_size=64",
             "-o", "LearningRate.warmup_iters=1"]
    runs = tmp_path / "runs"
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(runs), *opts,
                  timeout=240)
    meta = json.loads(next(runs.glob("*/run.json")).read_text())
    assert meta["status"] == "finished" and meta["exit_code"] == 0, out(proc)
    assert proc.returncode == 0, out(proc)
    assert "per-class AP" in out(proc) and CLOSE in out(proc)
