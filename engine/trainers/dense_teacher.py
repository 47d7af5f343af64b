"""``ssod_method: DenseTeacher`` (notes §4.3): FCOS, dense distillation from a teacher.

Each step: the student's supervised FCOS losses on the labeled weak + strong views (one
double batch, ``concat_sup_data``), and after ``semi_start_iters``, the distillation
losses of its outputs on the unlabeled strong views against the teacher's outputs on the
weak views, weighted and ramped up (``DenseTeacher.train_cfg``). Labeled and unlabeled
images go through one forward of the (DDP-wrapped) student and one backward. After the
optimizer step the teacher is copied from the student at ``ema_start_iters`` and follows it
by EMA (``ema_decay``) on every later step (``SemiTrainer.follow_student``). As in
PaddleDetection the distillation does not wait for that copy: with ``semi_start_iters``
below ``ema_start_iters`` the student distils from the initial teacher (a copy of its own
initial weights, or ``pretrain_teacher_weights``) until then (docs/semi-schedule.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS

from engine.data.semi import SemiBatch
from engine.protocol.errors import ConfigError
from engine.ssod.dense_teacher import (
    DenseTeacherStudent,
    dense_teacher_losses,
    unsup_weight_at,
)
from engine.ssod.fcos_dense import dense_outputs
from engine.trainers.semi import SemiTrainer

DISTILL_TERMS = ("distill_loss_cls", "distill_loss_box", "distill_loss_quality")


class DenseTeacherTrainer(SemiTrainer):
    """PaddleDetection's ``Trainer_DenseTeacher``."""

    model_class = FCOS
    model_purpose = "distils FCOS's dense outputs"
    unsup_terms = DISTILL_TERMS

    def train_module(self) -> nn.Module:
        if self.env.distributed and not self.cfg.DenseTeacher.train_cfg.concat_sup_data:
            raise ConfigError("under several processes the labeled views must go through one "
                              "forward with the unlabeled ones",
                              key="DenseTeacher.train_cfg.concat_sup_data",
                              hint="set it to true (the default)")
        return DenseTeacherStudent(self.model_without_ddp, self.cfg.DenseTeacher.train_cfg.quality)

    def inference_on(self) -> str:
        return self.cfg.DenseTeacher.test_cfg.inference_on

    def forward_losses(self, batch: SemiBatch) -> dict[str, Tensor]:
        tc = self.cfg.DenseTeacher.train_cfg
        it = self.iter
        sup_images, sup_targets = self.to_device(*batch.sup_weak)
        strong_images, strong_targets = self.to_device(*batch.sup_strong)
        # From the iteration after semi_start on, distil from the teacher as it stands: before
        # ema_start that is the initial teacher (PaddleDetection's, docs/semi-schedule.md).
        weight = unsup_weight_at(it, self.semi_start, tc.unsup_weight, tc.suppress)
        semi = weight > 0
        unsup_strong = self.to_device(*batch.unsup_strong)[0] if semi else None
        with torch.autocast(self.device.type, enabled=self.use_amp):
            if tc.concat_sup_data:
                sup, student_out = self.model(sup_images + strong_images,
                                              sup_targets + strong_targets, unsup_strong)
            else:
                weak, student_out = self.model(sup_images, sup_targets, unsup_strong)
                strong, _ = self.model(strong_images, strong_targets)
                sup = {k: (weak[k] + strong[k]) / 2 for k in weak}
        losses = {k: v * tc.sup_weight for k, v in sup.items()}
        distill: dict[str, Tensor] | None = None
        if semi:
            with torch.no_grad():
                teacher_out = dense_outputs(self.teacher.module,
                                            self.to_device(*batch.unsup_weak)[0])
            raw, sel = dense_teacher_losses(student_out, teacher_out, tc.ratio)
            lw = tc.loss_weight
            weights = {"distill_loss_cls": lw.distill_loss_cls,
                       "distill_loss_box": lw.distill_loss_box,
                       "distill_loss_quality": lw.distill_loss_quality}
            distill = {k: raw[k] * weights[k] for k in DISTILL_TERMS}
            self.step_stats.update(
                pseudo_points_per_image=sel.count / max(1, student_out.num_images),
                pseudo_score=sel.fg_score_sum / max(1, sel.count))
        return self.with_unsup_terms(losses, distill, weight)

    def run_step(self, batch: SemiBatch) -> None:
        super().run_step(batch)
        if self.last_step.applied:
            self.follow_student(self.iter)
