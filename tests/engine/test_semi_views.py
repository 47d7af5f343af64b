"""Which network sees which view, and which number weights which term, in one real step of
each semi-supervised trainer.

A real trainer is built from its shapes config (tiny data, tiny models); one semi step is
run on a real batch whose unlabeled views are made tell-apart (the weak views a constant
0.25 image, the strong ones a constant 0.75 one), with forward pre-hooks on the student and
the teacher recording the images each was given. The method's rule: the teacher labels the
weak views, the student learns on the strong views (and on the labeled ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS

from engine.config import load_and_validate
from engine.data.semi import SemiBatch
from engine.env import DistEnv
from engine.recorder import RunRecorder
from engine.ssod.dense_teacher import dense_teacher_losses
from engine.ssod.fcos_dense import dense_outputs
from engine.trainers import build_trainer
from engine.trainers.semi import SemiTrainer
from tests.conftest import SEMI_DIR, semi_overrides
from tests.engine.test_rtdetr import TINY

DENSE = SEMI_DIR / "denseteacher" / "denseteacher_fcos_tiny_shapes.yml"
ARSL = SEMI_DIR / "arsl" / "arsl_fcos_tiny_shapes.yml"
SEMI_RTDETR = SEMI_DIR / "semi_rtdetr" / "semi_rtdetr_tiny_shapes.yml"
WEAK, STRONG = 0.25, 0.75


def build(config: Path, data: Path, *extra: str, **kw) -> SemiTrainer:
    _, cfg = load_and_validate(config, [*semi_overrides(data, **kw), *extra])
    env = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    torch.manual_seed(0)
    trainer = build_trainer(cfg, env, RunRecorder(None), cfg.to_dict(), seed=0)
    assert isinstance(trainer, SemiTrainer)
    trainer.model.train()
    return trainer


def tell_apart(batch: SemiBatch) -> SemiBatch:
    """The batch with every unlabeled weak view a constant WEAK image and every strong view
    a constant STRONG one (same sizes, same targets)."""
    weak_images, weak_targets = batch.unsup_weak
    strong_images, strong_targets = batch.unsup_strong
    return batch._replace(
        unsup_weak=([torch.full_like(x, WEAK) for x in weak_images], weak_targets),
        unsup_strong=([torch.full_like(x, STRONG) for x in strong_images], strong_targets))


def view_of(image: Tensor) -> str:
    if (image - WEAK).abs().max() < 1e-4:
        return "weak"
    if (image - STRONG).abs().max() < 1e-4:
        return "strong"
    return "labeled"


def entry(network: nn.Module) -> nn.Module:
    """The first module a network's images pass through as they are: FCOS's transform
    (a list of images), RT-DETR's transformers model (the batched input, the images resized
    into it, a constant image staying constant)."""
    return network.transform if isinstance(network, FCOS) else network.model


class Seen:
    """The views each network was given, one tuple per forward."""

    def __init__(self, **networks: nn.Module):
        self.calls: dict[str, list[tuple[str, ...]]] = {name: [] for name in networks}
        self._handles = [entry(net).register_forward_pre_hook(self._hook(name),
                                                              with_kwargs=True)
                         for name, net in networks.items()]

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            images = args[0] if args else kwargs["pixel_values"]
            self.calls[name].append(tuple(view_of(x) for x in images))
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def one_step(trainer: SemiTrainer, iteration: int) -> tuple[dict[str, Tensor], Seen]:
    batch = tell_apart(next(iter(trainer.epoch_batches())))
    trainer.iter = iteration
    seen = Seen(student=trainer.model_without_ddp, teacher=trainer.teacher.module)
    try:
        losses = trainer.forward_losses(batch)
    finally:
        seen.remove()
    return losses, seen


def assert_teacher_weak_student_strong(seen: Seen) -> None:
    assert seen.calls["teacher"] == [("weak", "weak")], seen.calls
    student = seen.calls["student"]
    assert ("strong", "strong") in student, student
    assert not any("weak" in call for call in student), student
    assert ("labeled",) * 4 in student, student  # the labeled weak + strong views


def test_denseteacher_teacher_sees_weak_views_student_strong(tmp_path: Path) -> None:
    trainer = build(DENSE, tmp_path / "data")
    trainer.teacher.copy_from(trainer.model_without_ddp, trainer.ema_start)
    losses, seen = one_step(trainer, 2 * trainer.semi_start + 1)   # past the ramp
    assert_teacher_weak_student_strong(seen)
    assert losses["distill_loss_cls"].item() > 0


def test_arsl_teacher_sees_weak_views_student_strong(tmp_path: Path) -> None:
    trainer = build(ARSL, tmp_path / "data", "SEMISUPNET.BURN_UP_STEP=2",
                    "SEMISUPNET.PSEUDO_WARM_UP_STEPS=2")
    losses, seen = one_step(trainer, 4)
    assert_teacher_weak_student_strong(seen)
    assert trainer.step_stats["unsup_weight"] > 0


def test_semi_rtdetr_teacher_sees_weak_views_student_strong(tmp_path: Path) -> None:
    trainer = build(SEMI_RTDETR, tmp_path / "data",
                    *[f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY.items()],
                    "ema_start_iters=2",
                    "DETR_SSOD.train_cfg.pseudo_label_initial_score_thr=0.0")
    losses, seen = one_step(trainer, 3)
    assert_teacher_weak_student_strong(seen)
    assert trainer.step_stats["pseudo_images_kept"] == 1.0
    assert losses["loss_vfl_pseudo"].item() > 0


@pytest.mark.parametrize(("iteration", "ramp"), [(4, 0.0), (6, 0.5), (9, 1.0)])
def test_denseteacher_weights_each_distillation_term_by_its_key(
        tmp_path: Path, iteration: int, ramp: float) -> None:
    # Distinct weights per term, unsup_weight 0.5, linear ramp from semi_start 4: at
    # iteration 6 the ramp is (6 - 4) / 4 = 0.5, from 8 on 1; at 4 there is no distillation.
    trainer = build(DENSE, tmp_path / "data",
                    "DenseTeacher.train_cfg.loss_weight={distill_loss_cls: 2.0, "
                    "distill_loss_box: 3.0, distill_loss_quality: 5.0}",
                    "DenseTeacher.train_cfg.unsup_weight=0.5",
                    "DenseTeacher.train_cfg.suppress=linear", semi_start=4, ema_start=1)
    trainer.teacher.copy_from(trainer.model_without_ddp, 1)
    batch = next(iter(trainer.epoch_batches()))
    trainer.iter = iteration
    losses = trainer.forward_losses(batch)
    weight = 0.5 * ramp
    assert trainer.step_stats["unsup_weight"] == pytest.approx(weight)
    # The same terms, unweighted, from the same networks on the same views.
    with torch.no_grad():
        student = dense_outputs(trainer.model_without_ddp, list(batch.unsup_strong[0]))
        teacher = dense_outputs(trainer.teacher.module, list(batch.unsup_weak[0]))
    raw, _ = dense_teacher_losses(student, teacher, trainer.cfg.DenseTeacher.train_cfg.ratio)
    for key, w in (("distill_loss_cls", 2.0), ("distill_loss_box", 3.0),
                   ("distill_loss_quality", 5.0)):
        assert raw[key].item() > 0
        assert losses[key].item() == pytest.approx(raw[key].item() * w * weight, rel=1e-4,
                                                   abs=1e-7), key


@pytest.mark.parametrize(("score_fn", "kept"), [("softmax", 10.0), ("sigmoid", 0.0)])
def test_semi_rtdetr_scores_pseudo_labels_by_score_fn(tmp_path: Path, score_fn: str,
                                                      kept: float) -> None:
    # Threshold 0.25: a softmax over 4 classes gives every query at least 0.25 (all 10
    # queries kept); the sigmoid scores of a fresh RT-DETR sit near its prior 0.01 (none).
    trainer = build(SEMI_RTDETR, tmp_path / "data",
                    *[f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY.items()],
                    "ema_start_iters=2", f"DETR_SSOD.train_cfg.score_fn={score_fn}",
                    "DETR_SSOD.train_cfg.pseudo_label_initial_score_thr=0.25")
    one_step(trainer, 3)
    assert trainer.step_stats["pseudo_boxes_per_image"] == kept


@pytest.mark.parametrize(("quality", "term"), [("centerness", "bbox_ctrness"),
                                                ("iou", "bbox_iou")])
def test_denseteacher_quality_branch_learns_centerness_or_iou(
        tmp_path: Path, quality: str, term: str) -> None:
    trainer = build(DENSE, tmp_path / "data", f"DenseTeacher.train_cfg.quality={quality}")
    batch = next(iter(trainer.epoch_batches()))
    trainer.iter = 0
    losses = trainer.forward_losses(batch)
    assert set(losses) == {"classification", "bbox_regression", term, "distill_loss_cls",
                           "distill_loss_box", "distill_loss_quality"}
    assert losses[term].item() > 0
