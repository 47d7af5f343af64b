"""What ``SemiTrainer`` holds once for the three semi-supervised methods: the teacher's
decay each method names (``teacher_decay``), which model is evaluated first
(``inference_on``), and the unlabeled terms every step reports (``with_unsup_terms``).

Trainers are built, not trained (a few seconds each).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.engine.test_rtdetr import TINY
from tests.engine.test_semi_views import ARSL, DENSE, SEMI_RTDETR, build

RTDETR_TINY = [f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY.items()]
# Each method's own teacher decay set to 0.75, the use_ema decay (top-level ema_decay) to
# 0.5 where it is not the teacher's: a method reading the wrong key gets the wrong decay.
METHODS = {
    "DenseTeacher": (DENSE, ["ema_decay=0.75"], "DenseTeacher.test_cfg.inference_on"),
    "ARSL": (ARSL, ["SEMISUPNET.EMA_KEEP_RATE=0.75", "ema_decay=0.5"], None),
    "Semi_RTDETR": (SEMI_RTDETR, [*RTDETR_TINY, "DETR_SSOD.train_cfg.ema_decay=0.75",
                                  "ema_decay=0.5"], "DETR_SSOD.test_cfg.inference_on"),
}


def order(trainer) -> list[str]:
    return [which for _, which in trainer.eval_models()]


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_names_its_teacher_decay_and_what_is_evaluated_first(
        tmp_path: Path, method: str) -> None:
    config, keys, inference_key = METHODS[method]
    trainer = build(config, tmp_path / "data", *keys)
    assert trainer.teacher.decay == 0.75
    assert order(trainer) == ["student"]  # no teacher yet
    trainer.teacher.copy_from(trainer.model_without_ddp, 0)
    assert order(trainer) == ["teacher", "student"]  # the default: the teacher decides
    if inference_key is not None:
        trainer = build(config, tmp_path / "data", *keys, f"{inference_key}=student")
        trainer.teacher.copy_from(trainer.model_without_ddp, 0)
        assert order(trainer) == ["student", "teacher"]


def test_unlabeled_terms_are_weighted_or_zero_and_the_weight_is_a_stat(
        tmp_path: Path) -> None:
    trainer = build(DENSE, tmp_path / "data")
    sup = {"loss_cls": torch.tensor(2.0), "loss_box": torch.tensor(3.0)}
    terms = trainer.unsup_terms
    assert terms == ("distill_loss_cls", "distill_loss_box", "distill_loss_quality")
    # burn-in: the step computed no unlabeled term; every one is reported as 0
    losses = trainer.with_unsup_terms(sup, None, 0.0)
    assert list(losses) == [*sup, *terms]
    assert [float(losses[k]) for k in terms] == [0.0, 0.0, 0.0]
    assert trainer.step_stats["unsup_weight"] == 0.0
    unsup = {k: torch.tensor(float(i + 1)) for i, k in enumerate(terms)}
    losses = trainer.with_unsup_terms(sup, unsup, 0.25)
    assert [float(losses[k]) for k in terms] == [0.25, 0.5, 0.75]
    assert float(losses["loss_box"]) == 3.0  # the supervised terms as given
    assert trainer.step_stats["unsup_weight"] == 0.25
