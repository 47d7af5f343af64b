"""``ssod_method: ARSL`` (notes §5.3): FCOS with an IoU branch, trained on labeled images
with ``FCOSLossMILC`` and on unlabeled ones with ``FCOSLossCR`` against a teacher.

Each step (PaddleDetection's ``Trainer_ARSL.run_step_full_semisup``):

1. from ``SEMISUPNET.BURN_UP_STEP`` on, the teacher follows the student *before* this
   step's optimizer update: a hard copy at the burn-up step, then an EMA update with
   ``EMA_KEEP_RATE`` on every later step (so it holds the student of the previous step);
2. the student's supervised losses on the labeled weak + strong views (one double batch)
   and, after burn-in, its raw outputs on the unlabeled strong views, in one forward;
3. the teacher's raw outputs on the weak views give the pseudo targets (``pseudo_targets``)
   and the ``_pseudo`` losses, weighted by ``UNSUP_LOSS_WEIGHT`` ramped linearly over
   ``PSEUDO_WARM_UP_STEPS``;
4. one backward and one optimizer step (``apply_losses``).

Before the teacher exists the student is evaluated (and decides ``best.pt``); afterwards
the teacher first, then the student (``SemiTrainer.eval_models``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS

from engine.config.schema import Config
from engine.data.semi import SemiBatch
from engine.env import DistEnv
from engine.recorder import RunRecorder
from engine.ssod.arsl import ARSLStudent, CRSettings, arsl_unsup_losses, pseudo_weight_at
from engine.ssod.fcos_dense import dense_outputs
from engine.trainers.semi import SemiTrainer, resolve_iters

PSEUDO_TERMS = ("loss_cls_pseudo", "loss_box_pseudo", "loss_iou_pseudo")


class ARSLTrainer(SemiTrainer):
    """PaddleDetection's ``Trainer_ARSL``."""

    semi_start_key = "SEMISUPNET.BURN_UP_STEP"
    ema_start_key = "SEMISUPNET.BURN_UP_STEP"

    def __init__(self, cfg: Config, env: DistEnv, recorder: RunRecorder,
                 config_dict: dict[str, Any], *, seed: int = 0):
        super().__init__(cfg, env, recorder, config_dict, seed=seed)
        ssn = cfg.SEMISUPNET
        self.warm_up = resolve_iters(ssn.PSEUDO_WARM_UP_STEPS, self.max_iters)
        self.cr = CRSettings(**dataclasses.asdict(cfg.FCOSLossCR))

    def teacher_decay(self) -> float:
        return self.cfg.SEMISUPNET.EMA_KEEP_RATE

    def schedule_starts(self) -> tuple[int, int]:
        # The burn-up step starts both the pseudo loss and the teacher.
        burn_up = resolve_iters(self.cfg.SEMISUPNET.BURN_UP_STEP, self.max_iters)
        return burn_up, burn_up

    model_class = FCOS
    model_purpose = "trains FCOS with an IoU branch"
    unsup_terms = PSEUDO_TERMS

    def train_module(self) -> nn.Module:
        milc = self.cfg.FCOSLossMILC
        return ARSLStudent(self.model_without_ddp, iou_loss_type=milc.iou_loss_type,
                           neg_weight=milc.neg_weight, gamma=milc.gamma,
                           iou_weight=milc.iou_weight)

    # ---------------------------------------------------------------------------- step
    def forward_losses(self, batch: SemiBatch) -> dict[str, Tensor]:
        it = self.iter
        self.follow_student(it)
        semi = self.phase(it) == "semi" and self.teacher.started
        weight = (pseudo_weight_at(it, self.semi_start, self.warm_up,
                                   self.cfg.SEMISUPNET.UNSUP_LOSS_WEIGHT) if semi else 0.0)
        weak_images, weak_targets = self.to_device(*batch.sup_weak)
        strong_images, strong_targets = self.to_device(*batch.sup_strong)
        unsup_strong = self.to_device(*batch.unsup_strong)[0] if semi else None
        with torch.autocast(self.device.type, enabled=self.use_amp):
            # PaddleDetection concatenates the labeled weak and strong views.
            losses, student_out = self.model(weak_images + strong_images,
                                             weak_targets + strong_targets, unsup_strong)
        raw: dict[str, Tensor] | None = None
        if semi:
            with torch.no_grad(), torch.autocast(self.device.type, enabled=self.use_amp):
                teacher_out = dense_outputs(self.teacher.module,
                                            self.to_device(*batch.unsup_weak)[0])
            raw, targets = arsl_unsup_losses(student_out, teacher_out, self.cr)
            self.step_stats.update(targets.stats())
        return self.with_unsup_terms(losses, raw, weight)
