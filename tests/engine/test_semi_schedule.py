"""The one teacher schedule of DenseTeacher, ARSL and Semi-RT-DETR (docs/semi-schedule.md).

- nothing happens to the teacher before its start (``ema_start_iters``, ARSL's
  ``SEMISUPNET.BURN_UP_STEP``); at the start it becomes a copy of the student, then it
  follows by EMA;
- a teacher loaded with ``pretrain_teacher_weights`` is replaced by that copy unless the
  start is 0, where it is kept and followed by EMA from the first step;
- DenseTeacher distils from the teacher as it stands once past ``semi_start_iters``, even
  before the teacher's start (PaddleDetection's ``Trainer_DenseTeacher``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.protocol.events import read_events
from tests.conftest import semi_overrides, train_in_process
from tests.engine.test_rtdetr import TINY
from tests.engine.test_semi_views import ARSL, DENSE, SEMI_RTDETR, build

METHODS = {
    "DenseTeacher": (DENSE, lambda start: [f"ema_start_iters={start}"]),
    "ARSL": (ARSL, lambda start: [f"SEMISUPNET.BURN_UP_STEP={start}"]),
    "Semi_RTDETR": (SEMI_RTDETR, lambda start: [
        f"ema_start_iters={start}", *[f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY.items()]]),
}


@pytest.mark.parametrize("start", [0, 3])
@pytest.mark.parametrize("method", list(METHODS))
def test_a_loaded_teacher_is_replaced_at_the_start_unless_it_is_zero(
        tmp_path: Path, method: str, start: int) -> None:
    config, keys = METHODS[method]
    trainer = build(config, tmp_path / "data", *keys(start))
    assert trainer.ema_start == start
    student = {k: v.clone() for k, v in trainer.model_without_ddp.state_dict().items()}
    loaded = {k: v + 0.5 if v.dtype.is_floating_point else v for k, v in student.items()}
    torch.save(student, tmp_path / "student.pt")
    torch.save(loaded, tmp_path / "teacher.pt")
    trainer.load_semi_weights(str(tmp_path / "teacher.pt"), str(tmp_path / "student.pt"))
    assert trainer.teacher.started  # a teacher from the first step: evaluated, labelling
    name = next(k for k, v in student.items() if v.dtype.is_floating_point)
    d = trainer.teacher.decay
    for it in range(5):
        trainer.follow_student(it)
        teacher = trainer.teacher.module.state_dict()[name]
        if start == 0:   # kept, then followed: d**(it+1) of the loaded offset is left
            expected = student[name] + 0.5 * d ** (it + 1)
        elif it < start:  # untouched before the start
            expected = loaded[name]
        else:            # the student's copy from the start on (the student does not move)
            expected = student[name]
        assert torch.allclose(teacher, expected, atol=1e-5), (it, method)
    assert trainer.teacher.started_at == (0 if start == 0 else start)


def test_denseteacher_distils_from_the_initial_teacher_before_ema_start(
        tmp_path: Path) -> None:
    # semi_start 1, ema_start 4 of 3 iterations: the teacher never becomes the student's
    # copy, the student distils from the initial one (its own initial weights) from
    # iteration 2 on, with the linear ramp (2 - 1) / 1 = 1 of the config's unsup_weight 0.25.
    code, run = train_in_process(
        tmp_path / "runs", DENSE,
        semi_overrides(tmp_path / "data", epochs=1, epoch_iter=3, semi_start=1, ema_start=4),
        no_eval=True)
    assert code == 0
    trains = [e for e in read_events(run / "events.jsonl") if e["type"] == "train"]
    assert [e["phase"] for e in trains] == ["burn_in", "semi", "semi"]
    assert [e["stats"]["unsup_weight"] for e in trains] == [0.0, 0.0, 0.25]
    assert trains[1]["losses"]["distill_loss_cls"] == 0.0
    assert trains[2]["losses"]["distill_loss_cls"] > 0
    assert trains[2]["losses"]["distill_loss_box"] > 0
    assert all(e["teacher"] == "not started" for e in trains)
