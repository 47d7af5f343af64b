"""Snapshots of the monitor's semi pane at 80x24: a semi-supervised run (phase line,
pseudo-label trends) and a co-tuning run (the class relationship).

The runs are fixed (every value and time), written in the engine's event shape
(``test_semi_runs.test_fixed_semi_run_has_the_engine_event_shape`` holds them to a real
run's) and with the engine's relationship format (``relationship_summary``). Regenerate
after an intended change with ``python -m pytest tests/tui/test_snapshots_semi.py
--snapshot-update`` and look at the SVGs before committing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from engine.models.relationship import relationship_summary
from engine.protocol.events import encode, make_event
from engine.protocol.rundir import RunDirectory
from tests.tui.conftest import tables_settled, wait_for
from tests.tui.test_monitor import MonitorHost
from tui.screens.monitor import MonitorScreen

T0 = 1_735_725_600.0
SEMI_START, TEACHER_START, ITERS = 30, 20, 100
CLASSES = ["circle", "square", "triangle", "cross"]


def _put(lines: list[str], kind: str, t: float, **fields: Any) -> None:
    event = make_event(kind, **fields)
    event["t"] = t
    lines.append(encode(event) + "\n")


def _meta(run: RunDirectory, trainer: str, best: dict[str, Any]) -> None:
    run.write_meta({
        "schema": 1, "id": run.id, "name": run.id.split("-")[-1],
        "config_path": "configs/x.yml", "trainer": trainer, "status": "finished",
        "host": "gpu-box", "pid": 1, "created": "2025-01-01T10:00:00+00:00",
        "ended": "2025-01-01T10:30:00+00:00", "best": best})


def train_event(it: int) -> dict[str, Any]:
    """The fields of a DenseTeacher train event at step ``it`` (as MetricsLogger writes
    them, with the trainer's ``train_event_fields``)."""
    semi = it > SEMI_START
    burn_in = it < SEMI_START  # the step after this one is still burn-in
    weight = min(1.0, (it - SEMI_START) / 20) if semi else 0.0
    stats = {"unsup_weight": weight}
    if semi:
        stats = {"pseudo_points_per_image": 12 + 6 * math.sin(it / 9),
                 "pseudo_score": 0.3 + 0.4 * (it - SEMI_START) / (ITERS - SEMI_START),
                 "unsup_weight": weight}
    distill = (0.8 / (1 + 0.05 * (it - SEMI_START))) * weight if semi else 0.0
    return {"epoch": (it - 1) // 10, "iter": it, "epoch_iter": (it - 1) % 10 + 1,
            "iters_per_epoch": 10, "max_iters": ITERS, "loss": 3.0 / (1 + 0.05 * it) + distill,
            "losses": {"classification": 1.5 / (1 + 0.05 * it),
                       "bbox_regression": 1.0 / (1 + 0.05 * it),
                       "bbox_ctrness": 0.5 / (1 + 0.05 * it),
                       "distill_loss_cls": distill, "distill_loss_box": distill / 2,
                       "distill_loss_quality": distill / 4},
            "lr": 0.01, "batch_time": 0.5, "data_time": 0.05, "ips": 16.0,
            "eta": 0.5 * (ITERS - it), "memory": None, "stats": stats,
            "phase": "semi" if it - 1 >= SEMI_START else "burn_in",
            "next_phase": "semi" if burn_in else None,
            "next_phase_iter": SEMI_START if burn_in else None,
            "teacher": "started" if it > TEACHER_START else "not started",
            "teacher_start_iter": TEACHER_START}


def write_fixed_semi_run(runs_dir: Path) -> RunDirectory:
    run = RunDirectory.create(runs_dir, run_id="20250101-100000-semi")
    _meta(run, "DenseTeacher", {"metric": "AP", "value": 0.31, "epoch": 10,
                                "checkpoint": "best.pt", "model": "teacher"})
    lines: list[str] = []
    _put(lines, "status", T0, status="running", message="")
    _put(lines, "start", T0, trainer="DenseTeacher", world_size=1, device="cpu",
         resume_from=None, epochs=10, iters_per_epoch=10, max_iters=ITERS,
         num_params=1_498_714, start_epoch=0, start_iter=0, train_images=180,
         eval_images=200, classes=CLASSES, phase="burn_in", semi_start_iter=SEMI_START,
         teacher_start_iter=TEACHER_START)
    for it in range(1, ITERS + 1):
        _put(lines, "train", T0 + 10 * it, **train_event(it))
        if it % 10 == 0 and it > TEACHER_START:
            for model, gain in (("teacher", 0.01), ("student", 0.0)):
                ap = 0.03 * it / 10 + gain
                _put(lines, "eval", T0 + 10 * it, epoch=it // 10 - 1, iter=it, model=model,
                     metrics={"AP": ap, "AP50": ap * 1.6, "AP75": ap * 0.9, "APs": ap / 2,
                              "APm": ap, "APl": ap * 1.2},
                     per_class={c: ap for c in CLASSES}, eval_time=1.0)
    _put(lines, "status", T0 + 1800, status="finished", message="")
    run.events.write_text("".join(lines))
    run.train_log.write_text("training\n")
    run.stderr_log.write_text("")
    return run


def write_fixed_cot_run(runs_dir: Path) -> RunDirectory:
    run = RunDirectory.create(runs_dir, run_id="20250101-100000-cot")
    _meta(run, "CoTuning", {"metric": "AP", "value": 0.42, "epoch": 3,
                            "checkpoint": "best.pt", "model": "model"})
    lines: list[str] = []
    _put(lines, "start", T0, trainer="CoTuning", epochs=3, iters_per_epoch=5, max_iters=15)
    run.events.write_text("".join(lines))
    matrix = torch.tensor([[0.61, 0.20, 0.05, 0.10], [0.15, 0.70, 0.04, 0.06],
                           [0.08, 0.12, 0.18, 0.52], [0.25, 0.25, 0.25, 0.25]])
    summary = relationship_summary(matrix, torch.tensor([10, 10, 10, 0]),
                                   ["ring", "frame", "diamond", "star"], CLASSES,
                                   source_names_from="checkpoint")
    run.cot_relationship.write_text(json.dumps(summary, indent=1) + "\n")
    run.train_log.write_text("training\n")
    run.stderr_log.write_text("")
    return run


async def _semi_pane(pilot: Any) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, MonitorScreen)
    await wait_for(pilot, lambda: screen.snapshot is not None and not screen.snapshot.loading
                   and screen.run_kind is not None, what="the run read")
    await pilot.press("5")
    screen._refresh_plots(force=True)
    await pilot.pause(0.2)
    await wait_for(pilot, lambda: tables_settled(screen), what="the tables measured")


def test_semi_pane_80x24(snap_compare: Any, tmp_path: Path) -> None:
    run = write_fixed_semi_run(tmp_path / "runs")
    assert snap_compare(MonitorHost(run.path), terminal_size=(80, 24), run_before=_semi_pane)


def test_cotuning_pane_80x24(snap_compare: Any, tmp_path: Path) -> None:
    run = write_fixed_cot_run(tmp_path / "runs")
    assert snap_compare(MonitorHost(run.path), terminal_size=(80, 24), run_before=_semi_pane)
